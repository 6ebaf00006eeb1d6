"""The on-disk form of a data split: a folder of `.npy` arrays that streams.

A split (`data/prepared/train`, `data/augmented/val`, ...) is a folder holding one `.npy`
file per array (`X.npy`, `y.npy`, and augment's `source_index.npy` / `augmented.npy`)
and `split.json` (rows, dtypes, and `x_scale`: the factor that turns stored uint8 pixels
into the float32 model input). Images stay uint8 on disk, a quarter of float32; they
are scaled per batch (`lightning_modules.data.as_float`) or on load (`load`).

Why `.npy` rather than `.npz` or an engine's shards: `.npy` has a fixed header followed by
raw rows, so any row is one `pread` at a computed offset; it is written chunk by chunk
(header first, rows appended) and never held whole. `Rows` reads with `os.pread`, not
`mmap`: the pages a memory map touches count in the process's resident memory until the
kernel evicts them, while `pread` leaves them in the page cache only, so a reader's RSS
stays flat however large the split. (LitData's optimized shards do the same for object
storage; docs/scaling.md says how to use them with these splits.)

Writers go inside `io.atomic_dir`: a crash or a full disk leaves no half-written split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from stages.runtime.errors import UserError

META = "split.json"
CHUNK_BYTES = 64 << 20  # rows per write/read chunk: about 64 MiB of X


def exists(folder: str | Path) -> bool:
    return (Path(folder) / META).is_file()


def chunk_rows(row_bytes: int) -> int:
    """Rows per chunk for rows of `row_bytes` bytes (at least 1)."""
    return max(1, CHUNK_BYTES // max(1, row_bytes))


class Writer:
    """Write a split's arrays chunk by chunk: `write(X=..., y=...)` appends rows.

    The number of rows is declared up front (it goes into each `.npy` header), and
    `close()` refuses a split whose arrays did not receive exactly that many rows.
    """

    def __init__(
        self,
        folder: str | Path,
        rows: int,
        arrays: Mapping[str, tuple[tuple[int, ...], Any]],
        x_scale: float | None = None,
    ):
        self.folder, self.rows, self.x_scale = Path(folder), int(rows), x_scale
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written = dict.fromkeys(arrays, 0)
        self.dtypes = {k: np.dtype(dtype) for k, (_, dtype) in arrays.items()}
        self.shapes = {k: tuple(int(d) for d in shape) for k, (shape, _) in arrays.items()}
        self.files = {}
        for key, (_, dtype) in arrays.items():
            fh = open(self.folder / f"{key}.npy", "wb")  # noqa: SIM115 (closed in close())
            header = {
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                "fortran_order": False,
                "shape": (self.rows, *self.shapes[key]),
            }
            np.lib.format.write_array_header_1_0(fh, header)
            self.files[key] = fh

    def write(self, **chunks: np.ndarray) -> None:
        for key, chunk in chunks.items():
            chunk = np.asarray(chunk)
            if chunk.shape[1:] != self.shapes[key]:
                raise ValueError(f"{key}: rows of shape {chunk.shape[1:]}, not {self.shapes[key]}")
            self.files[key].write(np.ascontiguousarray(chunk, dtype=self.dtypes[key]).data)
            self.written[key] += len(chunk)

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        short = {k: n for k, n in self.written.items() if n != self.rows}
        if short:
            raise ValueError(f"{self.folder}: rows written {short}, declared {self.rows}")
        meta = {
            "rows": self.rows,
            "arrays": {
                k: {"shape": list(self.shapes[k]), "dtype": str(self.dtypes[k])} for k in self.files
            },
            "x_scale": self.x_scale,
        }
        (self.folder / META).write_text(json.dumps(meta, indent=2) + "\n")

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            for fh in self.files.values():
                fh.close()


def write(folder: str | Path, x_scale: float | None = None, **arrays: np.ndarray) -> None:
    """Write whole arrays as a split, in chunks (a convenience over `Writer`)."""
    rows = len(next(iter(arrays.values())))
    spec = {k: (np.asarray(a).shape[1:], np.asarray(a).dtype) for k, a in arrays.items()}
    step = chunk_rows(max(a[:1].nbytes for a in map(np.asarray, arrays.values())))
    with Writer(folder, rows, spec, x_scale) as out:
        for start in range(0, rows, step):
            out.write(**{k: a[start : start + step] for k, a in arrays.items()})


class _ArrayLike:
    """What the row readers share: `len`, `ndim` from `shape` (set by each reader)."""

    shape: tuple[int, ...]

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)


class Rows(_ArrayLike):
    """Rows of one `.npy` file read with `os.pread`: `rows[i]`, `rows[a:b]`, `rows[idx]`.

    Behaves as a read-only array for what the pipeline does with a split: `len`, `shape`,
    `dtype`, integer / slice / index-array access (any order, repeats allowed).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        try:
            with open(self.path, "rb") as fh:
                shape, fortran, dtype = read_header[np.lib.format.read_magic(fh)](fh)
                self.offset = fh.tell()
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{self.path}: not a readable .npy split array: {exc}") from None
        if fortran or dtype.hasobject:
            raise UserError(f"{self.path}: not a split array (Fortran order or objects)")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(self.path, os.O_RDONLY)

    def __getstate__(self) -> dict[str, Any]:  # a spawned DDP rank reopens the file
        return {k: v for k, v in self.__dict__.items() if k != "fd"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fd = os.open(self.path, os.O_RDONLY)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._range(start, max(start, stop))
            key = np.arange(start, stop, step)
        if np.isscalar(key):
            i = int(key) + (len(self) if int(key) < 0 else 0)
            return self._range(i, i + 1)[0]
        return self.take(np.asarray(key))

    def _range(self, start: int, stop: int) -> np.ndarray:
        return self._view(start, stop).copy()  # writable, like any array

    def _view(self, start: int, stop: int) -> np.ndarray:
        """Rows start..stop as a read-only array over the bytes `pread` returned."""
        n = stop - start
        buf = os.pread(self.fd, n * self.row_bytes, self.offset + start * self.row_bytes)
        if len(buf) != n * self.row_bytes:
            raise UserError(f"{self.path}: truncated (rows {start}..{stop} missing)")
        return np.frombuffer(buf, dtype=self.dtype).reshape(n, *self.row_shape)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows `idx` in that order: sorted, runs of neighbours read in one call each."""
        idx = idx.astype(np.int64, copy=False).ravel()
        idx = np.where(idx < 0, idx + len(self), idx)
        out = np.empty((len(idx), *self.row_shape), dtype=self.dtype)
        if not len(idx):
            return out
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        breaks = np.flatnonzero(np.diff(sorted_idx) > 1) + 1
        pos = 0
        for run in np.split(sorted_idx, breaks):
            block = self._view(int(run[0]), int(run[-1]) + 1)  # copied once, into `out`
            out[order[pos : pos + len(run)]] = block[run - run[0]]
            pos += len(run)
        return out

    def chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        step = rows or chunk_rows(self.row_bytes)
        for start in range(0, len(self), step):
            yield self._range(start, min(len(self), start + step))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self._range(0, len(self))
        return whole if dtype is None else whole.astype(dtype)

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)


class Subset(_ArrayLike):
    """The rows `index` of a reader, renumbered 0..len(index)-1 (rows left out on read)."""

    def __init__(self, base: Rows, index: np.ndarray):
        self.base, self.index = base, np.asarray(index, dtype=np.int64)
        self.shape = (len(self.index), *base.row_shape)
        self.dtype, self.row_shape, self.row_bytes = base.dtype, base.row_shape, base.row_bytes

    def __getitem__(self, key) -> np.ndarray:
        picked = self.index[key]
        return self.base[picked] if np.ndim(picked) else self.base[int(picked)]

    def take(self, idx: np.ndarray) -> np.ndarray:
        return self.base.take(self.index[np.asarray(idx)])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self.take(np.arange(len(self)))
        return whole if dtype is None else whole.astype(dtype)


class Stacked(_ArrayLike):
    """Several `Rows` (train then val, for `train.fit_on: train+val`) read as one."""

    def __init__(self, parts: list[Rows]):
        self.parts = parts
        self.bounds = np.cumsum([0, *(len(p) for p in parts)])
        self.shape = (int(self.bounds[-1]), *parts[0].row_shape)
        self.dtype, self.row_shape = parts[0].dtype, parts[0].row_shape
        self.row_bytes = parts[0].row_bytes

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice) or np.isscalar(key):
            key = np.arange(len(self))[key]
            if np.isscalar(key):
                return self.take(np.asarray([key]))[0]
        return self.take(np.asarray(key))

    def take(self, idx: np.ndarray) -> np.ndarray:
        idx = idx.astype(np.int64, copy=False).ravel()
        part = np.searchsorted(self.bounds, idx, side="right") - 1
        out = np.empty((len(idx), *self.row_shape), dtype=self.dtype)
        for p in np.unique(part):
            here = part == p
            out[here] = self.parts[p].take(idx[here] - self.bounds[p])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(p) for p in self.parts])
        return whole if dtype is None else whole.astype(dtype)


def meta(folder: str | Path) -> dict[str, Any]:
    """`split.json` of a split folder; a missing split is refused naming the stage to run."""
    folder = Path(folder)
    path = folder / META
    if not path.is_file():
        hint = (
            " (an .npz split from an older reprolab: re-run `dvc repro`)"
            if folder.with_suffix(".npz").exists()
            else ""
        )
        raise UserError(
            f"missing input {folder}; run the stage that produces it first (e.g. `dvc repro`){hint}"
        )
    return json.loads(path.read_text())


def open_split(folder: str | Path, *keys: str) -> dict[str, Rows]:
    """The split's arrays as `Rows` readers (nothing is read until indexed)."""
    folder = Path(folder)
    info = meta(folder)
    names = keys or tuple(info["arrays"])
    missing = [k for k in names if k not in info["arrays"]]
    if missing:
        raise UserError(f"{folder}: missing array(s) {missing}; found {sorted(info['arrays'])}")
    return {k: Rows(folder / f"{k}.npy") for k in names}


def x_scale(folder: str | Path) -> float | None:
    """The factor stored uint8 X is multiplied by (None: X is stored as float)."""
    return meta(folder).get("x_scale")


def to_float(X: np.ndarray, scale: float | None) -> np.ndarray:
    """Model input from stored rows: uint8 times `scale` (float32 arithmetic), else float32."""
    if X.dtype == np.uint8:
        return X.astype(np.float32) * np.float32(scale if scale is not None else 1 / 255)
    return X.astype(np.float32, copy=False)


class Scaled(_ArrayLike):
    """X of a split as float32 model input, read and scaled slice by slice (evaluate scores
    the test split in batches without holding it whole)."""

    def __init__(self, folder: str | Path):
        self.rows = open_split(folder, "X")["X"]
        self.scale = x_scale(folder)
        self.shape, self.dtype = self.rows.shape, np.dtype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        return to_float(self.rows[key], self.scale)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def load(folder: str | Path, *keys: str, raw: bool = False) -> dict[str, np.ndarray]:
    """The split's arrays, whole in memory; X as float32 model input unless `raw`."""
    folder = Path(folder)
    readers = open_split(folder, *keys)
    arrays = {k: np.asarray(r) for k, r in readers.items()}
    if "X" in arrays and not raw:
        arrays["X"] = to_float(arrays["X"], x_scale(folder))
    return arrays


def head(folder: str | Path, n: int) -> np.ndarray:
    """The first `n` rows of X as float32 model input (an input example, a shape probe)."""
    return to_float(open_split(folder, "X")["X"][:n], x_scale(folder))


def arrays_of(folder: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (shape, dtype)} of the split's arrays, from `split.json` alone."""
    info = meta(folder)
    return {
        k: ((info["rows"], *a["shape"]), np.dtype(a["dtype"])) for k, a in info["arrays"].items()
    }
