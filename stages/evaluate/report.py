"""reports/report.md and reports/report.html from one summary of the evaluate stage.

The HTML is a single self-contained file: CSS inline, images as base64 data URIs, no
scripts, nothing fetched from a CDN, so it opens offline and can be mailed around.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from stages.common import io

COLUMNS = ("latency_ms_b1", "latency_ms_b256", "n_params", "bytes")


def write(out: Path, summary: dict[str, Any], images: list[Path]) -> tuple[Path, Path]:
    """Write `report.md` (images linked relative to it) and `report.html` (images inlined)."""
    md_path, html_path = out / "report.md", out / "report.html"
    with io.atomic_file(md_path) as tmp:
        tmp.write_text(markdown(summary, images, md_path.parent))
    with io.atomic_file(html_path) as tmp:
        tmp.write_text(to_html(summary, images))
    return md_path, html_path


def _table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    h = summary["headline"]
    pct = f"{summary['confidence']:.0%}"
    head = ["rank", "candidate", "kind", h, f"{pct} CI", *COLUMNS, "MLflow run"]
    rows = []
    for name, row in summary["leaderboard"]["candidates"].items():
        low, high = row.get(f"{h}_ci_low"), row.get(f"{h}_ci_high")
        rows.append(
            [
                str(row["rank"]),
                name,
                summary["kinds"][name],
                _fmt(row.get(h)),
                f"[{_fmt(low)}, {_fmt(high)}]",
                *(_fmt(row.get(c)) for c in COLUMNS),
                summary["run_ids"].get(name) or "-",
            ]
        )
    return head, rows


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _dataset_lines(schema: dict[str, Any]) -> list[str]:
    rows = schema.get("rows", {})
    lines = [
        f"dataset: {schema['dataset']} (source: {schema['source']})",
        f"task: {schema['task']}, modality: {schema['modality']}, "
        f"input shape: {schema['input_shape']}",
        "rows: " + ", ".join(f"{k} {v}" for k, v in rows.items()),
    ]
    if schema.get("classes"):
        lines.append(f"classes ({schema['n_classes']}): {', '.join(schema['classes'][:30])}")
    lines.append(f"fingerprint: {schema['fingerprint']}")
    return lines


def markdown(summary: dict[str, Any], images: list[Path], base: Path) -> str:
    head, rows = _table(summary)
    parts = [f"# Evaluation report: {summary['schema']['dataset']}", ""]
    parts += ["## Leaderboard (test split)", "", "| " + " | ".join(head) + " |"]
    parts.append("|" + "---|" * len(head))
    parts += ["| " + " | ".join(r) + " |" for r in rows]
    parts += ["", "## Is the difference real?", ""]
    parts += [f"- {c['text']}" for c in summary["comparisons"]] or ["- only one candidate"]
    if summary["notes"]:  # no empty heading when nothing was skipped
        parts += ["", "## Notes", ""] + [f"- {n}" for n in summary["notes"]]
    parts += ["", "## Dataset", ""] + [f"- {line}" for line in _dataset_lines(summary["schema"])]
    parts += ["", "## Plots", ""]
    parts += [f"![{p.stem}]({_relative(p, base)})" for p in images]
    parts += ["", "## Params", "", "```json", json.dumps(summary["params"], indent=2), "```"]
    parts += ["", "## MLflow", "", f"- tracking URI: {summary.get('tracking_uri') or '-'}"]
    parts += [f"- evaluate run: {summary.get('evaluate_run_id') or '-'}", ""]
    return "\n".join(parts)


def _relative(path: Path, base: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), base.resolve())


CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
.wide{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.85rem;white-space:nowrap}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
td:nth-child(2),th:nth-child(2),td:nth-child(3){text-align:left}
tr:first-child td{font-weight:bold;background:#eef6ee}
img{max-width:48%;margin:.3rem;border:1px solid #eee}
pre{background:#f6f6f6;padding:.6rem;font-size:.75rem;overflow:auto}
"""


def to_html(summary: dict[str, Any], images: list[Path]) -> str:
    e = html.escape
    head, rows = _table(summary)
    title = f"Evaluation report: {summary['schema']['dataset']}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        '<h2>Leaderboard (test split)</h2><div class="wide"><table><thead><tr>',
        "".join(f"<th>{e(h)}</th>" for h in head),
        "</tr></thead><tbody>",
    ]
    out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
    out.append("</tbody></table></div><h2>Is the difference real?</h2><ul>")
    out += [f"<li>{e(c['text'])}</li>" for c in summary["comparisons"]]
    if summary["notes"]:
        out.append("</ul><h2>Notes</h2><ul>")
        out += [f"<li>{e(n)}</li>" for n in summary["notes"]]
    out.append("</ul><h2>Dataset</h2><ul>")
    out += [f"<li>{e(line)}</li>" for line in _dataset_lines(summary["schema"])]
    out.append("</ul><h2>Plots</h2><div>")
    for path in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(f'<img alt="{e(path.stem)}" src="data:image/png;base64,{data}">')
    out.append("</div><h2>Params</h2>")
    out.append(f"<pre>{e(json.dumps(summary['params'], indent=2))}</pre>")
    out.append("<h2>MLflow</h2><ul>")
    out.append(f"<li>tracking URI: {e(str(summary.get('tracking_uri') or '-'))}</li>")
    out.append(f"<li>evaluate run: {e(str(summary.get('evaluate_run_id') or '-'))}</li>")
    out.append("</ul></body></html>\n")
    return "\n".join(out)
