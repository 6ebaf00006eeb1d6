"""Full disk and read-only output directory, for real: a tiny tmpfs / a read-only bind
mount inside a private user+mount namespace (`unshare -rm`, no root needed), around the
real `python -m stages.prepare` CLI.

Fault -> expected: exit 2 with one line naming the output path and the reason (no space
left on device / read-only file system), no traceback; the earlier complete output is
byte-for-byte intact and no temp directory is left behind.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import train_env

pytestmark = pytest.mark.integration


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run `sh -c script` in a private user+mount namespace (skips where there is none)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux `unshare` for a private mount namespace")
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"user+mount namespaces unavailable here: {probe.stderr.strip()}")
    return subprocess.run(
        [unshare, "-rm", "sh", "-c", script],
        cwd=tmp_path,
        env=train_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _sums(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (splits are folders of arrays), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def digits_params(tmp_path) -> Path:
    params = tmp_path / "digits.yaml"
    params.write_text("data: {source: digits}\n")
    return params


def _prepare(out: Path, params: Path) -> list[str]:
    return [sys.executable, "-m", "stages.prepare", "--params", str(params), "--out", str(out)]


@pytest.fixture
def earlier_output(tmp_path) -> Path:
    """A complete earlier `prepared/` (iris), made by the stage itself."""
    params = tmp_path / "iris.yaml"
    params.write_text("data: {source: iris}\n")
    good = tmp_path / "good" / "prepared"
    res = subprocess.run(
        _prepare(good, params), cwd=tmp_path, env=train_env(tmp_path), capture_output=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return good


def test_full_disk_refuses_naming_the_path_and_keeps_the_earlier_output(
    earlier_output, digits_params, tmp_path, reliability
):
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "prepared"
    report = tmp_path / "report"
    # digits' outputs need ~600 kB; the disk keeps ~60 kB free after the earlier output
    script = f"""
    mount -t tmpfs -o size=1m tmpfs {disk} || exit 90
    cp -r {earlier_output} {out}
    free=$(df -k --output=avail {disk} | tail -1)
    dd if=/dev/zero of={disk}/filler bs=1k count=$((free - 60)) status=none
    {" ".join(_prepare(out, digits_params))} 2> {report}.stderr
    echo $? > {report}.rc
    ls -a {disk} {out} > {report}.ls
    (cd {out} && find . -type f -exec sha256sum {{}} +) > {report}.sums
    """
    res = _in_namespace(script, tmp_path)
    assert res.returncode == 0, res.stderr
    stderr = Path(f"{report}.stderr").read_text()
    assert Path(f"{report}.rc").read_text().strip() == "2", stderr[-2000:]
    assert f"cannot write output {out}" in stderr and "no space left on device" in stderr
    assert "Traceback" not in stderr
    assert ".tmp-" not in Path(f"{report}.ls").read_text()  # no half-written leftovers
    after = {
        line.split()[1].removeprefix("./"): line.split()[0]
        for line in Path(f"{report}.sums").read_text().splitlines()
    }
    assert after == _sums(earlier_output)
    reliability.record(
        "fault",
        "disk full while `stages.prepare` writes its output (1 MiB tmpfs, ~60 kB free)",
        "exit 2: `cannot write output <path>: no space left on device`; no traceback",
        before={"output files (sha256)": len(after)},
        after={
            "exit": 2,
            "output files unchanged": f"{len(after)}/{len(after)}",
            "temp dirs left": 0,
        },
    )


def test_read_only_output_refuses_naming_the_path_and_keeps_the_earlier_output(
    earlier_output, digits_params, tmp_path, reliability
):
    folder = earlier_output.parent
    before = _sums(earlier_output)
    script = f"""
    mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} || exit 90
    exec {" ".join(_prepare(earlier_output, digits_params))}
    """
    res = _in_namespace(script, tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    assert f"cannot write output {earlier_output}" in res.stderr
    assert "read-only file system" in res.stderr and "Traceback" not in res.stderr
    assert _sums(earlier_output) == before
    assert [p.name for p in folder.iterdir()] == ["prepared"]
    reliability.record(
        "fault",
        "read-only output directory (ro bind mount) for `stages.prepare`",
        "exit 2 naming the path and `read-only file system`; no traceback",
        before={"output files (sha256)": len(before)},
        after={"exit": res.returncode, "output files unchanged": f"{len(before)}/{len(before)}"},
    )
