"""`models/model.pt`: a trained network as plain data, loadable with `weights_only=True`.

The file is a dict:
    state_dict   the network's tensors
    arch         `networks.ARCHS` name
    net_kwargs   plain arguments: `build_network(arch, **net_kwargs)` rebuilds the module
    task         multiclass | binary | regression
    params       the resolved `model` and `train` sections it was trained with
    schema       data/prepared/schema.json (classes, input shape, preprocessing)
    mlflow_run_id  the training run, or None

The rebuilt network maps float32 (B, *schema["input_shape"]) to: (B, K) logits for
multiclass, (B, 1) one logit for binary (positive class = classes[1]), (B, 1) values in
the ORIGINAL target units for regression. `predict` turns that into probabilities/values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_modules.networks import build_network

FORMAT = 1


def package(
    net: torch.nn.Module,
    arch: str,
    net_kwargs: dict[str, Any],
    task: str,
    params: dict[str, Any],
    schema: dict[str, Any],
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """The dict `save_network` writes (tensors moved to CPU)."""
    return {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "arch": arch,
        "net_kwargs": net_kwargs,
        "task": task,
        "params": params,
        "schema": schema,
        "mlflow_run_id": mlflow_run_id,
    }


def save_network(path: str | Path, payload: dict[str, Any]) -> None:
    torch.save(payload, path)


def load_network(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a saved network.

    Args:
        path: a `models/model.pt`-style file.

    Returns:
        (network in eval mode on CPU, meta: every key of the file except `state_dict`).
    """
    from lightning_modules.safe_load import load_checked

    payload = load_checked(path)  # UnsafeFileError / CorruptFileError name the file
    if not isinstance(payload, dict) or "state_dict" not in payload or "arch" not in payload:
        raise ValueError(f"{path}: not a reprolab network file (no state_dict/arch keys)")
    net = build_network(payload["arch"], **payload["net_kwargs"])
    net.load_state_dict(payload["state_dict"])
    net.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return net, meta


@torch.inference_mode()
def predict(
    net: torch.nn.Module, meta: dict[str, Any], X: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """Class probabilities (N, K) for classification (binary: K = 2), values (N,) in the
    original units for regression, as float64 numpy arrays."""
    device = next(net.parameters()).device
    outs = []
    for start in range(0, len(X), batch_size):
        xb = torch.as_tensor(np.asarray(X[start : start + batch_size]), dtype=torch.float32)
        outs.append(net(xb.to(device)).float().cpu())
    out = torch.cat(outs) if outs else torch.zeros((0, 1))
    task = meta["task"]
    if task == "multiclass":
        return out.softmax(dim=1).double().numpy()
    if task == "binary":
        p = out[:, 0].sigmoid().double()
        return torch.stack([1 - p, p], dim=1).numpy()
    return out[:, 0].double().numpy()
