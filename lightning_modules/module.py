"""The LightningModule: one `_step` for train/val/test, losses per task, metrics per split.

Tasks: `multiclass` (net outputs K logits; cross-entropy with label smoothing), `binary`
(net outputs one logit; BCE), `regression` (net outputs one value; MSE/Huber/L1 on
targets standardized with the training mean/std, metrics in the original units).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from lightning_modules.batch_mix import BatchMixer
from lightning_modules.metrics import build_metrics
from lightning_modules.networks import build_network
from lightning_modules.optim import build_optimizer, build_scheduler

TASKS = ("multiclass", "binary", "regression")
LOSSES = ("auto", "cross_entropy", "mse", "huber", "l1")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class EpochRows:
    """Each train step's (predictions, targets), kept for one metrics update per epoch (no
    per-step host sync on a GPU), written into two buffers sized for the epoch on its
    first step. A list of per-step tensors pinned small blocks between the batch buffers,
    so glibc's heap could not shrink and resident memory grew ~12 KB per 3x32x32 row.
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.preds: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        self.n = 0

    def add(self, preds: torch.Tensor, targets: torch.Tensor, batches: int | float) -> None:
        end = self.n + len(preds)
        if self.preds is None or end > len(self.preds):
            rows = max(end, int(batches) * len(preds) if batches != float("inf") else end)
            self.preds = self._grown(self.preds, preds, rows)
            self.targets = self._grown(self.targets, targets, rows)
        self.preds[self.n : end] = preds
        self.targets[self.n : end] = targets
        self.n = end

    def _grown(self, old: torch.Tensor | None, like: torch.Tensor, rows: int) -> torch.Tensor:
        new = like.new_empty((rows, *like.shape[1:]))
        if old is not None:
            new[: self.n] = old[: self.n]
        return new

    def rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.preds[: self.n], self.targets[: self.n]


