"""reports/report.md and reports/report.html from one summary and one Jinja2 template.

`report_template.TEMPLATE` renders both formats from the same context (`html` switches the
markup), so the two cannot drift apart. The HTML is a single self-contained file: CSS
inline, images as base64 data URIs, no scripts, nothing fetched from a CDN, so it opens
offline and can be mailed around.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from stages.common import io

COLUMNS = ("latency_ms_b1", "latency_ms_b256", "n_params", "bytes")


def write(
    out: Path, summary: dict[str, Any], images: list[Path], importance: list[Path] = ()
) -> tuple[Path, Path]:
    """Write `report.md` (images linked relative to it) and `report.html` (images inlined);
    `importance` are the baselines' importance figures."""
    md_path, html_path = out / "report.md", out / "report.html"
    with io.atomic_file(md_path) as tmp:
        tmp.write_text(render(summary, images, False, md_path.parent, importance))
    with io.atomic_file(html_path) as tmp:
        tmp.write_text(render(summary, images, True, None, importance))
    return md_path, html_path


def render(
    summary: dict[str, Any],
    images: list[Path],
    html: bool,
    base: Path | None = None,
    importance: list[Path] = (),
):
    from jinja2 import Environment, StrictUndefined

    from stages.evaluate.importance import table_rows as importance_rows
    from stages.evaluate.report_template import CSS, TEMPLATE

    env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    head, rows = _table(summary)
    changed, tuned = params_diff(summary["params"])
    context = {
        "html": html,
        "css": CSS,
        "title": f"Evaluation report: {summary['schema']['dataset']}",
        "head": head,
        "rows": rows,
        "comparisons": [c["text"] for c in summary["comparisons"]],
        "notes": summary["notes"],
        "dataset": _dataset_lines(summary["schema"]),
        "images": [(p.stem, _data_uri(p) if html else _relative(p, base)) for p in images],
        "importance": importance_rows(summary.get("importance") or {}),
        "importance_images": [
            (p.stem, _data_uri(p) if html else _relative(p, base)) for p in importance
        ],
        "changed": changed,
        "tuned": tuned,
        "tracking_uri": str(summary.get("tracking_uri") or "-"),
        "evaluate_run": str(summary.get("evaluate_run_id") or "-"),
    }
    return env.from_string(TEMPLATE).render(**context)


def params_diff(params: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """(keys set away from the defaults: [key, value, default]; values the train stage took
    from tuning that differ from params.yaml: [key, tuned, params.yaml])."""
    from stages import config
    from stages.runtime.tracking import flatten

    sections = {k: v for k, v in params.items() if k != "candidates"}
    defaults = config.Params().model_dump(mode="json")
    default_flat = flatten({k: defaults[k] for k in sections if k in defaults})
    flat = flatten(sections)
    changed = [
        [k, _fmt(v), _fmt(default_flat.get(k))]
        for k, v in sorted(flat.items())
        if k in default_flat and default_flat[k] != v
    ]
    trained = flatten(params.get("candidates", {}).get("network") or {})
    tuned = [[k, _fmt(v), _fmt(flat[k])] for k, v in sorted(trained.items()) if flat.get(k, v) != v]
    return changed, tuned


def _table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    h = summary["headline"]
    pct = f"{summary['confidence']:.0%}"
    head = ["rank", "candidate", "kind", h, f"{pct} CI", *COLUMNS, "MLflow run"]
    rows = []
    for name, row in summary["leaderboard"]["candidates"].items():
        low, high = row.get(f"{h}_ci_low"), row.get(f"{h}_ci_high")
        run = summary["run_ids"].get(name)
        rows.append(
            [
                str(row["rank"]),
                name,
                summary["kinds"][name],
                _fmt(row.get(h)),
                f"[{_fmt(low)}, {_fmt(high)}]",
                *(_fmt(row.get(c)) for c in COLUMNS),
                run[:8] if run else "-",  # the id's prefix: the full one is in evaluation.json
            ]
        )
    return head, rows


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v else (f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}")
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


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _relative(path: Path, base: Path | None) -> str:
    return os.path.relpath(path.resolve(), (base or Path.cwd()).resolve())
