"""The one Jinja2 template of the evaluation report: `html` true renders HTML, else Markdown.

Kept in a Python module so the evaluate stage's DVC code deps (scripts/stage_deps.py) track
it like the code that fills it.
"""

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
.wide{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.8rem}
td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:right;overflow-wrap:anywhere}
td:nth-child(2),th:nth-child(2),td:nth-child(3){text-align:left}
#leaderboard tbody tr:first-child td{font-weight:bold;background:#eef6ee}
.params td{text-align:left}
img{max-width:48%;margin:.3rem;border:1px solid #eee}
"""

TEMPLATE = """\
{%- macro t(x) -%}{{ x|e if html else x }}{%- endmacro -%}
{%- macro heading(text, level=2) -%}
{%- if html %}<h{{ level }}>{{ t(text) }}</h{{ level }}>
{% else %}{{ "#" * level }} {{ text }}

{% endif -%}
{%- endmacro -%}
{%- macro figures(pairs) -%}
{%- if html %}<div>
{% for name, src in pairs %}<img alt="{{ t(name) }}" src="{{ src }}">
{% endfor %}</div>
{% else %}{% for name, src in pairs %}![{{ name }}]({{ src }})
{% endfor %}
{% endif -%}
{%- endmacro -%}
{%- macro items(lines) -%}
{%- if html %}<ul>
{% for line in lines %}<li>{{ t(line) }}</li>
{% endfor %}</ul>
{% else %}{% for line in lines %}- {{ line }}
{% endfor %}
{% endif -%}
{%- endmacro -%}
{%- macro table(head, rows, id="", cls="") -%}
{%- if html %}<div class="wide"><table{% if id %} id="{{ id }}"{% endif %}\
{% if cls %} class="{{ cls }}"{% endif %}><thead><tr>
{%- for h in head %}<th>{{ t(h) }}</th>{% endfor %}</tr></thead><tbody>
{% for r in rows %}<tr>{% for c in r %}<td>{{ t(c) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{% else %}| {{ head|join(" | ") }} |
|{% for h in head %}---|{% endfor %}
{% for r in rows %}| {{ r|join(" | ") }} |
{% endfor %}
{% endif -%}
{%- endmacro -%}
{%- if html -%}
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ t(title) }}</title><style>{{ css }}</style></head><body>
{% endif -%}
{{ heading(title, 1) }}
{{- heading("Leaderboard (test split)") }}
{{- table(head, rows, id="leaderboard") }}
{{- heading("Is the difference real?") }}
{{- items(comparisons or ["only one candidate"]) }}
{%- if notes %}{{ heading("Notes") }}{{ items(notes) }}{% endif %}
{{- heading("Dataset") }}
{{- items(dataset) }}
{{- heading("Plots") }}
{{- figures(images) }}
{%- if importance %}{{ heading("Feature importance (baselines)") }}
{{- items(["impurity: the trees' own split gains; permutation: the drop of the val score "
           "when one feature is shuffled (sklearn.inspection.permutation_importance)"]) }}
{{- table(["candidate", "kind", "top features"], importance, id="importance", cls="params") }}
{{- figures(importance_images) }}{% endif %}
{{ heading("Params") }}
{%- if changed %}{{ table(["key", "value", "default"], changed, cls="params") }}
{%- else %}{{ items(["every key at its default"]) }}{% endif %}
{%- if tuned %}{{ heading("Tuned values the network was trained with", 3) }}
{{- table(["key", "tuned", "params.yaml"], tuned, cls="params") }}{% endif %}
{{- heading("MLflow") }}
{{- items(["tracking URI: " ~ tracking_uri, "evaluate run: " ~ evaluate_run]) }}
{%- if html %}</body></html>
{% endif -%}
"""
