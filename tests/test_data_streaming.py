"""lightning_modules/data.py streaming and online augmentation (#16): batches read from
split files on disk (stages.common.splits readers) equal the in-memory ones, rank by rank;
online augmentation is seeded by (epoch, rank, batch) and leaves the caller's RNG alone."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from lightning_modules.data import BatchLoader
from stages.common import splits


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_streamed_batches_equal_in_memory_batches(tmp_path, dtype):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (37, 1, 4, 4)).astype(dtype)
    y = rng.integers(0, 3, 37)
    splits.write(tmp_path / "s", X=X, y=y)
    Xm = splits.open_split(tmp_path / "s")["X"]
    ym = y
    for rank in range(2):  # each DDP rank's shard, streamed from the split on disk
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


class _Rows:
    """Rows on "disk": records which batches were read, and when; fails on batch `bad`."""

    def __init__(self, X, bad=None):
        self.X, self.bad, self.reads = X, bad, []

    def __len__(self):
        return len(self.X)

    def __getitem__(self, idx):
        self.reads.append(int(idx[0]))
        if len(self.reads) - 1 == self.bad:
            raise OSError(f"read of batch {self.bad} failed")
        return self.X[idx]


def test_streamed_batches_are_read_one_ahead_and_no_read_outlives_the_loop():
    X = np.arange(40, dtype=np.float32).reshape(40, 1)
    rows = _Rows(X)
    it = iter(BatchLoader(rows, np.zeros(40), 8))
    xb, _ = next(it)
    assert xb[0, 0] == 0
    for _ in range(50):  # the next batch is read while this one is in use
        if len(rows.reads) == 2:
            break
        threading.Event().wait(0.01)
    assert rows.reads == [0, 8]
    it.close()  # an epoch stopped early (e.g. max_steps): the read ahead is awaited, not left
    assert not [t for t in threading.enumerate() if t.name.startswith("reprolab-prefetch")]
    assert rows.reads == [0, 8]
    # a failed read surfaces in the training loop, at the batch that needed it
    got = []
    with pytest.raises(OSError, match="batch 2 failed"):
        for xb, _ in BatchLoader(_Rows(X, bad=2), np.zeros(40), 8):
            got.append(int(xb[0, 0]))
    assert got == [0, 8]


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


RANKS_SCRIPT = """
import json, sys
from pathlib import Path

import lightning as L
import json

import numpy as np
import torch

from lightning_modules.data import TensorDataModule
from stages.common import splits

work = Path(sys.argv[1])
rows = splits.open_split(work / "train")  # pread readers: each rank reads only its rows
X, y = rows["X"], np.asarray(rows["y"])


class Record(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(X.shape[1], 1)
        self.seen = []

    def training_step(self, batch, _):
        xb, yb = batch
        self.seen += yb.tolist()
        return self.lin(xb).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self):
        rank = self.trainer.global_rank
        (work / f"rank{rank}.json").write_text(json.dumps(self.seen))


data = TensorDataModule((X, y), (X, y), batch_size=16, seed=5, in_memory=False)
trainer = L.Trainer(
    accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    limit_val_batches=0,
)
trainer.fit(Record(), data)
"""


@pytest.mark.integration
def test_two_ddp_ranks_stream_disjoint_shards_that_cover_the_split(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    n = 100  # even: no padding row repeats on a second rank
    X = np.random.default_rng(0).random((n, 3), dtype=np.float32)
    splits.write(tmp_path / "train", X=X, y=np.arange(n))  # the label is the row's index
    (tmp_path / "ranks.py").write_text(RANKS_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    # --standalone: a local rendezvous on a free port (a fixed port collides across workers)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(tmp_path / "ranks.py"), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    # its own process group: on a timeout the two ranks go too, not only torchrun
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == n // 2
    assert not set(seen[0]) & set(seen[1])  # disjoint
    assert sorted(seen[0] + seen[1]) == list(range(n))  # together: every row once
