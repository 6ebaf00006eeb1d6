"""lightning_modules/data.py streaming and online augmentation (#16): batches read from
memory-mapped files equal the in-memory ones, rank by rank; online augmentation is seeded by
(epoch, rank, batch) and leaves the caller's RNG alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.data import BatchLoader


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_streamed_batches_equal_in_memory_batches(tmp_path, dtype):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (37, 1, 4, 4)).astype(dtype)
    y = rng.integers(0, 3, 37)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    Xm, ym = (np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in ("X", "y"))
    for rank in range(2):  # each DDP rank's shard, streamed from the memory-mapped files
        kw = {"shuffle": True, "seed": 4, "rank": rank, "world_size": 2}
        held = BatchLoader(torch.from_numpy(X), torch.from_numpy(y), 8, **kw)
        streamed = BatchLoader(Xm, ym, 8, **kw)
        assert streamed.streamed and len(streamed) == len(held) == 3
        for (xa, ya), (xb, yb) in zip(held, streamed, strict=True):
            assert xa.dtype == xb.dtype == torch.float32
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if dtype == np.uint8:  # pixels scaled per batch
        [(xb, _)] = list(BatchLoader(Xm, ym, 64))
        assert torch.allclose(xb, torch.from_numpy(X).float() / 255.0, atol=1e-7)


def test_online_augment_is_seeded_by_epoch_rank_and_batch():
    from lightning_modules.image_augment import ImageAugmentSpec, OnlineAugment

    aug = OnlineAugment(ImageAugmentSpec(affine_p=1.0, noise_p=1.0), seed=3)
    X = torch.rand(6, 1, 8, 8)
    torch.manual_seed(0)
    before = torch.rand(1)
    a = aug(X.clone(), epoch=1, rank=0, index=2)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG is left alone
    assert torch.equal(a, aug(X.clone(), 1, 0, 2))  # same (epoch, rank, batch): same output
    for other in ((2, 0, 2), (1, 1, 2), (1, 0, 3)):
        assert not torch.equal(a, aug(X.clone(), *other))
    assert not torch.equal(a, X) and a.min() >= 0 and a.max() <= 1
