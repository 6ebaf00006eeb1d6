"""Batches without a per-item collate: whole batches are indexed at once, from tensors held
in memory (on the training device when it has room) or streamed from arrays on disk.

Each rank of a distributed run gets a distinct, equally long shard of every epoch's
permutation (padded like `DistributedSampler`), so DDP ranks never wait on each other.
The permutation depends only on (seed, epoch): a resumed run sees the same batches.

Streaming (`in_memory=False`): X and y stay array-likes (the `pread` readers of
stages.common.splits in practice: any object with `len` and index-array access), and each
batch's rows are gathered from them, in the permutation's order, then
moved to the device (pinned first when that device is a GPU), in a thread one batch ahead
of the training step. uint8 images are scaled to
[0, 1] per batch, on the device, with the same float32 arithmetic in both paths, so a
split gives the same batches in memory and streamed.

`transform(X, epoch, rank, index)` runs on each train batch after it reaches the device:
online augmentation, seeded by (epoch, rank, batch index) rather than by call order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import lightning as L
import numpy as np
import torch

Transform = Callable[[torch.Tensor, int, int, int], torch.Tensor]


def as_float(X: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Model input from stored rows: uint8 pixels times `scale`, anything else as float32."""
    if X.dtype == torch.uint8:
        return X.to(torch.float32).mul_(scale if scale is not None else 1.0 / 255.0)
    return X if X.dtype == torch.float32 else X.float()


class BatchLoader:
    """Iterable of (X[idx], y[idx]) batches over tensors in memory or arrays on disk."""

    def __init__(
        self,
        X: torch.Tensor | np.ndarray,
        y: torch.Tensor | np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] = lambda: 0,
        device: torch.device | None = None,
        scale: float | None = None,
        transform: Transform | None = None,
    ):
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, epoch
        self.per_rank = -(-len(X) // world_size) if shuffle or world_size > 1 else len(X)
        self.streamed = not isinstance(X, torch.Tensor)
        self.device = device or (torch.device("cpu") if self.streamed else X.device)
        self.scale, self.transform = scale, transform

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
        return order if self.streamed else order.to(self.X.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, epoch = self.indices(), self.epoch()
        batches = (order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size))
        if self.streamed:
            rows = self._prefetched(idx.numpy() for idx in batches)
        else:
            rows = ((self.X[idx], self.y[idx]) for idx in batches)
        for i, (xb, yb) in enumerate(rows):
            xb = as_float(xb, self.scale)
            if self.transform is not None:
                xb = self.transform(xb, epoch, self.rank, i)
            yield xb, yb

    def _prefetched(self, batches: Iterator[np.ndarray]) -> Iterator[tuple[torch.Tensor, ...]]:
        """`_gather` of each batch, the next one read in a thread while the caller trains on
        this one (`pread` and the host-to-device copy release the GIL). At most one read is
        ahead; an iteration stopped early waits for it, so no read outlives the epoch."""
        cuda = self.device.type == "cuda"
        copies = torch.cuda.Stream(self.device) if cuda else None
        init = (lambda: torch.cuda.set_device(self.device)) if cuda else None
        with ThreadPoolExecutor(1, "reprolab-prefetch", initializer=init) as pool:
            ahead = None
            for idx in batches:
                nxt = pool.submit(self._gather, idx, copies)
                if ahead is not None:
                    yield self._ready(*ahead.result())
                ahead = nxt
            if ahead is not None:
                yield self._ready(*ahead.result())

    def _gather(self, idx: np.ndarray, copies=None) -> tuple:
        """The rows `idx` of the on-disk arrays, in that order, on the loader's device: on a
        GPU pinned, then copied on the `copies` stream (so the copy overlaps the step that
        runs on the compute stream), with the event that marks the copy done."""
        xb = torch.from_numpy(np.ascontiguousarray(self.X[idx]))
        yb = torch.from_numpy(np.ascontiguousarray(self.y[idx]))
        if self.device.type != "cuda":
            return xb, yb, None
        xb, yb = xb.pin_memory(), yb.pin_memory()
        with torch.cuda.stream(copies):
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            return xb, yb, copies.record_event()

    def _ready(self, xb: torch.Tensor, yb: torch.Tensor, done) -> tuple[torch.Tensor, ...]:
        """The batch, usable on the current stream: it waits for the copy, and the memory is
        marked in use there, so the allocator does not hand it back to the copy stream."""
        if done is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(done)
            xb.record_stream(current)
            yb.record_stream(current)
        return xb, yb


class TensorDataModule(L.LightningDataModule):
    """Serve numpy/tensor splits as batches, from memory or streamed.

    Args:
        train, val, test: (X, y) pairs; X (N, *input_shape) float32, or uint8 pixels that
            `scale` turns into [0, 1]; y labels or values.
        batch_size: rows per batch (per rank).
        seed: shuffling seed (train only).
        on_device: move in-memory tensors to the training device in `setup` (GPUs).
        in_memory: False = keep the arrays as given (readers of files on disk) and read each
            batch from them; True = whole tensors, as before.
        scale: the factor uint8 pixels are multiplied by (None: 1/255).
        train_transform: online augmentation of each train batch (see the module doc).
    """

    def __init__(
        self,
        train,
        val,
        test=None,
        batch_size: int = 64,
        seed: int = 0,
        on_device: bool = True,
        in_memory: bool = True,
        scale: float | None = None,
        train_transform: Transform | None = None,
    ):
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test}
        self.batch_size, self.seed, self.on_device = batch_size, seed, on_device
        self.in_memory, self.scale, self.train_transform = in_memory, scale, train_transform
        self.tensors: dict[str, tuple] = {}
        self.device = torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        self.device = device if device.type != "mps" else torch.device("cpu")
        for name, pair in self.splits.items():
            if pair is None or name in self.tensors:
                continue
            if not self.in_memory:
                self.tensors[name] = pair  # numpy (memory-mapped): read per batch
                continue
            X, y = (torch.as_tensor(a) for a in pair)
            if X.dtype not in (torch.uint8, torch.float32):
                X = X.float()
            target = self.device if self.on_device else torch.device("cpu")
            self.tensors[name] = (X.to(target), y.to(target))

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
            device=self.device if not self.in_memory else None,
            scale=self.scale,
            transform=self.train_transform if split == "train" else None,
        )

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test", shuffle=False)
