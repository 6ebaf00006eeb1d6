"""Optimizers, schedules, MixUp/CutMix and the batch loader, on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.batch_mix import BatchMixer
from lightning_modules.data import BatchLoader
from lightning_modules.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    build_optimizer,
    build_scheduler,
    can_fuse,
)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_builds_and_steps(name):
    layer = torch.nn.Linear(3, 1)
    before = layer.weight.detach().clone()
    opt = build_optimizer(layer.parameters(), name, lr=0.1)
    assert opt.param_groups[0]["weight_decay"] == 1e-4
    layer(torch.ones(2, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, layer.weight)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_kernel_where_torch_has_one_same_updates(name):
    """Fused steps match the per-tensor loop; rmsprop (no fused kernel) stays unfused."""
    weights = []
    for fused in (True, False):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        opt = build_optimizer(net.parameters(), name, lr=0.05, fused=fused)
        assert bool(opt.defaults.get("fused")) == (fused and name != "rmsprop")
        x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
        for _ in range(5):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_onecycle_runs_with_every_optimizer(name):
    """Momentum is cycled only where the optimizer has some (adagrad has none)."""
    layer = torch.nn.Linear(3, 1)
    opt = build_optimizer(layer.parameters(), name, lr=0.1)
    sched = build_scheduler(opt, "onecycle", total_steps=8, steps_per_epoch=4)
    for _ in range(8):
        layer(torch.ones(2, 3)).sum().backward()
        opt.step()
        sched.step()
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0


def test_no_fused_kernel_for_integer_params():
    assert not can_fuse("adamw", [torch.zeros(2, dtype=torch.long)])
    assert can_fuse("adagrad", [torch.zeros(2)]) and not can_fuse("rmsprop", [torch.zeros(2)])


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_builds_and_changes_lr(name):
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
    sched = build_scheduler(opt, name, total_steps=20, steps_per_epoch=2, step_size=2, eta_min=0.01)
    lrs = []
    for _ in range(20):
        opt.step()
        if sched is not None:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    if name == "none":
        assert set(lrs) == {1.0}
    else:
        assert lrs[-1] < max(lrs)
    if name in ("cosine", "warmup_cosine"):
        assert lrs[-1] == pytest.approx(0.01, abs=1e-6)
    if name == "warmup_cosine":
        assert lrs[0] < lrs[1]  # linear warm-up


def test_unknown_optimizer_and_scheduler_named():
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        build_optimizer([torch.nn.Parameter(torch.ones(1))], "lbfgs", lr=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="unknown scheduler 'plateau'"):
        build_scheduler(opt, "plateau", 10, 1)


def _batch(n=16, k=4):
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=gen), torch.arange(n) % k


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_preserves_label_mass_and_is_seeded(kind):
    x, y = _batch()
    p = {"mixup_p": 1.0} if kind == "mixup" else {"cutmix_p": 1.0}
    state = torch.get_rng_state()
    a = BatchMixer(4, seed=3, **p)(x, y)
    b = BatchMixer(4, seed=3, **p)(x, y)
    c = BatchMixer(4, seed=4, **p)(x, y)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], c[0])
    xm, target = a
    torch.testing.assert_close(target.sum(dim=1), torch.ones(len(y)))  # label mass kept
    assert not torch.equal(xm, x) and target.max() < 1.0 + 1e-6
    if kind == "cutmix":  # the label weights equal the pasted area's share
        changed = (xm != x).flatten(1).float().mean(dim=1)
        own = target[torch.arange(len(y)), y]
        assert (own <= 1.0).all() and (changed.max() <= 1 - own.min() + 1e-6)


def test_reseed_replays_an_epoch():
    x, y = _batch()
    mixer = BatchMixer(4, mixup_p=0.5, cutmix_p=0.5, seed=7)
    mixer.reseed(3)
    first = [mixer(x, y)[1] for _ in range(4)]
    mixer.reseed(3)
    again = [mixer(x, y)[1] for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_cutmix_refuses_non_images():
    with pytest.raises(ValueError, match="CutMix needs images"):
        BatchMixer(3, cutmix_p=1.0)(torch.rand(4, 5), torch.arange(4) % 3)


def test_loader_shards_ranks_distinct_equal_and_complete():
    X, y = torch.arange(10).float().unsqueeze(1), torch.arange(10)
    shards = [BatchLoader(X, y, 2, shuffle=True, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [torch.cat([b[1] for b in s]) for s in shards]
    assert len({len(s) for s in shards}) == 1 and all(len(v) == 4 for v in seen)
    assert set(torch.cat(seen).tolist()) == set(range(10))
    assert len(set(seen[0].tolist()) & set(seen[1].tolist())) <= 1  # only padding repeats


def test_loader_order_depends_on_epoch_only():
    X, y = torch.arange(20).float().unsqueeze(1), torch.arange(20)
    epoch = {"e": 0}
    loader = BatchLoader(X, y, 8, shuffle=True, seed=2, epoch=lambda: epoch["e"])
    e0 = torch.cat([b[1] for b in loader])
    assert torch.equal(e0, torch.cat([b[1] for b in loader]))
    epoch["e"] = 1
    assert not torch.equal(e0, torch.cat([b[1] for b in loader]))
    assert len(loader) == 3 and sorted(e0.tolist()) == list(range(20))


def test_ema_update_matches_a_walk_of_the_module_tree():
    """EMAModel keeps its list of modules between updates: the average must still equal a
    lerp over `parameters()` + `buffers()` (and follow buffers that `.to()` replaces)."""
    import torchmetrics as tm

    from lightning_modules.callbacks import EMAModel

    torch.manual_seed(0)
    net = torch.nn.Module()
    net.body = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    net.metric = tm.classification.MulticlassAccuracy(3)  # in the tree, holds no tensors
    net.shared = net.body[0]  # a module reached twice counts once
    ema = EMAModel(net, decay=0.9)
    expected = [t.detach().clone() for t in [*net.parameters(), *net.buffers()]]
    for step in range(3):
        net.train().body(torch.randn(2, 1, 5, 5))  # BatchNorm buffers move
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        if step == 1:
            net.body[1].running_mean = net.body[1].running_mean.clone()  # a replaced buffer
        ema.update_parameters(net)
        current = [t.detach() for t in [*net.parameters(), *net.buffers()]]
        for e, c in zip(expected, current, strict=True):
            if step == 0 or not e.is_floating_point():
                e.copy_(c)
            else:
                e.lerp_(c, 0.1)
    averaged = [t.detach() for t in [*ema.module.parameters(), *ema.module.buffers()]]
    assert len(averaged) == len(expected) == 7
    for a, e in zip(averaged, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-6)
    assert int(ema.n_averaged) == 3
