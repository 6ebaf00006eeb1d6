"""docs/reliability.md's generated part: rows recorded by tests render into the doc between
its markers, prose around them untouched, table cells escaped."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import reliability_doc  # noqa: E402


def _doc(rows):
    return {"generated": "2026-11-26 10:00 UTC", "machine": "x", "python": "3.11", "rows": rows}


def _row(kind, injected, **over):
    row = {
        "kind": kind,
        "injected": injected,
        "outcome": "exit 2",
        "before": {"runs": 0},
        "after": {"runs": 0, "exit": 2},
        "test": "tests/faults/test_x.py::test_y[a|b]",
        "seconds": 3.2,
        "extra": {},
    }
    return row | over


def test_rows_render_by_kind_and_splice_between_the_markers(tmp_path):
    table = reliability_doc.render(
        _doc([_row("fault", "kill -9 | all"), _row("bad input", "empty CSV"), _row("fault", "b")])
    )
    assert "### Faults (2)" in table and "### Bad input (1)" in table and "Load" not in table
    assert "kill -9 \\| all" in table and "test_y[a\\|b]" in table  # pipes escaped
    assert "| runs: 0 | runs: 0, exit: 2 |" in table
    doc = tmp_path / "reliability.md"
    doc.write_text(f"# Title\nprose\n{reliability_doc.BEGIN}\nold\n{reliability_doc.END}\nend\n")
    rows = tmp_path / "rows.json"
    import json

    rows.write_text(json.dumps(_doc([_row("load", "8 workers")])))
    assert reliability_doc.main(["--rows", str(rows), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Title\nprose\n") and text.endswith(f"{reliability_doc.END}\nend\n")
    assert "old" not in text and "### Load (1)" in text


def test_missing_markers_are_named(tmp_path):
    with pytest.raises(SystemExit, match="markers"):
        reliability_doc.splice("no markers here", "table")


def test_every_fault_and_bad_input_test_file_records_rows():
    files = {p.relative_to(REPO).as_posix() for p in reliability_doc.recording_tests()}
    for folder in ("tests/faults", "tests/bad_inputs"):
        for path in (REPO / folder).glob("test_*.py"):
            if path.name != "test_properties.py":  # hypothesis: many examples, no one row
                assert path.relative_to(REPO).as_posix() in files, path
