"""Every training switch in a tiny real train run (digits, CPU, 1-3 epochs), asserting its
effect on what the run did: the gradients and weights of its optimizer steps, the inputs
its network saw, the epochs it ran."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from lightning_modules.nets_attention import sinusoidal
from lightning_modules.networks import build_network
from lightning_modules.serialization import load_network
from stages.common.compat import cpu_has_bf16
from stages.train import stage as train

# no BatchNorm, no dropout, no EMA, a constant lr: each step's update is the optimizer's own
PLAIN = {
    "model": {"arch": "mlp", "width": 16, "depth": 1, "norm": "none", "dropout": 0.0},
    "train": {
        "max_epochs": 1,
        "batch_size": 64,
        "use_augmented": False,
        "threads": 1,
        "fit_on": "train",
        "label_smoothing": 0.0,
        "ema": {"enabled": False},
        "scheduler": {"name": "none"},
        "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 0.0},
    },
}

LEARN = {"max_epochs": 2, "optimizer": {"name": "adamw", "lr": 0.01}}  # to assert it learns


class Steps(L.Callback):
    """The network's weights before training and after each optimizer step, the gradient
    each step applied (after clipping), and the gradient norm before clipping."""

    def __init__(self):
        self.weights: list[list[torch.Tensor]] = []
        self.grads: list[list[torch.Tensor]] = []
        self.raw_norms: list[float] = []

    def on_train_start(self, trainer, pl_module):
        params = list(pl_module.net.parameters())
        self.weights.append([p.detach().clone() for p in params])

        def record(*_):  # Lightning runs forward and backward inside step(): read them after
            self.grads.append([p.grad.clone() for p in params])
            self.weights.append([p.detach().clone() for p in params])

        trainer.optimizers[0].register_step_post_hook(record)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.raw_norms.append(float(_norm(p.grad for p in pl_module.net.parameters())))


class Inputs(L.Callback):
    """Each training batch as loaded, and what the network was given for it."""

    def __init__(self):
        self.loaded: list[torch.Tensor] = []
        self.seen: list[torch.Tensor] = []

    def on_train_start(self, trainer, pl_module):
        def record(module, args):
            if module.training:
                self.seen.append(args[0].detach().clone())

        pl_module.net.register_forward_pre_hook(record)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.loaded.append(batch[0].detach().clone())


def _norm(tensors) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


@pytest.fixture
def digits(prepared):
    src = prepared("digits")
    return src, json.loads((src / "schema.json").read_text())


@pytest.fixture
def fit(make_params, digits, tmp_path):
    """fit(overrides, *callbacks, name=...) -> (metrics, paths): one real train run."""
    from conftest import deep_update

    src, schema = digits

    def run(overrides: dict, *callbacks: L.Callback, name: str = "run"):
        cfg = make_params(deep_update(PLAIN, overrides))
        paths = train.Paths.under(tmp_path / name, src)
        return train.run(cfg, schema, paths, callbacks=list(callbacks)), paths

    return run


def test_accumulating_k_batches_is_one_batch_k_times_larger(fit):
    small, large = Steps(), Steps()
    fit({"train": {"batch_size": 16, "accumulate_grad_batches": 4}}, small, name="acc")
    fit({"train": {"batch_size": 64}}, large, name="big")
    assert len(small.weights) == len(large.weights) > 3  # one update per 64 rows in both
    for step in (1, 2, 3):
        for a, b in zip(small.weights[step], large.weights[step], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    start, end = small.weights[0], small.weights[3]
    moved = max(float((a - b).abs().max()) for a, b in zip(end, start, strict=True))
    assert moved > 1e-3  # the steps did move the weights


def test_l1_penalty_sparsifies_the_weights_and_is_logged(fit):
    def near_zero(paths) -> float:
        net, _ = load_network(paths.model)
        w = torch.cat([p.detach().flatten() for p in net.parameters() if p.ndim > 1])
        return float((w.abs() < 1e-3).float().mean())

    common = {"train": {"max_epochs": 3, "optimizer": {"name": "adam", "lr": 0.01}}}
    _, plain = fit(common, name="plain")
    from conftest import deep_update

    metrics, l1 = fit(deep_update(common, {"train": {"l1": 1e-3}}), name="l1")
    assert near_zero(l1) > near_zero(plain) + 0.05
    header = l1.history.read_text().splitlines()[0].split(",")
    assert "train/l1" in header and "train/l1" not in plain.history.read_text()
    last = dict(zip(header, l1.history.read_text().splitlines()[-1].split(","), strict=True))
    net, _ = load_network(l1.model)  # the logged term is the coefficient times sum |w|
    total = sum(float(p.abs().sum()) for p in net.parameters() if p.ndim > 1)
    assert float(last["train/l1"]) == pytest.approx(1e-3 * total, rel=0.3)
    assert metrics["val/acc"] > 0.5


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_clipping_bounds_the_gradient_the_optimizer_applies(fit, algorithm):
    limit = 0.05
    steps = Steps()
    fit({"train": {"gradient_clip": {"value": limit, "algorithm": algorithm}}}, steps)
    assert max(steps.raw_norms) > 4 * limit  # clipping had work to do
    for grads in steps.grads:
        if algorithm == "norm":
            assert float(_norm(grads)) <= limit * (1 + 1e-4)
        else:
            assert max(float(g.abs().max()) for g in grads) <= limit + 1e-7


def test_early_stopping_ends_the_run_on_a_plateau(fit):
    # min_delta larger than any change: no epoch after the first counts as an improvement
    es = {"enabled": True, "patience": 1, "min_delta": 100.0}
    metrics, _ = fit({"train": {"max_epochs": 10, "early_stopping": es}})
    assert metrics["epochs"] == 2


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_momentum_and_nesterov_follow_torch_sgd_step_by_step(fit, name):
    opt = {"name": name, "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}
    steps = Steps()
    fit({"train": {"optimizer": opt}}, steps)
    params = [w.clone().requires_grad_(True) for w in steps.weights[0]]
    ref = torch.optim.SGD(
        params, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=name == "nesterov"
    )
    plain = [w.clone() for w in steps.weights[0]]
    for step in range(3):
        for p, g in zip(params, steps.grads[step], strict=True):
            p.grad = g.clone()
        ref.step()
        for p, w in zip(params, steps.weights[step + 1], strict=True):
            torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-6)
        plain = [w - 0.05 * (g + 1e-3 * w) for w, g in zip(plain, steps.grads[step], strict=True)]
    # by the third step, momentum has made the update differ from plain gradient descent
    gap = max(float((a - b.detach()).abs().max()) for a, b in zip(plain, params, strict=True))
    assert gap > 1e-4


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_batch_mixing_changes_what_the_network_trains_on(fit, kind):
    inputs = Inputs()
    metrics, _ = fit({"model": {"arch": "cnn", "width": 4, "depth": 1},
                      "train": {**LEARN, kind: {"enabled": True, "p": 1.0}}}, inputs)  # fmt: skip
    assert len(inputs.seen) == len(inputs.loaded) > 5
    for x, seen in zip(inputs.loaded, inputs.seen, strict=True):
        assert not torch.equal(x, seen)
        if kind == "cutmix":  # each row's pixels are its own or one partner row's
            own = (seen == x).flatten(1)  # (B, P)
            other = (seen.unsqueeze(1) == x.unsqueeze(0)).flatten(2)  # (B, B, P)
            assert bool((own.unsqueeze(1) | other).all(dim=2).any(dim=1).all())
        else:  # convex blends stay inside the batch's range
            assert seen.min() >= x.min() - 1e-6 and seen.max() <= x.max() + 1e-6
    assert metrics["val/acc"] > 0.2  # learns on mixed batches only (chance: 0.1)


def test_sinusoidal_positions_are_fixed_and_learned_ones_train(fit):
    arch = {"arch": "transformer", "width": 16, "depth": 1, "transformer": {"heads": 2}}
    sin = {"model": {**arch, "transformer": {"heads": 2, "positions": "sinusoidal"}},
           "train": {**LEARN, "max_epochs": 4, "batch_size": 32}}  # fmt: skip
    metrics, paths = fit(sin, name="sin")
    net, _ = load_network(paths.model)
    assert "pos" not in dict(net.named_parameters())
    torch.testing.assert_close(net.pos[0], sinusoidal(17, 16))  # 16 patches + [CLS]
    assert metrics["val/acc"] > 0.3
    torch.manual_seed(0)
    learned = build_network("transformer", [1, 8, 8], 10, width=16, depth=1, heads=2)
    start = learned.pos.detach().clone()
    _, paths = fit({"model": arch}, name="learned")
    net, _ = load_network(paths.model)
    assert "pos" in dict(net.named_parameters())
    assert net.pos.shape == start.shape and not torch.allclose(net.pos, start, atol=1e-3)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_transformer_honours_model_norm(norm):
    shape = [1, 8, 8]
    spec = {"width": 16, "depth": 1, "heads": 2, "norm_groups": 4}
    net = build_network("transformer", shape, 10, norm=norm, **spec)
    kinds = {type(m).__name__ for m in net.modules()}
    want = {"batch": "BatchNorm1d", "group": "GroupNorm", "none": None}[norm]
    assert "LayerNorm" not in kinds and (want is None or want in kinds)
    auto = build_network("transformer", shape, 10, norm="auto", **spec)
    assert "LayerNorm" in {type(m).__name__ for m in auto.modules()}
    x = torch.randn(4, *shape)
    net.train()
    net(x).sum().backward()  # trains: every parameter gets a gradient
    assert all(p.grad is not None for p in net.parameters())


def test_bidirectional_rnn_reads_both_ways_and_learns(fit):
    model = {"arch": "lstm", "width": 16, "depth": 1, "rnn": {"bidirectional": True}}
    metrics, paths = fit({"model": model, "train": LEARN})
    net, _ = load_network(paths.model)
    assert net.rnn.bidirectional and "weight_hh_l0_reverse" in dict(net.rnn.named_parameters())
    assert net.head[-1].in_features == 32  # forward and backward states side by side
    assert metrics["val/acc"] > 0.3


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU lacks native bf16")
def test_bf16_mixed_on_cpu_runs_the_network_in_bf16(fit):
    dtypes: set[torch.dtype] = set()

    class Dtypes(L.Callback):
        def on_train_start(self, trainer, pl_module):
            first = pl_module.net.layers[1]  # Flatten, then the first Linear
            first.register_forward_hook(lambda m, a, out: dtypes.add(out.dtype))

    bf16 = {**LEARN, "precision": "bf16-mixed", "accelerator": "cpu"}
    metrics, paths = fit({"train": bf16}, Dtypes())
    assert dtypes == {torch.bfloat16}
    assert metrics["val/acc"] > 0.5
    shipped = torch.load(paths.model, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in shipped.values())


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "cnn", "conv": "group", "groups": 4},
        {"arch": "cnn", "conv": "depthwise_separable"},
        {"arch": "resnet", "block": "bottleneck"},
    ],
)
def test_conv_kinds_train_with_fewer_parameters(fit, model):
    shape = {"width": 16, "depth": 2}
    metrics, paths = fit({"model": {**shape, **model}, "train": LEARN})
    net, _ = load_network(paths.model)
    standard = build_network(model["arch"], [1, 8, 8], 10, **shape)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in standard.parameters())
    assert metrics["val/acc"] > 0.3  # 2 epochs (chance: 0.1)


def test_compiled_training_matches_eager_and_ships_a_plain_state_dict(fit):
    eager, eager_paths = fit({}, name="eager")
    compiled, paths = fit({"train": {"compile": "default"}}, name="compiled")
    a = torch.load(eager_paths.model, weights_only=True)["state_dict"]
    b = torch.load(paths.model, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()  # no torch.compile wrapper prefix
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
    assert compiled["val/loss"] == pytest.approx(eager["val/loss"], rel=1e-3)
    net, _ = load_network(paths.model)  # plain network, no compile needed
    assert type(net).__name__ == "MLP"
