"""In-memory tensor DataModule: whole batches are indexed at once, no per-item collate.

Each rank of a distributed run gets a distinct, equally long shard of every epoch's
permutation (padded like `DistributedSampler`), so DDP ranks never wait on each other.
The permutation depends only on (seed, epoch): a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import torch


class BatchLoader:
    """Iterable of (X[idx], y[idx]) batches over tensors already in memory (or on a GPU)."""

    def __init__(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] = lambda: 0,
    ):
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, epoch
        self.per_rank = -(-len(X) // world_size) if shuffle or world_size > 1 else len(X)

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)

    def indices(self) -> torch.Tensor:
        n = len(self.X)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch())
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            total = self.per_rank * self.world_size
            order = torch.cat([order, order[: total - n]])  # pad so every rank has equal batches
            order = order[self.rank : total : self.world_size]
        return order.to(self.X.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices()
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.X[idx], self.y[idx]


class TensorDataModule(L.LightningDataModule):
    """Serve numpy/tensor splits as in-memory batches.

    Args:
        train, val, test: (X, y) pairs; X float32 (N, *input_shape), y labels or values.
        batch_size: rows per batch (per rank).
        seed: shuffling seed (train only).
        on_device: move the tensors to the training device in `setup` (GPUs).
    """

    def __init__(
        self, train, val, test=None, batch_size: int = 64, seed: int = 0, on_device: bool = True
    ):
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test}
        self.batch_size, self.seed, self.on_device = batch_size, seed, on_device
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def setup(self, stage: str | None = None) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        if not self.on_device or device.type == "mps":
            device = torch.device("cpu")
        for name, pair in self.splits.items():
            if pair is not None and name not in self.tensors:
                X, y = (torch.as_tensor(a) for a in pair)
                self.tensors[name] = (X.float().to(device), y.to(device))

    def _loader(self, split: str, shuffle: bool) -> BatchLoader:
        X, y = self.tensors[split]
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t else (0, 1)
        return BatchLoader(
            X,
            y,
            self.batch_size,
            shuffle,
            self.seed,
            rank,
            world,
            epoch=lambda: t.current_epoch if t else 0,
        )

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test", shuffle=False)
