"""Knowledge distillation (and plain fine-tuning) of any network, as one LightningModule.

Loss for classification: `alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`
(Hinton et al. 2015). A binary net's single logit z is read as two logits [0, z], so CE is
BCE and the KL term compares Bernoulli distributions. Regression uses MSE to the target and
to the teacher's output, both in standardized units. With `alpha = 1` (or no teacher) the
module is plain supervised fine-tuning: the compress stage uses it for pruned networks too.

Teacher outputs are computed once, before training (`teacher_outputs`), and looked up by row
index: train batches carry row indices instead of labels (`train_loader`).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.data import BatchLoader, as_float


def two_logits(out: torch.Tensor) -> torch.Tensor:
    """(B, K) logits as they are; a binary (B, 1) logit z becomes (B, 2) = [0, z]."""
    return torch.cat([torch.zeros_like(out), out], dim=1) if out.shape[1] == 1 else out


def kd_loss(
    student: torch.Tensor,
    target: torch.Tensor,
    teacher: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """Distillation loss on classification logits (see the module docstring)."""
    s = two_logits(student)
    hard = F.cross_entropy(s, target)
    if teacher is None or alpha >= 1.0:
        return hard
    t = two_logits(teacher)
    log_p_s = F.log_softmax(s / temperature, dim=1)
    p_t = F.softmax(t / temperature, dim=1)
    soft = F.kl_div(log_p_s, p_t, reduction="batchmean") * temperature**2
    return alpha * hard + (1 - alpha) * soft


@torch.inference_mode()
def teacher_outputs(
    teacher: nn.Module, X, batch_size: int = 512, scale: float | None = None
) -> torch.Tensor:
    """The teacher's raw outputs (regression: standardized) for every row, computed once;
    X is a tensor, an array or a reader of rows on disk (read `batch_size` rows at a time,
    uint8 pixels times `scale`)."""
    teacher.eval()
    raw = getattr(teacher, "standardized", teacher)
    with torch.no_grad():
        outs = [
            raw(as_float(torch.as_tensor(np.asarray(X[i : i + batch_size])), scale))
            for i in range(0, len(X), batch_size)
        ]
    return torch.cat(outs).clone()


def train_loader(X, batch_size: int, seed: int, scale: float | None = None) -> BatchLoader:
    """Shuffled batches of (X[idx], idx); the module looks labels/teacher outputs up by idx.
    Rows in memory (a tensor or an array) are batched from memory, a reader's from disk."""
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    idx = torch.arange(len(X)) if isinstance(X, torch.Tensor) else np.arange(len(X))
    return BatchLoader(X, idx, batch_size, shuffle=True, seed=seed, scale=scale)


class DistillationModule(L.LightningModule):
    """Train `student` on (X, y) rows, optionally against cached teacher outputs.

    Args:
        student: any network mapping (B, ...) to (B, K) or (B, 1).
        task: multiclass | binary | regression.
        targets: (N,) labels or regression values of the training rows.
        teacher: (N, K) cached teacher outputs for the same rows, or None.
        alpha: weight of the hard-label term (1 = no distillation).
        temperature: softmax temperature T.
        lr, weight_decay: AdamW, cosine-annealed to 0 over the run.
    """

    def __init__(
        self,
        student: nn.Module,
        task: str,
        targets: torch.Tensor,
        teacher: torch.Tensor | None = None,
        alpha: float = 1.0,
        temperature: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["student", "targets", "teacher"])
        self.student = student
        self.register_buffer("targets", torch.as_tensor(targets), persistent=False)
        self.register_buffer(
            "teacher", teacher if teacher is not None else torch.zeros(0), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, idx = batch
        hp = self.hparams
        y = self.targets[idx]
        teacher = self.teacher[idx] if len(self.teacher) else None
        if hp.task == "regression":
            net = self.student
            out = net.standardized(x)
            z = (y.float() - net.mean) / net.std
            loss = F.mse_loss(out.squeeze(1), z)
            if teacher is not None and hp.alpha < 1.0:
                loss = hp.alpha * loss + (1 - hp.alpha) * F.mse_loss(out, teacher)
        else:
            loss = kd_loss(self.student(x), y.long(), teacher, hp.alpha, hp.temperature)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit(
    module: DistillationModule,
    X,
    epochs: int,
    batch_size: int,
    seed: int,
    scale: float | None = None,
) -> nn.Module:
    """Train for `epochs` on CPU (no checkpoints, no logger); returns the student in eval mode."""
    if epochs > 0:
        L.seed_everything(seed, workers=True, verbose=False)
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=epochs,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=False,
            num_sanity_val_steps=0,
            deterministic=True,
        )
        # a pruned copy of the (eval-mode) teacher trains as a network trains: BatchNorm
        # batch statistics, dropout on (Lightning keeps each module's mode as it finds it)
        module.student.train()
        trainer.fit(module, train_dataloaders=train_loader(X, batch_size, seed, scale))
    return module.student.eval()
