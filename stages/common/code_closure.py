"""The project's own modules a module imports, transitively: static, from the AST.

Used twice: scripts/stage_deps.py turns each stage's closure into its dvc.yaml code deps,
and the package stage copies the served model's closure into the model it writes (so the
model folder carries exactly the code it runs, and the stage depends on exactly that).
Function-level imports count; so do the packages Python runs before a submodule.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("stages", "lightning_modules")  # the project's own import roots
NO_RESULT = ("stages/runtime",)  # plumbing that changes no result: not a dependency


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
