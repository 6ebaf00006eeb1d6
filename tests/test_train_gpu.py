"""GPU-only checks (skipped without CUDA): bf16-mixed training, data kept on the device,
FSDP."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_modules.data import TensorDataModule
from lightning_modules.fit import build_trainer
from lightning_modules.module import TaskModule
from stages.prepare import stage as prepare
from stages.train import stage as train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_bf16_mixed_trains_on_gpu_and_deterministic_holds(make_params, tmp_path, arch):
    """The shipped `deterministic: true` on CUDA: no op refuses to run, and a second run gives
    bit-identical weights."""
    cfg = make_params(
        {
            "model": {"arch": arch, "width": 16, "depth": 2},
            "train": {
                "max_epochs": 3,
                "precision": "bf16-mixed",
                "accelerator": "gpu",
                "use_augmented": False,
                "ema": {"enabled": False},
            },
        }
    )
    assert cfg.train.deterministic
    src = tmp_path / "prepared"
    prepare.run(cfg, src, root=tmp_path)
    schema = json.loads((src / "schema.json").read_text())
    weights = []
    for attempt in ("a", "b"):
        paths = train.Paths.under(tmp_path / attempt, src)
        metrics = train.run(cfg, schema, paths)
        assert metrics["epochs"] == 3 and metrics["val/acc"] > 0.5
        weights.append(torch.load(paths.model, weights_only=True)["state_dict"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_datamodule_keeps_tensors_on_the_gpu(tmp_path):
    X, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 3
    seen = []

    class Probe(TaskModule):
        def training_step(self, batch, batch_idx):
            seen.append(batch[0].device.type)
            return super().training_step(batch, batch_idx)

    module = Probe(
        "mlp",
        {"input_shape": [1, 8, 8], "n_outputs": 3, "width": 8},
        "multiclass",
        3,
        optimizer={"name": "adam", "lr": 1e-3},
        scheduler={"name": "none"},
    )
    data = TensorDataModule((X, y), (X, y), batch_size=16)
    trainer = build_trainer(tmp_path, "val/acc", "max", 1, accelerator="gpu")
    trainer.fit(module, datamodule=data)
    assert data.tensors["train"][0].device.type == "cuda" and set(seen) == {"cuda"}


def test_fsdp_trains_and_ships_a_plain_state_dict(make_params, tmp_path):
    """train.strategy: fsdp on every GPU here; model.pt loads into the unwrapped network."""
    from lightning_modules.serialization import load_network

    cfg = make_params(
        {
            "model": {"arch": "mlp", "width": 32, "depth": 2},
            "train": {
                "max_epochs": 2,
                "strategy": "fsdp",
                "accelerator": "gpu",
                "devices": 1,
                "use_augmented": False,
                "ema": {"enabled": False},
            },
        }
    )
    src = tmp_path / "prepared"
    prepare.run(cfg, src, root=tmp_path)
    schema = json.loads((src / "schema.json").read_text())
    paths = train.Paths.under(tmp_path / "fsdp", src)
    metrics = train.run(cfg, schema, paths)
    assert metrics["epochs"] == 2 and metrics["val/acc"] > 0.5
    net, _ = load_network(paths.model)
    assert sum(p.numel() for p in net.parameters()) > 0


def test_streamed_batches_copied_on_a_side_stream_equal_the_held_ones(tmp_path):
    """The read-ahead copies each streamed batch on its own CUDA stream; what the step sees
    (after the wait on the copy's event) equals the in-memory batch, while a kernel on the
    compute stream keeps the GPU busy between batches."""
    import numpy as np

    from lightning_modules.data import BatchLoader
    from stages.common import splits

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (300, 3, 16, 16)).astype(np.uint8)
    y = rng.integers(0, 10, 300)
    splits.write(tmp_path / "s", X=X, y=y)
    reader = splits.open_split(tmp_path / "s")["X"]
    cuda = torch.device("cuda")
    held = BatchLoader(torch.from_numpy(X).to(cuda), torch.from_numpy(y).to(cuda), 32, True, 3)
    streamed = BatchLoader(reader, y, 32, True, 3, device=cuda)
    busy = torch.randn(2048, 2048, device=cuda)
    for (xa, ya), (xb, yb) in zip(held, streamed, strict=True):
        busy = busy @ busy / busy.norm()  # compute-stream work the copies overlap
        assert xb.device.type == "cuda" and torch.equal(xa, xb) and torch.equal(ya, yb)
