"""The house rules: exact code deps per DVC stage, no import cycles, one room per stage."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import stage_deps  # noqa: E402

from stages.runtime.errors import UserError  # noqa: E402

STAGES = (
    "validate",
    "prepare",
    "augment",
    "baselines",
    "tune",
    "train",
    "compress",
    "evaluate",
    "package",
)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return stage_deps.import_graph()


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "stages" and len(parts) > 1 and parts[1] in STAGES else None


def test_every_stage_depends_on_exactly_its_import_closure_and_the_lock():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert set(stage_deps.stage_entries(dvc)) == set(STAGES)
    assert stage_deps.problems(dvc) == [], "run `python scripts/stage_deps.py --write`"
    for name in STAGES:
        assert stage_deps.LOCK in dvc["stages"][name]["deps"]


def _mini_repo(tmp_path: Path, deps: list[str]) -> dict:
    """stages.s runs `stages.s.stage`, which imports `lightning_modules.net` inside a function."""
    files = {
        "stages/__init__.py": "",
        "stages/s/__init__.py": "",
        "stages/s/__main__.py": "from stages.s.stage import main\n",
        "stages/s/stage.py": "def main():\n    from lightning_modules import net\n",
        "stages/runtime/__init__.py": "",
        "lightning_modules/__init__.py": "",
        "lightning_modules/net.py": "",
        "lightning_modules/unused.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return {"stages": {"s": {"cmd": "python -m stages.s --out x", "deps": ["data", *deps]}}}


def test_a_function_level_import_missing_from_deps_is_reported(tmp_path):
    dvc = _mini_repo(tmp_path, ["stages/__init__.py", "stages/s", stage_deps.LOCK])
    found = stage_deps.problems(dvc, tmp_path)
    assert found == [
        "s: missing deps ['lightning_modules/__init__.py', 'lightning_modules/net.py']"
    ]


def test_a_dep_the_stage_does_not_import_is_reported_and_a_complete_list_passes(tmp_path):
    exact = ["lightning_modules/__init__.py", "lightning_modules/net.py", "stages/__init__.py"]
    dvc = _mini_repo(tmp_path, [*exact, "stages/s", stage_deps.LOCK, "lightning_modules"])
    assert stage_deps.problems(dvc, tmp_path) == [
        "s: deps not in its imports ['lightning_modules']"
    ]
    dvc["stages"]["s"]["deps"].remove("lightning_modules")
    assert stage_deps.problems(dvc, tmp_path) == []


def test_the_import_graph_has_no_cycle(graph):
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_lightning_modules_imports_nothing_from_stages(graph):
    bad = {m: sorted(d for d in deps if d.startswith("stages")) for m, deps in graph.items()}
    assert {m: d for m, d in bad.items() if m.startswith("lightning_modules") and d} == {}


def test_a_stage_imports_no_other_stage_and_shared_code_imports_no_stage(graph):
    crossings = []
    for module, deps in graph.items():
        here = _stage_of(module)
        for dep in deps:
            there = _stage_of(dep)
            if there is None or there == here or (here, there) == ("tune", "train"):
                continue  # tune runs train.run for its trials: the one intended exception
            crossings.append(f"{module} -> {dep}")
    assert crossings == []


def test_every_stage_is_a_package_with_an_entry_point():
    for name in STAGES:
        assert (REPO / "stages" / name / "__main__.py").exists(), name
        assert (REPO / "stages" / name / "stage.py").exists(), name
    loose = sorted(p.name for p in (REPO / "stages").glob("*.py"))
    assert loose == ["__init__.py"]


@pytest.mark.integration
def test_a_non_editable_install_ships_every_package(repo_copy, tmp_path):
    """`pip install .` (a wheel, not -e) into a throwaway venv, then import every stage.

    The wheel is built from a copy of the repo and installed without dependencies; the
    third-party packages come from this venv's site-packages, and the import runs from a
    folder with no project code, so `stages` can only come from the wheel.
    """
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(repo_copy)],
        check=True,
        capture_output=True,
    )
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    wheel = next(wheels.glob("reprolab-*.whl"))
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", target, str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import stages, lightning_modules\n"
        + "".join(f"import stages.{s}.stage, stages.{s}.__main__\n" for s in STAGES)
        + "print(stages.__file__)\n"
    )
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [python, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(target), done.stdout


def _cmd_paths() -> dict[str, dict[str, str]]:
    from stages.runtime.cli import declared_paths

    dvc_yaml = REPO / "dvc.yaml"
    cmds = yaml.safe_load(dvc_yaml.read_text())["stages"]
    names = {w[2:] for st in cmds.values() for w in st["cmd"].split() if w.startswith("--")}
    return {stage: declared_paths(stage, sorted(names), dvc_yaml) for stage in cmds}


def test_no_path_of_dvc_yaml_is_written_again_in_the_code():
    """No string in the code equals a path a stage's cmd passes (one-word names like
    `reports`, which are also MLflow artifact folders, are left out)."""
    paths = {p for per_stage in _cmd_paths().values() for p in per_stage.values() if "/" in p}
    found = []
    for root in stage_deps.ROOTS:
        for f in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.Constant) and node.value in paths:
                    found.append(f"{f.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert found == []


def test_a_stage_started_by_hand_takes_the_paths_its_dvc_yaml_cmd_passes(tmp_path):
    from stages.runtime.cli import fill_paths, parser
    from stages.train.stage import Paths

    args = parser("train", "t", Paths).parse_args(["--model", "elsewhere.pt"])
    fill_paths("train", args, REPO / "dvc.yaml")
    assert args.model == "elsewhere.pt"  # given on the command line: kept
    declared = _cmd_paths()["train"]
    assert {f: getattr(args, f) for f in declared if f != "model"} == {
        f: v for f, v in declared.items() if f != "model"
    }
    with pytest.raises(UserError, match="no .*dvc.yaml in"):
        fill_paths("train", parser("train", "t", Paths).parse_args([]), tmp_path / "dvc.yaml")
