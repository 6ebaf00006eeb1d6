"""Static check of the code we ship: no loader that can run code from a file.

Every `torch.load` passes `weights_only=True`; no `pickle.load(s)`, `joblib.load`,
`yaml.load`/`unsafe_load`/`full_load`, `np.load(allow_pickle=True)`, `dill`/`cloudpickle`
loads, or `eval`/`exec`. Walks the AST of stages/, lightning_modules/, benchmarks/ and
scripts/, so a new call anywhere fails this test with the file and line.
"""

from __future__ import annotations

import ast

import pytest
from conftest import REPO

SHIPPED = ("stages", "lightning_modules", "benchmarks", "scripts")
FORBIDDEN = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("joblib", "load"),
    ("dill", "load"),
    ("dill", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
}


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader"}


def _safe_yaml_loader(call: ast.Call) -> bool:
    """`yaml.load(f, Loader=SafeLoader)` (or libyaml's CSafeLoader) builds plain data only."""
    loader = _kw(call, "Loader")
    name = loader.attr if isinstance(loader, ast.Attribute) else getattr(loader, "id", None)
    return name in SAFE_YAML_LOADERS


def violations(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        where = f"{filename}:{node.lineno}"
        if isinstance(fn, ast.Name) and fn.id in ("eval", "exec"):
            found.append(f"{where}: {fn.id}()")
        if not (isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name)):
            continue
        mod, attr = fn.value.id, fn.attr
        if (mod, attr) == ("yaml", "load") and _safe_yaml_loader(node):
            continue
        if (mod, attr) in FORBIDDEN:
            found.append(f"{where}: {mod}.{attr}()")
        if (mod, attr) == ("torch", "load"):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                found.append(f"{where}: torch.load without weights_only=True")
        if (mod, attr) == ("np", "load") or (mod, attr) == ("numpy", "load"):
            ap = _kw(node, "allow_pickle")
            if isinstance(ap, ast.Constant) and ap.value is True:
                found.append(f"{where}: np.load(allow_pickle=True)")
    return found


def test_the_checker_catches_each_kind():
    bad = (
        "import torch, pickle, yaml, numpy as np\n"
        "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\npickle.loads(b'')\n"
        "yaml.load(s)\nyaml.load(s, Loader=yaml.FullLoader)\n"
        "np.load('a.npz', allow_pickle=True)\neval('1')\n"
    )
    assert len(violations(bad, "bad.py")) == 7
    good = (
        "torch.load('m.pt', map_location='cpu', weights_only=True)\nyaml.safe_load(s)\n"
        "yaml.load(s, Loader=CSafeLoader)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
    )
    assert violations(good, "good.py") == []


@pytest.mark.parametrize("folder", SHIPPED)
def test_shipped_code_has_no_unsafe_loader(folder, reliability):
    found, files = [], sorted((REPO / folder).rglob("*.py"))
    for path in files:
        found += violations(path.read_text(), str(path.relative_to(REPO)))
    assert found == [], "\n".join(found)
    reliability.record(
        "security",
        f"every module under `{folder}/` parsed (AST) for unsafe loaders",
        "no `torch.load` without `weights_only=True`, no pickle, no `yaml.load`, no "
        "`allow_pickle=True`, no eval",
        before={"files": len(files)},
        after={"violations": len(found)},
    )
