"""Each DVC stage's code dependencies, computed from the imports of its command.

DVC cannot trace Python imports, so `dvc.yaml` lists each stage's code by hand, and a
hand-kept list goes stale. This script computes it: the repo modules that `python -m
stages.<name>` imports, transitively (static, from the AST, function-level imports
included), plus the pinned lock. `stages/runtime/` changes no result (CLI, exit codes,
MLflow plumbing) and is left out on purpose, so editing it re-runs nothing.

    python scripts/stage_deps.py            # check: exit 1 naming every missing/stale dep
    python scripts/stage_deps.py --write    # rewrite the code deps in dvc.yaml

A folder whose every module is in the closure is listed as the folder; otherwise its
files are listed one by one. Non-code deps (data, other stages' outputs) are kept as
they are, and so are their comments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from stages.common.code_closure import (  # noqa: E402
    NO_RESULT,
    ROOTS,
    closure,
    import_graph,
    imported_modules,
    module_file,
    module_name,
)

LOCK = "requirements/constraints.txt"
__all__ = [
    "NO_RESULT",
    "ROOTS",
    "closure",
    "import_graph",
    "imported_modules",
    "module_file",
    "module_name",
]


def compact(files: set[str], repo: Path = REPO) -> list[str]:
    """`files` with each folder all of whose modules are in `files` written as the folder."""
    out: set[str] = set(files)
    folders = sorted({str(Path(f).parent) for f in files}, key=lambda d: d.count("/"))
    for folder in folders:
        every = {p.relative_to(repo).as_posix() for p in (repo / folder).rglob("*.py")}
        if every and every <= files and folder not in ROOTS[:1]:
            out = {f for f in out if not f.startswith(f"{folder}/")} | {folder}
    # a folder inside an already-listed folder is covered by it
    return sorted(d for d in out if not any(d.startswith(f"{o}/") for o in out if o != d))


def is_code(dep: str) -> bool:
    return dep == LOCK or dep.split("/")[0] in ROOTS


def stage_entries(dvc: dict, repo: Path = REPO) -> dict[str, str]:
    """DVC stage -> the module its cmd runs with `python -m` (a package: its __main__)."""
    entries = {}
    for name, stage in dvc["stages"].items():
        words = str(stage.get("cmd", "")).split()
        if "-m" in words:
            module = words[words.index("-m") + 1]
            main = f"{module}.__main__"
            entries[name] = main if module_file(main, repo) else module
    return entries


def expected_deps(dvc: dict, repo: Path = REPO) -> dict[str, list[str]]:
    graph = import_graph(repo)
    return {
        name: [*compact(closure(entry, graph, repo), repo), LOCK]
        for name, entry in stage_entries(dvc, repo).items()
    }


def problems(dvc: dict, repo: Path = REPO) -> list[str]:
    """One line per stage whose code deps differ from its import closure."""
    lines = []
    for name, want in expected_deps(dvc, repo).items():
        have = [str(d) for d in dvc["stages"][name].get("deps") or [] if is_code(str(d))]
        missing = sorted(set(want) - set(have))
        stale = sorted(set(have) - set(want))
        if missing:
            lines.append(f"{name}: missing deps {missing}")
        if stale:
            lines.append(f"{name}: deps not in its imports {stale}")
    return lines


def write(path: Path) -> None:
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")  # round-trip: keeps comments and layout; builds plain data only
    rt.preserve_quotes = True
    rt.width = 100
    rt.indent(mapping=2, sequence=4, offset=2)
    doc = rt.load(path.read_text())
    for name, want in expected_deps(doc).items():
        if doc["stages"][name].get("deps") is None:
            doc["stages"][name]["deps"] = []
        deps = doc["stages"][name]["deps"]
        for i in reversed(range(len(deps))):
            if is_code(str(deps[i])):
                del deps[i]
        deps.extend(want)
    with path.open("w") as fh:
        rt.dump(doc, fh)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    ap.add_argument("--dvc-yaml", type=Path, default=REPO / "dvc.yaml")
    args = ap.parse_args(argv)
    if args.write:
        write(args.dvc_yaml)
    import yaml

    found = problems(yaml.safe_load(args.dvc_yaml.read_text()), args.dvc_yaml.resolve().parent)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
