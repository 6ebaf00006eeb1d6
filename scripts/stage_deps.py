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
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("stages", "lightning_modules")  # the project's own import roots
NO_RESULT = ("stages/runtime",)  # plumbing that changes no result: not a dependency
LOCK = "requirements/constraints.txt"


def module_file(name: str, repo: Path = REPO) -> Path | None:
    """The file of module `name` in the repo (package -> its __init__.py), or None."""
    base = repo.joinpath(*name.split("."))
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return None


def module_name(path: Path, repo: Path = REPO) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, repo: Path = REPO) -> set[str]:
    """Repo modules `path` imports anywhere in its body, with the packages Python runs first."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, repo).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package[: len(package) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] not in ROOTS:
            continue
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, then a.b.c
            target = module_file(".".join(parts[:i]), repo)
            if target is not None:
                found.add(module_name(target, repo))
    found.discard(module_name(path, repo))
    return found


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """Module -> repo modules it imports, for every module under `ROOTS`."""
    return {
        module_name(f, repo): imported_modules(f, repo)
        for root in ROOTS
        for f in sorted((repo / root).rglob("*.py"))
    }


def closure(
    entry: str, graph: dict[str, set[str]], repo: Path = REPO, skip: tuple[str, ...] = NO_RESULT
) -> set[str]:
    """Repo files (relative posix paths) reachable from module `entry`, minus `skip` folders."""
    seen, todo, files = set(), [entry], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        rel = module_file(name, repo).relative_to(repo).as_posix()
        if rel.startswith(tuple(f"{s}/" for s in skip)):
            continue
        files.add(rel)
        todo.extend(graph.get(name, ()))
    return files


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
