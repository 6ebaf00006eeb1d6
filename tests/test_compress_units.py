"""Compression pieces on tiny data: pruning, structured pruning, ONNX, INT8, the KD loss,
and the stage's refusals and per-variant failure rows."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from lightning_modules.distill import kd_loss
from lightning_modules.networks import build_network
from lightning_modules.pruning import (
    STRUCTURED_ARCHS,
    count_macs,
    count_params,
    layer_sparsity,
    prune_structured,
    prune_unstructured,
)
from lightning_modules.quantize import (
    disabled_optimizers,
    export_onnx,
    quantize_dynamic_int8,
    quantize_static_int8,
    run_onnx,
    session,
    verify_onnx,
)
from stages.common import splits
from stages.compress import stage as compress
from stages.runtime.errors import ConfigError, UserError

SHAPES = {"mlp": [20], "cnn": [1, 8, 8], "resnet": [3, 16, 16]}


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9])
def test_unstructured_pruning_reaches_the_requested_sparsity(target):
    torch.manual_seed(0)
    net = build_network("cnn", [1, 8, 8], 10)
    rounds = []
    report = prune_unstructured(net, target, steps=2, finetune=lambda n: rounds.append(1))
    assert len(rounds) == 2
    assert report["global"] == pytest.approx(target, abs=1e-3)
    assert layer_sparsity(net) == report  # masks were made permanent: zeros are real
    assert not any("weight_orig" in k for k in net.state_dict())
    assert all(0.0 <= v <= 1.0 for v in report.values())


@pytest.mark.parametrize("arch", STRUCTURED_ARCHS)
def test_structured_pruning_shrinks_the_network_and_keeps_output_shapes(arch):
    torch.manual_seed(0)
    shape = SHAPES[arch]
    net = build_network(arch, shape, 10).eval()
    x = torch.randn(5, *shape)
    before, macs_before = count_params(net)[0], count_macs(net, x)
    convs_before = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    prune_structured(net, arch, x[:2], ratio=0.5)
    after = count_params(net)[0]
    assert after < 0.5 * before
    assert count_macs(net, x) < 0.5 * macs_before  # half the channels: under half the MACs
    assert net(x).shape == (5, 10)
    convs_after = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(a < b for a, b in zip(convs_after, convs_before, strict=True))


def test_structured_pruning_refuses_unsupported_arch_with_reason():
    net = build_network("gru", [1, 8, 8], 10, width=8)
    with pytest.raises(NotImplementedError, match="gru"):
        prune_structured(net, "gru", torch.randn(2, 1, 8, 8), 0.5)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "transformer", "lstm"])
def test_onnx_export_matches_torch(arch, tmp_path):
    torch.manual_seed(0)
    shape = [1, 8, 8]
    net = build_network(arch, shape, 10, width=16, heads=4).eval()
    X = np.random.default_rng(0).normal(size=(64, *shape)).astype(np.float32)
    path = tmp_path / "m.onnx"
    export_onnx(net, torch.as_tensor(X[:2]), path, opset=17)
    assert verify_onnx(net, path, X, tolerance=1e-4) < 1e-4
    with torch.inference_mode():
        expected = net(torch.as_tensor(X[:7])).numpy()
    np.testing.assert_allclose(run_onnx(session(path), X[:7]), expected, atol=1e-4, rtol=1e-4)


def test_onnx_tolerance_follows_the_outputs_scale():
    from lightning_modules.quantize import within_tolerance

    expected = np.array([[-4000.0], [0.002], [3000.0], [8000.0]])  # a price model's spread
    rounding = expected + np.array([[0.02], [0.004], [-0.02], [0.03]])  # float32-sized
    assert within_tolerance(rounding, expected, 1e-4)
    assert not within_tolerance(expected + np.array([[0], [2.0], [0], [0]]), expected, 1e-4)
    probs = np.array([[0.2, 0.8], [0.5, 0.5]])  # spread below 1: the plain 1e-4 holds
    assert within_tolerance(probs + 5e-5, probs, 1e-4)
    assert not within_tolerance(probs + 5e-4, probs, 1e-4)


def test_onnx_verification_catches_a_mismatch(tmp_path):
    net = build_network("mlp", [4], 3).eval()
    X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    path = tmp_path / "m.onnx"
    export_onnx(net, torch.as_tensor(X[:2]), path, opset=17)
    with torch.no_grad():
        net.layers[-1].bias += 1.0  # torch now differs from the exported graph
    with pytest.raises(ValueError, match="differs from PyTorch"):
        verify_onnx(net, path, X, tolerance=1e-4)


def _trained_digits_mlp():
    X, y = load_digits(return_X_y=True)
    X = ((X - 8.0) / 8.0).astype(np.float32)
    gen = np.random.default_rng(0)
    order = gen.permutation(len(X))
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    net = build_network("mlp", [64], 10, width=64, depth=2, norm="none", dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    Xt, yt = torch.as_tensor(X[train]), torch.as_tensor(y[train])
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(Xt), yt).backward()
        opt.step()
    return net.eval(), X[train], X[test], y[test]


def test_int8_models_keep_accuracy_on_tiny_data(tmp_path):
    net, X_train, X_test, y_test = _trained_digits_mlp()
    src = tmp_path / "fp32.onnx"
    export_onnx(net, torch.as_tensor(X_test[:2]), src, opset=17)
    acc = {}
    quantize_dynamic_int8(src, tmp_path / "dyn.onnx")
    quantize_static_int8(src, tmp_path / "st.onnx", X_train[:200], "percentile")
    for name in ("fp32", "dyn", "st"):
        path = tmp_path / f"{name}.onnx"
        acc[name] = float(np.mean(run_onnx(session(path), X_test).argmax(1) == y_test))
    assert acc["fp32"] > 0.9
    assert acc["dyn"] >= acc["fp32"] - 0.02
    assert acc["st"] >= acc["fp32"] - 0.03
    assert (tmp_path / "st.onnx").stat().st_size < 0.45 * src.stat().st_size


def test_a_dynamic_int8_candidate_answers_each_row_as_it_would_alone(tmp_path):
    """Dynamic INT8 quantizes activations with one range per call: batched, a row's answer
    moves with its neighbours. The candidate (evaluate, serving) must not let it."""
    from stages.common.candidates import load_file, quantizes_per_call

    net, _, X_test, _ = _trained_digits_mlp()
    src, dyn = tmp_path / "fp32.onnx", tmp_path / "int8_dynamic.onnx"
    export_onnx(net, torch.as_tensor(X_test[:2]), src, opset=17)
    quantize_dynamic_int8(src, dyn)
    X = X_test[:16]
    raw_batch, raw_alone = run_onnx(session(dyn), X), run_onnx(session(dyn), X[:1])
    assert not np.allclose(raw_batch[:1], raw_alone, atol=1e-6)  # the effect is real
    assert quantizes_per_call(dyn) and not quantizes_per_call(src)
    candidate = load_file(dyn, "compressed", "classification")
    _, together = candidate.predict(X)
    for start, stop in ((0, 1), (5, 8)):
        _, alone = candidate.predict(X[start:stop])
        np.testing.assert_array_equal(alone, together[start:stop])


def test_static_int8_can_keep_a_shallow_input_conv_fp32_and_the_file_says_how_to_run_it(
    tmp_path,
):
    """1x3x3 input conv in fp32, the 8x3x3 second conv in int8. The file asks ORT not to move
    the QuantizeLinear above the fp32 MaxPool, `session` honours it, outputs are the same
    either way. `auto` keeps whichever of the two models timed faster."""
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    net = build_network("cnn", [1, 8, 8], 10, width=8, depth=2).eval()
    X = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export_onnx(net, torch.as_tensor(X[:2]), src, opset=17)
    kept = quantize_static_int8(src, dst, X, "minmax", fp32_input_conv="always")
    assert len(kept) == 3  # Conv, Relu, MaxPool (batch norm is folded into the conv)
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops[0] == "Conv" and "QLinearConv" in ops and ops.count("Conv") == 1
    assert ops.index("QuantizeLinear") > ops.index("MaxPool")
    assert disabled_optimizers(dst) == ["QDQPropagationTransformer"]
    assert disabled_optimizers(src) == []
    session(dst, optimized_path=tmp_path / "as_run.onnx")
    run_ops = [n.op_type for n in onnx.load(str(tmp_path / "as_run.onnx")).graph.node]
    assert run_ops.index("QuantizeLinear") > run_ops.index("MaxPool")
    plain = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert np.array_equal(run_onnx(session(dst), X), plain.run(None, {"input": X})[0])

    assert quantize_static_int8(src, dst, X, fp32_input_conv="never") == []
    assert "Conv" not in [n.op_type for n in onnx.load(str(dst)).graph.node]
    auto = quantize_static_int8(src, dst, X, fp32_input_conv="auto")
    assert auto in ([], kept) and bool(disabled_optimizers(dst)) == bool(auto)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["as_run.onnx", "fp32.onnx", "int8.onnx"]


def test_only_input_convs_are_fp32_candidates_and_the_walk_stops_at_a_residual_add(tmp_path):
    """resnet 3x32x32, width 16: the 3x3x3 stem is a candidate, the 16-deep 1x1 shortcut
    convs (inside the network, feeding a residual Add) are not."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from lightning_modules.quantize import input_convs

    net = build_network("resnet", [3, 32, 32], 10, width=16, depth=3).eval()
    src, pre = tmp_path / "r.onnx", tmp_path / "pre.onnx"
    export_onnx(net, torch.zeros(2, 3, 32, 32), src, opset=17)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    kinds = {n.name: n.op_type for n in onnx.load(str(pre)).graph.node}
    names = input_convs(pre)
    assert [kinds[n] for n in names] == ["Conv", "Relu"]  # the stem; its output feeds 2 nodes


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    t = torch.tensor([[0.2, 3.0, -1.0]])
    y = torch.tensor([1])
    T, alpha = 2.0, 0.3

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    ce = -math.log(softmax([1.0, 2.0, 0.5])[1])
    p_t = softmax([x / T for x in [0.2, 3.0, -1.0]])
    p_s = softmax([x / T for x in [1.0, 2.0, 0.5]])
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    expected = alpha * ce + (1 - alpha) * T**2 * kl
    assert kd_loss(s, y, t, alpha, T).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(s, y, None, alpha, T).item() == pytest.approx(ce, rel=1e-6)