class TaskModule(L.LightningModule):
    """Train any registry network on one task.

    Args:
        arch: network name (`networks.ARCHS`).
        net_kwargs: the rest of `build_network`'s plain arguments (input_shape, n_outputs...).
        task: multiclass | binary | regression.
        n_classes: classes (classification), 0 for regression.
        loss: auto | cross_entropy | mse | huber | l1.
        label_smoothing: classification only.
        optimizer: `build_optimizer` arguments (name, lr, weight_decay, ...).
        scheduler: `build_scheduler` arguments (name, eta_min, ...).
        mixup, cutmix: {"p": ..., "alpha": ...}; p = 0 switches one off.
        seed: seeds the MixUp/CutMix generator (plus the rank, plus the epoch).
        l1: coefficient of an L1 penalty on the network's weights (every parameter with two
            or more dimensions: linear, convolution and embedding weights; not biases or
            norm scales). Added to the training loss and logged as its own term, `train/l1`;
            `train/loss` stays the data term, comparable with `val/loss`.
        compile: off, or a `torch.compile` mode (default | reduce-overhead | max-autotune)
            for the network's forward in training and validation. The compiled function is
            kept outside the module tree, so state dicts, checkpoints and model.pt are the
            plain network's and load without compile.
    """

    def __init__(
        self,
        arch: str,
        net_kwargs: dict[str, Any],
        task: str,
        n_classes: int,
        *,
        loss: str,
        label_smoothing: float,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        mixup: dict[str, float],
        cutmix: dict[str, float],
        seed: int,
        l1: float = 0.0,
        compile: str = "off",
    ):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        self.save_hyperparameters()
        self.net = build_network(arch, **net_kwargs)
        self.train_metrics = build_metrics(task, n_classes, "train")
        self.val_metrics = build_metrics(task, n_classes, "val")
        self.test_metrics = build_metrics(task, n_classes, "test")
        self.mixer = BatchMixer(
            n_classes if task == "multiclass" else 0,
            mixup["p"],
            mixup["alpha"],
            cutmix["p"],
            cutmix["alpha"],
            seed,
        )
        self._loss_sum = torch.zeros(())
        self._l1_sum = torch.zeros(())
        self._loss_count = 0
        self._train_out = EpochRows()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs the loss is computed on (regression: standardized units)."""
        return self._forward_fn()(x)

    def _forward_fn(self):
        """The network's (standardized) forward, compiled on first use when asked."""
        fn = self.__dict__.get("_compiled")  # a plain attribute: not a submodule
        if fn is None:
            net = self.net
            fn = net.standardized if self.hparams.task == "regression" else net
            mode = self.hparams.get("compile", "off")
            if mode != "off":
                fn = torch.compile(fn, mode=mode)
            self.__dict__["_compiled"] = fn
        return fn

    def _loss(self, out: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        task, hp = self.hparams.task, self.hparams
        if task == "multiclass":
            return F.cross_entropy(out, target, label_smoothing=smoothing)
        if task == "binary":
            t = target.float() * (1 - smoothing) + 0.5 * smoothing
            return F.binary_cross_entropy_with_logits(out.squeeze(1), t)
        z = (target.float() - self.net.mean) / self.net.std
        kind = "mse" if hp.loss == "auto" else hp.loss
        fn = {"mse": F.mse_loss, "huber": F.huber_loss, "l1": F.l1_loss}[kind]
        return fn(out.squeeze(1), z)

    def _predictions(self, out: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K), or regression values in original units (B,)."""
        task = self.hparams.task
        if task == "multiclass":
            return out.softmax(dim=1)
        if task == "binary":
            p = out.squeeze(1).sigmoid()
            return torch.stack([1 - p, p], dim=1)
        return out.squeeze(1) * self.net.std + self.net.mean

    def _train_predictions(self, out: torch.Tensor) -> torch.Tensor:
        """Class ids (argmax of the logits: no softmax needed), or regression values."""
        task = self.hparams.task
        if task == "multiclass":
            return out.argmax(dim=1)
        if task == "binary":
            return (out.squeeze(1) > 0).long()
        return self._predictions(out.float())

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        if stage == "train" and self.mixer.active:
            x_in, target = self.mixer(x, y)
        else:
            x_in, target = x, y
        out = self._raw(x_in)
        # label smoothing regularizes training only: val/test loss is the plain negative
        # log-likelihood, comparable across runs (and trials) with different smoothing
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        loss = self._loss(out, target, smoothing)
        if stage != "train":
            self._metrics(stage).update(self._predictions(out.detach().float()), y)
            self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(x))
            return loss
        preds = self._train_predictions(out.detach())
        batches = self._trainer.num_training_batches if self._trainer else float("inf")
        self._train_out.add(preds, y, batches)  # train metrics: one update per epoch
        self._loss_sum = self._loss_sum.to(loss.device) + loss.detach() * len(x)
        self._loss_count += len(x)
        if self.hparams.l1:
            penalty = self.hparams.l1 * self.l1_norm()
            self._l1_sum = self._l1_sum.to(loss.device) + penalty.detach() * len(x)
            loss = loss + penalty
        return loss

    def l1_norm(self) -> torch.Tensor:
        """Sum of |w| over the network's weights (parameters of two or more dimensions)."""
        weights = [p for p in self.net.parameters() if p.ndim > 1]
        return torch.stack(torch._foreach_norm(weights, 1)).sum()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        # Dropout and MixUp draws depend only on (seed, epoch, rank): resuming from an
        # epoch-end checkpoint replays exactly what an uninterrupted run draws.
        stream = self.current_epoch * 1009 + self.global_rank
        torch.manual_seed(self.hparams.seed * 100_003 + stream)
        self.mixer.reseed(stream)
        self._train_out.clear()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 == self.trainer.num_training_batches:  # epoch summary, logged once
            mean = self._loss_sum / max(1, self._loss_count)
            self._stop_if_not_finite(mean)
            self.log("train/loss", mean, on_step=True, on_epoch=False, sync_dist=True)
            if self.hparams.l1:
                l1 = self._l1_sum / max(1, self._loss_count)
                self.log("train/l1", l1, on_step=True, on_epoch=False, sync_dist=True)
                self._l1_sum = torch.zeros((), device=mean.device)
            preds, targets = self._train_out.rows()
            self.train_metrics.update(preds, targets)
            self._train_out.clear()
            self._log_metrics("train", on_step=True)
            self._loss_sum, self._loss_count = torch.zeros((), device=mean.device), 0

    def _stop_if_not_finite(self, mean_loss: torch.Tensor) -> None:
        """Raise before validation and the epoch's checkpoints if any step's loss was NaN/inf.

        Checked once per epoch on the running sum (a NaN or inf in any step makes it
        non-finite): a per-step `isfinite` check is a host-device synchronization on every
        step, which stalled a GPU's launch queue. Under DDP every rank sees the same verdict,
        so all stop together.
        """
        if self.trainer.world_size > 1:
            mean_loss = self.trainer.strategy.reduce(mean_loss, reduce_op="mean")
        if not torch.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"loss is {mean_loss.item()} at epoch {self.current_epoch} (mean training loss "
                f"of the epoch); lower train.optimizer.lr or set train.gradient_clip"
            )

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _log_metrics(self, split: str, on_step: bool = False) -> None:
        metrics = self._metrics(split)
        self.log_dict(metrics.compute(), on_step=on_step, on_epoch=not on_step)
        metrics.reset()

    def _metrics(self, split: str):
        return getattr(self, f"{split}_metrics")

    def configure_optimizers(self):
        hp = self.hparams
        opt = build_optimizer(
            self.parameters(),
            **hp.optimizer,
            fused=self.trainer.precision != "16-mixed",  # GradScaler + clipping: not fused
        )
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        sched = build_scheduler(opt, total_steps=total, steps_per_epoch=per_epoch, **hp.scheduler)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
