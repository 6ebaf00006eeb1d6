"""Networks: every arch x task runs forward/backward; every building-block name builds;
model.pt round-trips through `load_network` and `predict`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.layers import ACTIVATIONS, INITS, NORMS
from lightning_modules.networks import SUPPORTED, build_network
from lightning_modules.serialization import load_network, package, predict, save_network

SHAPES = {"image": [1, 8, 8], "table": [6], "sequence": [5, 3]}
TASK_OUTPUTS = {"multiclass": 3, "binary": 1, "regression": 1}
SMALL = {"width": 8, "depth": 2, "heads": 2, "patch_size": 2, "norm_groups": 4}


@pytest.mark.parametrize("task", TASK_OUTPUTS)
@pytest.mark.parametrize(
    ("arch", "kind"), [(a, k) for a, kinds in SUPPORTED.items() for k in kinds]
)
def test_forward_backward_every_arch_and_task(arch, kind, task):
    n_out = TASK_OUTPUTS[task]
    extra = {"target_mean": 10.0, "target_std": 2.0} if task == "regression" else {}
    net = build_network(arch, SHAPES[kind], n_out, **SMALL, **extra)
    x = torch.randn(5, *SHAPES[kind])
    out = net(x)
    assert out.shape == (5, n_out) and out.dtype == torch.float32
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
@pytest.mark.parametrize("kind", ["table", "sequence"])
def test_conv_nets_refuse_non_images(arch, kind):
    with pytest.raises(ValueError, match=f"arch '{arch}' does not take {kind}"):
        build_network(arch, SHAPES[kind], 3)


def test_recurrent_refuses_tables():
    with pytest.raises(ValueError, match="takes sequence, image"):
        build_network("lstm", SHAPES["table"], 3)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("norm", NORMS)
def test_every_activation_and_norm_builds(activation, norm):
    for arch, shape in (("mlp", [6]), ("cnn", [1, 8, 8]), ("resnet", [1, 8, 8])):
        net = build_network(arch, shape, 2, width=8, activation=activation, norm=norm)
        assert net(torch.randn(3, *shape)).shape == (3, 2)


@pytest.mark.parametrize("init", INITS)
def test_every_init_builds_and_differs_from_default(init):
    torch.manual_seed(0)
    ref = build_network("mlp", [6], 2, width=8, init="default")
    torch.manual_seed(0)
    net = build_network("mlp", [6], 2, width=8, init=init)
    same = all(torch.equal(a, b) for a, b in zip(ref.parameters(), net.parameters(), strict=True))
    assert same == (init == "default")


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        build_network("vgg", [6], 2)
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        build_network("mlp", [6], 2, activation="mish")
    with pytest.raises(ValueError, match="patch_size 3 must divide"):
        build_network("transformer", [1, 8, 8], 2, width=8, heads=2, patch_size=3)


@pytest.mark.parametrize("task", ["multiclass", "binary", "regression"])
def test_model_file_round_trip_and_predict(task, tmp_path):
    kwargs = {
        "input_shape": [1, 8, 8],
        "n_outputs": 3 if task == "multiclass" else 1,
        "width": 8,
        "depth": 1,
    }
    if task == "regression":
        kwargs |= {"target_mean": 100.0, "target_std": 5.0}
    net = build_network("cnn", **kwargs).eval()
    schema = {"input_shape": [1, 8, 8], "task": task}
    save_network(tmp_path / "m.pt", package(net, "cnn", kwargs, task, {"model": {}}, schema))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(payload) >= {"state_dict", "arch", "net_kwargs", "params", "schema"}
    loaded, meta = load_network(tmp_path / "m.pt")
    assert not loaded.training and meta["arch"] == "cnn" and "state_dict" not in meta
    X = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.from_numpy(X)), net(torch.from_numpy(X)))
    out = predict(loaded, meta, X, batch_size=3)
    if task == "regression":
        assert out.shape == (7,) and abs(out.mean() - 100.0) < 50  # original units
    else:
        assert out.shape == (7, 3 if task == "multiclass" else 2)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


CONV_VARIANTS = [
    ("cnn", {"conv": "group", "groups": 4}),
    ("cnn", {"conv": "depthwise_separable"}),
    ("resnet", {"conv": "group", "groups": 4}),
    ("resnet", {"conv": "depthwise_separable"}),
    ("resnet", {"block": "bottleneck"}),
    ("resnet", {"block": "bottleneck", "conv": "group", "groups": 4}),
]


@pytest.mark.parametrize(("arch", "kind"), CONV_VARIANTS)
def test_conv_kinds_and_bottleneck_are_built_and_learn(arch, kind):
    torch.manual_seed(0)
    shape = [1, 8, 8]
    plain = build_network(arch, shape, 2, width=16, depth=2)
    net = build_network(arch, shape, 2, width=16, depth=2, **kind)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    first = convs[0]
    assert first.groups == 1 and first.in_channels == 1  # the image's channels: standard
    if kind.get("conv") == "group":
        assert {m.groups for m in convs} == {1, kind["groups"]}
    if kind.get("conv") == "depthwise_separable":
        assert any(m.groups == m.in_channels > 1 for m in convs)
    if kind.get("block") == "bottleneck":
        assert sum(m.kernel_size == (1, 1) for m in convs) >= 2 * 2  # reduce + expand
    n = sum(p.numel() for p in net.parameters())
    assert n < sum(p.numel() for p in plain.parameters())  # the point of each of them
    x = torch.randn(64, *shape)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"arch": "cnn", "block": "bottleneck"}, "applies to arch resnet only"),
        ({"arch": "mlp", "conv": "group"}, "applies to arch cnn or resnet"),
        ({"arch": "cnn", "depth": 1, "conv": "group"}, "changes nothing at depth 1"),
        ({"arch": "cnn", "width": 6, "conv": "group", "groups": 4}, "must divide every block"),
    ],
)
def test_conv_settings_that_change_nothing_are_refused(model, message):
    from stages import config
    from stages.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        config.validate({"model": model})