def test_kd_loss_binary_single_logit_is_bce():
    z, y = torch.tensor([[0.7], [-1.2]]), torch.tensor([1, 0])
    bce = F.binary_cross_entropy_with_logits(z[:, 0], y.float())
    assert kd_loss(z, y, None, 1.0, 1.0).item() == pytest.approx(bce.item(), rel=1e-6)


@pytest.mark.parametrize("bad", [[1.0], [-0.1], [0.5, 1.2]])
def test_sparsity_outside_unit_interval_is_refused(make_params, bad):
    with pytest.raises(ConfigError, match=r"compress.unstructured.sparsities.*\[0, 1\)"):
        make_params({"compress": {"unstructured": {"sparsities": bad}}})


def _paths(folder: Path, model: str = "model.pt") -> compress.Paths:
    """Every input and output of the compress stage in one folder."""
    return compress.Paths(
        prepared=folder,
        augmented=folder,
        model=folder / model,
        out=folder / "compressed",
        metrics=folder / "c.json",
        plot=folder / "c.csv",
    )


def test_missing_model_is_refused_with_the_command(make_params, tmp_path):
    with pytest.raises(UserError, match="dvc repro train"):
        compress.run(make_params(), _paths(tmp_path, "nope.pt"))


def _tiny_inputs(tmp_path, arch, **spec):
    from lightning_modules.serialization import package, save_network

    gen = np.random.default_rng(0)
    for split, n in (("train", 64), ("val", 32)):
        X = gen.normal(size=(n, 1, 8, 8)).astype(np.float32)
        splits.write(tmp_path / split, X=X, y=gen.integers(0, 3, n))
    kwargs = {"input_shape": [1, 8, 8], "n_outputs": 3, **spec}
    net = build_network(arch, **kwargs)
    save_network(
        tmp_path / "model.pt",
        package(net, arch, kwargs, "multiclass", {}, {"input_shape": [1, 8, 8]}),
    )
    return _paths(tmp_path)


