"""Render the rows the fault / load / bad-input / security tests recorded into
docs/reliability.md, between its `<!-- reliability:begin -->` and `<!-- reliability:end -->`
markers (the prose around them is kept).

    python scripts/reliability_doc.py --run        # run every recording test, then render
    python scripts/reliability_doc.py --rows tests/out/reliability.json   # render only

`--run` runs each test file that asks for the `reliability` fixture (real subprocesses,
signals, dvc, MLflow: about 13 minutes on 2 cores; PostgreSQL rows need
REPROLAB_POSTGRES_URL). Rows exist only for checks that passed; a failing test fails the
command and the document is left as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
SECTIONS = (
    ("fault", "Faults"),
    ("load", "Load"),
    ("bad input", "Bad input"),
    ("security", "Security"),
)


def recording_tests(root: Path = REPO / "tests") -> list[Path]:
    """Test files with a test that asks for the `reliability` fixture."""
    asks = re.compile(r"^def test_\w+\([^)]*\breliability\b", re.M | re.S)
    return sorted(p for p in root.rglob("test_*.py") if asks.search(p.read_text()))


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        value = ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) or "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(doc: dict[str, Any]) -> str:
    """Markdown tables, one per kind, in the order the tests ran."""
    rows = doc["rows"]
    out = [
        f"Recorded {doc['generated']} on {doc['machine']} (Python {doc['python']}) by the "
        f"test suite: {len(rows)} rows, each written by the test named in it after its "
        "assertions passed. Regenerate with `make reliability`.",
    ]
    for kind, title in SECTIONS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        out += [
            "",
            f"### {title} ({len(mine)})",
            "",
            "| injected | outcome | before | after | test | s |",
            "|---|---|---|---|---|---:|",
        ]
        for r in mine:
            test = r["test"].replace("tests/", "", 1)
            cells = (r["injected"], r["outcome"], r["before"], r["after"], f"`{test}`")
            out.append("| " + " | ".join(_cell(c) for c in cells) + f" | {r['seconds']:.0f} |")
    return "\n".join(out) + "\n"


def splice(text: str, table: str) -> str:
    """`text` with everything between the markers replaced by `table`."""
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOC}: markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run the recording tests first")
    ap.add_argument("--rows", type=Path, default=REPO / "tests" / "out" / "reliability.json")
    ap.add_argument("--doc", type=Path, default=DOC)
    a = ap.parse_args(argv)
    if a.run:
        files = [str(p.relative_to(REPO)) for p in recording_tests()]
        # pytest-xdist, as `make test` runs them: a file per worker, rows merged at the end
        cmd = [sys.executable, "-m", "pytest", "-q", "-n", "auto", "--dist", "loadfile", *files]
        env = {**os.environ, "REPROLAB_RELIABILITY_DIR": str(a.rows.parent)}
        res = subprocess.run(cmd, cwd=REPO, env=env)
        if res.returncode != 0:
            print("reliability: a recording test failed; docs left unchanged", file=sys.stderr)
            return res.returncode
    if not a.rows.exists():
        print(f"reliability: {a.rows} not found; run with --run or `make test`", file=sys.stderr)
        return 2
    doc = json.loads(a.rows.read_text())
    a.doc.write_text(splice(a.doc.read_text(), render(doc)))
    print(f"reliability: {len(doc['rows'])} rows -> {a.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
