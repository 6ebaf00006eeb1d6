"""GPU-only checks (skipped without CUDA): bf16-mixed training, data kept on the device."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_modules.data import TensorDataModule
from lightning_modules.fit import build_trainer
from lightning_modules.module import TaskModule
from stages import prepare, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_bf16_mixed_trains_on_gpu(make_params, tmp_path):
    cfg = make_params(
        {
            "model": {"width": 8, "depth": 1},
            "train": {
                "max_epochs": 2,
                "precision": "bf16-mixed",
                "accelerator": "gpu",
                "use_augmented": False,
            },
        }
    )
    src = tmp_path / "prepared"
    prepare.run(cfg, src, root=tmp_path)
    out = tmp_path / "out"
    paths = train.Paths(
        prepared=src,
        augmented=src,
        checkpoints=out / "ck",
        ckpt=out / "m.ckpt",
        model=out / "m.pt",
        metrics=out / "t.json",
        history=out / "h.csv",
    )
    metrics = train.run(cfg, json.loads((src / "schema.json").read_text()), paths)
    assert metrics["epochs"] == 2 and metrics["val/acc"] > 0.1


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