def test_unsupported_variant_is_a_failure_row_and_others_finish(make_params, tmp_path):
    """A GRU: structured pruning is not covered -> failed row; every other variant ok."""
    paths = _tiny_inputs(tmp_path, "gru", width=8, depth=1)
    cfg = make_params(
        {
            "compress": {
                "unstructured": {"sparsities": [0.5], "finetune_epochs": 0},
                "structured": {"finetune_epochs": 0},
                "distill": {"enabled": True, "epochs": 1, "width": 4},
                "latency": {"repeats": 2, "warmup": 1, "budget_s": 0.1},
            }
        }
    )
    rows = compress.run(cfg, paths)
    assert rows["structured_l1_50"]["status"] == "failed"
    assert "gru" in rows["structured_l1_50"]["error"]
    ok = {k for k, r in rows.items() if r["status"] == "ok"}
    assert ok == {
        "original",
        "onnx_fp32",
        "prune_l1_50",
        "int8_dynamic",
        "int8_static_minmax",
        "student_distilled",
        "student_scratch",
    }
    assert json.loads(paths.metrics.read_text()).keys() == rows.keys()
    files = sorted(p.name for p in paths.out.iterdir())
    assert not any(f.startswith("structured") for f in files)
    assert rows["prune_l1_50"]["nonzero_params"] < rows["prune_l1_50"]["params"]
    header = paths.plot.read_text().splitlines()[0].split(",")
    assert {"variant", "latency_ms_b256_p90", "val_acc", "delta"} <= set(header)


