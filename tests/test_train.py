"""train stage in-process: outputs and the model.pt contract, tuned overlay, refusals,
NaN handling. Tiny nets, one or two epochs, CPU."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from lightning_modules.serialization import load_network, predict
from stages.common import splits
from stages.common.compat import check, cpu_has_bf16
from stages.runtime.errors import ConfigError, UserError
from stages.train import stage as train
from stages.train.setup import load_params

TINY = {
    "model": {"width": 4, "depth": 1},
    "train": {"max_epochs": 1, "use_augmented": False, "threads": 1, "batch_size": 128},
}


@pytest.fixture
def prepared(prepared):
    def build(source: str):
        out = prepared(source)
        return out, json.loads((out / "schema.json").read_text())

    return build


def _paths(tmp_path, prepared_dir, name="out"):
    return train.Paths.under(tmp_path / name, prepared_dir)


def _cfg(make_params, *overrides):
    from conftest import deep_update

    merged = TINY
    for o in overrides:
        merged = deep_update(merged, o)
    return make_params(merged)


@pytest.mark.parametrize(
    ("source", "arch", "task", "n_out", "width"),
    [
        ("digits", "cnn", "multiclass", 10, 10),
        ("breast_cancer", "mlp", "binary", 1, 2),
        ("diabetes", "transformer", "regression", 1, None),
    ],
)
def test_outputs_and_model_contract(
    make_params, prepared, tmp_path, source, arch, task, n_out, width
):
    src, schema = prepared(source)
    cfg = _cfg(make_params, {"model": {"arch": arch, "width": 8, "transformer": {"heads": 2}}})
    paths = _paths(tmp_path, src)
    metrics = train.run(cfg, schema, paths)
    assert metrics["epochs"] == 1 and metrics["monitor"] in metrics
    assert json.loads(paths.metrics.read_text())["epochs"] == 1
    assert (paths.checkpoints / "last.ckpt").exists() and paths.ckpt.exists()
    assert paths.history.read_text().splitlines()[0].startswith("epoch,")
    payload = torch.load(paths.model, weights_only=True)
    assert payload["arch"] == arch and payload["task"] == task
    assert payload["schema"] == schema and payload["params"]["train"]["max_epochs"] == 1
    net, meta = load_network(paths.model)
    test = splits.load(src / "test", "X", "y")
    assert net(torch.from_numpy(test["X"][:4])).shape == (4, n_out)
    out = predict(net, meta, test["X"])
    if task == "regression":  # original units: the scale of the targets, not z-scores
        assert out.shape == (len(test["y"]),) and out.mean() > 20
    else:
        assert out.shape == (len(test["y"]), width)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def test_refusals_name_key_and_choices(make_params, prepared):
    _, table = prepared("iris")
    _, image = prepared("digits")
    cases = [
        ({"model": {"arch": "lstm"}}, table, "model.arch = 'lstm'.*use one of mlp, transformer"),
        ({"model": {"arch": "cnn"}}, table, "model.arch = 'cnn'"),
        ({"train": {"cutmix": {"enabled": True}}}, table, "train.cutmix.enabled.*needs images"),
        (
            {"model": {"arch": "transformer", "transformer": {"patch_size": 3}}},
            image,
            "model.transformer.patch_size = 3",
        ),
        ({"train": {"loss": "mse"}}, image, "train.loss = 'mse'.*auto, cross_entropy"),
        ({"train": {"monitor": "val/rmse"}}, image, "train.monitor = 'val/rmse'"),
        ({"train": {"precision": "16-mixed", "accelerator": "cpu"}}, image, "needs a GPU"),
        (
            {"train": {"strategy": "fsdp", "accelerator": "cpu", "ema": {"enabled": False}}},
            image,
            "train.strategy = 'fsdp'.*CUDA GPUs only",
        ),
    ]
    if not cpu_has_bf16():
        cases.append(
            (
                {"train": {"precision": "bf16-mixed", "accelerator": "cpu"}},
                image,
                "train.precision = 'bf16-mixed': this CPU lacks",
            )
        )
    for overrides, schema, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            check(make_params(overrides), schema)


def test_schema_refuses_unknown_names(make_params):
    for overrides, key in [
        ({"model": {"arch": "vgg"}}, "model.arch"),
        ({"train": {"optimizer": {"name": "lbfgs"}}}, "train.optimizer.name"),
        ({"train": {"scheduler": {"name": "plateau"}}}, "train.scheduler.name"),
        ({"model": {"activation": "mish"}}, "model.activation"),
        ({"train": {"strategy": "fsdp"}}, "train.ema averages the whole model"),
        ({"train": {"accumulate_grad_batches": 0}}, "train.accumulate_grad_batches"),
        ({"train": {"l1": -0.1}}, "train.l1"),
    ]:
        with pytest.raises(ConfigError, match=key):
            make_params(overrides)
    assert make_params({"train": {"optimizer": {"lr": "1e-06"}}}).train.optimizer.lr == 1e-6


def test_tuned_overlay(shipped_params, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(shipped_params))
    tuned = tmp_path / "best_params.yaml"
    cfg, applied = load_params(params, tuned)
    assert not applied  # no tuning result yet
    tuned.write_text(yaml.safe_dump({"train.optimizer.lr": 0.02, "model.width": 16}))
    cfg, applied = load_params(params, tuned)
    assert applied and cfg.train.optimizer.lr == 0.02 and cfg.model.width == 16
    shipped_params["train"]["use_tuned"] = False
    params.write_text(yaml.safe_dump(shipped_params))
    assert load_params(params, tuned)[0].model.width == 32
    shipped_params["train"]["use_tuned"] = True
    params.write_text(yaml.safe_dump(shipped_params))
    tuned.write_text(yaml.safe_dump({"model.width": -1}))
    with pytest.raises(ConfigError, match="(?s)best_params.yaml overlaid.*model.width"):
        load_params(params, tuned)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    make_params, prepared, tmp_path, reliability
):
    src, schema = prepared("digits")
    paths = _paths(tmp_path, src)
    fixed = {"scheduler": {"name": "none"}}  # a run-length schedule refuses a longer resume
    train.run(_cfg(make_params, {"train": fixed}), schema, paths)
    last = paths.checkpoints / "last.ckpt"
    good = last.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("val", "test"):
        shutil.copytree(src / split, bad / split)
    data = splits.load(src / "train", "X", "y")
    splits.write(bad / "train", X=np.full_like(data["X"], np.nan), y=data["y"])
    paths = train.Paths(**{**paths.__dict__, "prepared": bad, "augmented": bad})
    cfg = _cfg(make_params, {"train": {"max_epochs": 2, "resume": True, **fixed}})
    with pytest.raises(UserError, match=r"loss is nan at epoch 1.*Last good checkpoint kept"):
        train.run(cfg, schema, paths)
    assert last.read_bytes() == good
    reliability.record(
        "fault",
        "NaN features (so NaN loss) in epoch 1 of a resumed `train`",
        "stops at that epoch with a message naming the epoch and the fix; the last "
        "good checkpoint kept",
        before={"last.ckpt bytes": len(good)},
        after={"last.ckpt unchanged": last.read_bytes() == good},
    )


def test_last_checkpoint_is_the_final_epoch_and_best_follows_the_monitor(
    make_params, prepared, tmp_path
):
    """Lightning 2.6's `save_last` only rewrites last.ckpt when a new best is saved: a
    constant monitor (lr ~ 0: nothing improves after epoch 0) would freeze it at epoch 0."""
    src, schema = prepared("digits")
    paths = _paths(tmp_path, src)
    frozen = {"optimizer": {"lr": 1e-12}, "scheduler": {"name": "none"}, "max_epochs": 3}
    train.run(_cfg(make_params, {"train": {**frozen, "monitor": "val/acc"}}), schema, paths)
    last = torch.load(paths.checkpoints / "last.ckpt", weights_only=True)
    best = torch.load(paths.checkpoints / "best.ckpt", weights_only=True)
    assert (last["epoch"], best["epoch"]) == (2, 0)  # ties keep the first best
    shipped = torch.load(paths.ckpt, weights_only=True)
    assert shipped["epoch"] == 2 and json.loads(paths.metrics.read_text())["shipped_epoch"] == 2
    # ship: best -> model.ckpt / model.pt come from best.ckpt
    train.run(
        _cfg(
            make_params,
            {"train": {**frozen, "monitor": "val/acc", "ship": "best", "fit_on": "train"}},
        ),
        schema,
        paths,
    )
    assert torch.load(paths.ckpt, weights_only=True)["epoch"] == 0


def test_ema_weights_are_validated_checkpointed_and_shipped(make_params, prepared, tmp_path):
    src, schema = prepared("digits")
    paths = _paths(tmp_path, src)
    cfg = _cfg(make_params, {"train": {"max_epochs": 2, "ema": {"enabled": True, "decay": 0.9}}})
    train.run(cfg, schema, paths)
    ckpt = torch.load(paths.checkpoints / "last.ckpt", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]  # both kept for resume
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    net, _ = load_network(paths.model)  # ship: auto without early stopping = last
    for name, value in net.state_dict().items():
        assert torch.equal(value, averaged[f"net.{name}"])
    assert json.loads(paths.metrics.read_text())["shipped"] == "last"
    # off: no averaging state, the checkpoint holds the trained weights only
    plain = _paths(tmp_path, src, "plain")
    train.run(_cfg(make_params, {"train": {"ema": {"enabled": False}}}), schema, plain)
    assert "current_model_state" not in torch.load(plain.last, weights_only=True)


def test_val_loss_is_plain_nll_whatever_the_label_smoothing():
    from lightning_modules.module import TaskModule

    def module(smoothing: float) -> TaskModule:
        torch.manual_seed(0)
        net = {"input_shape": [6], "n_outputs": 3, "width": 8, "depth": 1}
        off = {"p": 0.0, "alpha": 1.0}
        return TaskModule(
            "mlp",
            net,
            "multiclass",
            3,
            loss="auto",
            label_smoothing=smoothing,
            optimizer={"name": "adamw", "lr": 5e-3},
            scheduler={"name": "none"},
            mixup=off,
            cutmix=off,
            seed=0,
        )

    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    plain, smoothed = module(0.0), module(0.3)
    plain.eval(), smoothed.eval()
    nll = torch.nn.functional.cross_entropy(plain(x), y)
    for m in (plain, smoothed):
        logged = {}
        m.log = lambda name, value, **kw: logged.__setitem__(name, value)  # noqa: B023
        with torch.no_grad():
            m.validation_step((x, y), 0)
        assert torch.allclose(logged["val/loss"], nll)
    logged = {}
    smoothed.log = lambda name, value, **kw: logged.__setitem__(name, value)
    with torch.no_grad():  # eval mode (no dropout), so the outputs are the same
        train_loss = smoothed._step((x, y), "train")
        expected = torch.nn.functional.cross_entropy(smoothed(x), y, label_smoothing=0.3)
    assert torch.allclose(train_loss, expected)  # training still smooths
    assert not torch.allclose(train_loss, nll)


def test_refit_fits_on_train_plus_val_rows(make_params, prepared, tmp_path):
    """fit_on train+val: every epoch steps over train + val rows; train keeps val out."""
    src, schema = prepared("iris")
    n = {s: len(splits.load(src / s, "y")["y"]) for s in ("train", "val")}
    steps = {}
    for fit_on in ("train", "train+val"):
        paths = _paths(tmp_path, src, fit_on)
        cfg = _cfg(
            make_params, {"model": {"arch": "mlp"}, "train": {"fit_on": fit_on, "batch_size": 16}}
        )
        assert train.run(cfg, schema, paths)["fit_on"] == fit_on
        steps[fit_on] = torch.load(paths.ckpt, weights_only=True)["global_step"]
    assert steps == {"train": -(-n["train"] // 16), "train+val": -(-(n["train"] + n["val"]) // 16)}
    # an augmented folder from before the refit (no val split) is refused with the fix
    (tmp_path / "old-aug").mkdir()
    shutil.copytree(src / "train", tmp_path / "old-aug" / "train")
    paths = train.Paths.under(tmp_path / "old", src, tmp_path / "old-aug")
    with pytest.raises(UserError, match=r"old-aug/val: train.fit_on = 'train\+val'.*fit_on: train"):
        train.run(
            _cfg(make_params, {"model": {"arch": "mlp"}, "train": {"use_augmented": True}}),
            schema,
            paths,
        )


def test_resume_over_other_fit_rows_is_refused(tmp_path):
    from stages.train.resume import ResumePoint, check_same_rows

    point = ResumePoint(tmp_path / "last.ckpt", "run", {"fit_rows": 2514})
    check_same_rows(point, 2514)
    with pytest.raises(UserError, match="started on 2514 fit rows, the data now has 3054"):
        check_same_rows(point, 3054)
