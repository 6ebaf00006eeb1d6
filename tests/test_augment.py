"""augment: train-only, seeded, switchable transforms; the caller's RNG is left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.image_augment import ImageAugmentSpec, augment_images
from stages.augment import stage as augment
from stages.augment.tabular import apply_mixup, feature_std, jitter, plan_mixup
from stages.common import splits


def _aug(make_params, prepared_dir, tmp_path, overrides=None, name="aug"):
    cfg = make_params({"augment": overrides or {}})
    out = tmp_path / name
    metrics = augment.run(cfg, prepared_dir, out)
    return metrics, splits.load(out / "train"), out


def test_images_multiplied_seeded_and_grid_written(make_params, prepared, tmp_path):
    src = prepared("digits")
    m1, a, out = _aug(make_params, src, tmp_path, {"multiplier": 3}, "a")
    _, b, _ = _aug(make_params, src, tmp_path, {"multiplier": 3}, "b")
    assert m1["rows_out"] == 3 * m1["rows_in"]
    np.testing.assert_array_equal(a["X"], b["X"])  # same seed -> same output
    n = m1["rows_in"]
    orig = splits.load(src / "train")
    np.testing.assert_array_equal(a["X"][:n], orig["X"])  # originals first, untouched
    np.testing.assert_array_equal(a["y"][n : 2 * n], orig["y"])
    assert not np.allclose(a["X"][n : 2 * n], a["X"][:n])
    assert a["augmented"].sum() == 2 * n and (a["source_index"][n : 2 * n] == np.arange(n)).all()
    assert (out / "samples.png").stat().st_size > 1000
    assert a["X"].min() >= 0.0 and a["X"].max() <= 1.0


def test_val_and_test_are_never_augmented(make_params, prepared, tmp_path):
    src = prepared("digits")
    before = {s: (src / s / "X.npy").read_bytes() for s in ("val", "test")}
    _aug(make_params, src, tmp_path)
    assert {s: (src / s / "X.npy").read_bytes() for s in ("val", "test")} == before


def test_val_rows_get_their_own_copies_for_a_refit(make_params, prepared, tmp_path):
    """augmented/val: the val rows first, then copies drawn from a stream of their own."""
    src = prepared("digits")
    m, a, out = _aug(make_params, src, tmp_path, {"multiplier": 2})
    npz, orig = splits.load(out / "val"), splits.load(src / "val")
    n = len(orig["y"])
    assert m["val_rows_out"] == 2 * n and npz["augmented"].sum() == n
    np.testing.assert_array_equal(npz["X"][:n], orig["X"])
    np.testing.assert_array_equal(npz["y"][n:], orig["y"])
    assert not np.allclose(npz["X"][n:], orig["X"])


def test_disabled_copies_train_unchanged(make_params, prepared, tmp_path):
    src = prepared("iris")
    m, a, out = _aug(make_params, src, tmp_path, {"enabled": False})
    assert m["rows_out"] == m["rows_in"] and not a["augmented"].any()
    assert not (out / "samples.png").exists()


def test_seed_changes_output(make_params, prepared, tmp_path):
    src = prepared("digits")
    _, a, _ = _aug(make_params, src, tmp_path, name="a")
    cfg = make_params({"seed": 1})
    augment.run(cfg, src, tmp_path / "c")
    c = splits.load(tmp_path / "c" / "train")
    assert not np.array_equal(a["X"], c["X"])


def test_each_image_transform_can_be_switched_off(make_params, prepared, tmp_path):
    src = prepared("digits")
    off = {
        k: {"enabled": False}
        for k in ("rotation", "hflip", "vflip", "affine", "color", "noise", "erasing")
    }
    m, a, _ = _aug(make_params, src, tmp_path, {"image": off})
    n = m["rows_in"]
    np.testing.assert_allclose(a["X"][n:], a["X"][:n])


def test_caller_rng_state_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    augment_images(
        np.random.rand(4, 1, 8, 8).astype(np.float32),
        ImageAugmentSpec(rotation_p=1.0, noise_p=1.0),
        seed=5,
    )
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())


def test_tabular_augment_only_touches_numeric_columns(make_params, tmp_path, prepared):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from make_examples import make_houses

    make_houses(tmp_path / "h.csv", n=200)
    src = prepared("h.csv", target="sold_fast")
    m, a, _ = _aug(
        make_params, src, tmp_path, {"tabular": {"mixup": {"enabled": False}, "jitter": {"p": 1.0}}}
    )
    import json

    mask = np.asarray(
        json.loads((src / "schema.json").read_text())["preprocessing"]["numeric_mask"]
    )
    n = m["rows_in"]
    delta = a["X"][n:] - a["X"][:n]
    assert np.abs(delta[:, ~mask]).max() == 0  # one-hot columns stay exact
    assert np.abs(delta[:, mask]).mean() > 0


def test_jitter_scale_and_probability():
    rng = np.random.default_rng(0)
    X = np.zeros((4000, 3), dtype=np.float32)
    out = jitter(
        X, rng, p=0.5, std=0.1, feature_std=np.ones(3, np.float32), mask=np.ones(3, np.float32)
    )
    changed = np.abs(out).sum(axis=1) > 0
    assert 0.45 < changed.mean() < 0.55
    assert out[changed].std() == pytest.approx(0.1, rel=0.05)


def _mixup(X, y, rng, classification, chunk=None):
    plan = plan_mixup(y, rng, p=1.0, alpha=0.4, classification=classification)
    step = chunk or len(X)
    parts = [
        apply_mixup(X[lo : lo + step], y[lo : lo + step], lo, plan, X.__getitem__, y)
        for lo in range(0, len(X), step)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_mixup_keeps_class_and_blends_regression_targets():
    rng = np.random.default_rng(0)
    X = np.repeat(np.arange(3, dtype=np.float32), 50)[:, None]
    y = np.repeat(np.arange(3), 50)
    Xm, ym = _mixup(X, y, rng, classification=True)
    np.testing.assert_array_equal(ym, y)
    np.testing.assert_allclose(Xm[:, 0], y)  # partners share the class, so the value
    yr = np.linspace(0, 1, 150).astype(np.float32)
    Xr, yr2 = _mixup(X, yr, rng, classification=False)
    assert yr2.min() >= 0 and yr2.max() <= 1 and not np.allclose(yr2, yr)


@pytest.mark.parametrize("classification", [True, False])
def test_mixup_in_chunks_equals_mixup_of_the_whole_split(classification):
    """augment blends a chunk at a time, partners read from the split on disk: the rows
    must not depend on the chunk size."""
    X = np.random.default_rng(1).normal(size=(1000, 4)).astype(np.float32)
    y = np.arange(1000) % 3 if classification else X[:, 0].copy()
    whole = _mixup(X, y, np.random.default_rng(7), classification)
    chunked = _mixup(X, y, np.random.default_rng(7), classification, chunk=97)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
    assert not np.array_equal(whole[0], X)


def test_feature_std_over_chunks_matches_numpy():
    X = np.random.default_rng(2).normal(5.0, [0.1, 3.0, 1e-3], size=(5000, 7, 3))
    chunks = (X[i : i + 333] for i in range(0, len(X), 333))
    expected = X.reshape(-1, 3).std(axis=0)
    np.testing.assert_allclose(feature_std(chunks), expected, rtol=1e-6)


def test_missing_prepared_input_names_the_command(make_params, tmp_path):
    from stages.runtime.errors import UserError

    with pytest.raises(UserError, match="dvc repro prepare"):
        augment.run(make_params(), tmp_path / "nope", tmp_path / "out")


class _Terminal(__import__("io").StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("ci", [None, "true"])
def test_progress_bar_over_every_augmented_row_in_a_terminal_only(
    make_params, prepared, tmp_path, monkeypatch, ci
):
    import sys

    src = prepared("digits")
    if ci:
        monkeypatch.setenv("CI", ci)
    else:
        monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    metrics, _, _ = _aug(make_params, src, tmp_path, {"multiplier": 3})
    shown = sys.stderr.getvalue()
    val = splits.load(src / "val", "y")
    total = 2 * (metrics["rows_in"] + len(val["y"]))  # two copies of train and of val
    if ci:
        assert shown == ""  # CI logs get the stage's log line, not bar redraws
    else:
        # the bar's total is every row augmented (tqdm redraws at most every 0.1 s, so how far
        # it got on screen depends on the machine's speed)
        assert shown.startswith("\raugment:") and f"/{total} [" in shown