def _trained_regression(tmp_path) -> compress.Paths:
    """A small MLP fit to y = 900 x0 - 600 x1 + 3000 (+ noise): targets in the thousands."""
    from lightning_modules.serialization import package, save_network

    gen = np.random.default_rng(0)
    X = gen.normal(size=(384, 6)).astype(np.float32)
    y = (900 * X[:, 0] - 600 * X[:, 1] + 3000 + gen.normal(0, 50, len(X))).astype(np.float32)
    splits.write(tmp_path / "train", X=X[:256], y=y[:256])
    splits.write(tmp_path / "val", X=X[256:], y=y[256:])
    kwargs = {"input_shape": [6], "n_outputs": 1, "width": 16, "depth": 1, "dropout": 0.0}
    kwargs |= {"target_mean": float(y[:256].mean()), "target_std": float(y[:256].std())}
    torch.manual_seed(0)
    net = build_network("mlp", **kwargs)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    Xt, zt = torch.as_tensor(X[:256]), (torch.as_tensor(y[:256]) - net.mean) / net.std
    for _ in range(200):
        opt.zero_grad()
        F.mse_loss(net.standardized(Xt)[:, 0], zt).backward()
        opt.step()
    save_network(
        tmp_path / "model.pt",
        package(net.eval(), "mlp", kwargs, "regression", {}, {"input_shape": [6]}),
    )
    return _paths(tmp_path)


def test_a_variant_that_predicts_a_constant_is_degenerate_and_not_shipped(
    make_params, tmp_path, monkeypatch
):
    """The bug of issue #18: a pruned regression head (all output weights zero) answers the
    mean for every row. Such a variant is flagged `degenerate` and its file withheld; the
    pruned network, whose output layer pruning now leaves alone, stays `ok`."""
    from lightning_modules.pruning import output_layer
    from stages.compress import variants as cv

    paths = _trained_regression(tmp_path)

    def constant(ctx, name):  # the collapse as it was: the output layer's weights all zero
        net = copy.deepcopy(ctx.teacher)
        with torch.no_grad():
            output_layer(net).weight.zero_()
        path = cv._save_pt(ctx, name, net, "mlp", ctx.meta["net_kwargs"], {})
        return cv.Variant("pytorch", [path], cv.torch_runner(net), *cv._counts(net))

    jobs = cv.jobs
    monkeypatch.setattr(cv, "jobs", lambda c: [*jobs(c), ("head_zeroed", "test", constant)])
    cfg = make_params(
        {
            "compress": {
                "unstructured": {"sparsities": [0.5], "finetune_epochs": 1},
                "structured": {"enabled": False},
                "quantize": {"enabled": False},
                "distill": {"enabled": False},
                "latency": {"repeats": 2, "warmup": 1, "budget_s": 0.1},
            }
        }
    )
    rows = compress.run(cfg, paths)
    bad, pruned = rows["head_zeroed"], rows["prune_l1_50"]
    assert bad["status"] == "degenerate" and bad["val_skill"] <= 0.0
    assert "compress.degenerate_skill 0.05" in bad["reason"] and "mean" in bad["reason"]
    assert rows["original"]["val_skill"] > 0.9
    assert pruned["status"] == "ok" and pruned["val_skill"] > 0.5, pruned
    assert pruned["layer_sparsity"]["global"] == pytest.approx(0.5, abs=1e-2)
    assert sorted(p.name for p in paths.out.iterdir()) == ["onnx_fp32.onnx", "prune_l1_50.pt"]
    assert json.loads(paths.metrics.read_text())["head_zeroed"]["status"] == "degenerate"
