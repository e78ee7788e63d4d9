"""The on-disk soft-target cache: teacher logits per training feature, generated once per teacher and dataset.

One safetensors file per teacher and dataset, written atomically (temporary file in the same directory,
fsync, ``os.replace``; see :mod:`road_repro.io`), with string metadata such as the teacher run id and
the dataset fingerprint. Opening checks that metadata against what the caller expects, so a stale cache
(another teacher, other data) is an error rather than silently wrong soft targets. Student training only
reads these files; it never runs a teacher.

**Storage dtype: float16.** At the paper scale one teacher's span logits are ``1.9M windows x 512
positions x (start, end)``: 8 GB in float32, 4 GB in half precision (2048 bytes per window at
``max_seq_length`` 512). Of the two half formats float16 keeps 11 significant bits (relative error
``<= 2^-11``) against bfloat16's 8 (``<= 2^-8``), and its range (``|x| <= 65504``) is far beyond what a
classification or span head emits (the smoke teachers' logits stay within ``|x| < 7``; finetuned large
encoders' span logits within a few tens). A logit at 20 is off by at most ``0.01`` in float16, ``0.08`` in
bfloat16, so float16 it is. A teacher whose logits leave float16's range (or are NaN) has diverged: saving
it is a DataError naming the file and the largest magnitude, never a silently saturated ``inf``. bfloat16
(and float32) can still be asked for explicitly; the stored dtype is in the file's header and its
``dtype`` metadata.

**Writing: streamed.** :func:`write_soft_targets` never holds a whole teacher: it writes the safetensors
header (the shapes are known up front), sizes the file, and copies each chunk of rows ``[lo, lo + B)`` to its
byte range as it comes (peak memory: one chunk, converted). Every row must be written exactly once, and the
file appears (atomically) only when all of them were. :func:`save_soft_targets` is the one-chunk case.

**Reading: per row.** :func:`open_soft_targets` validates the file (header, sizes, metadata), keeps it open
and maps each tensor's region with :class:`numpy.memmap` (its place and shape); :meth:`SoftTargetFile.rows`
reads just the requested rows with ``pread`` through the page cache, which every torchrun rank shares. Nothing
is read whole, and no process's resident memory grows with the file (faults on a map would pull in the pages
around each row too).
"""

from __future__ import annotations

import bisect
import json
import math
import operator
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from road_repro.errors import ConfigError, DataError
from road_repro.io import atomic_write
from road_repro.train.distributed import is_main

#: The dtype teacher logits are stored in (see the module docstring for why float16).
SOFT_TARGET_DTYPE = torch.float16

#: Storable dtypes and their safetensors header names.
STORAGE_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}

#: How each stored dtype is memory-mapped (numpy has no bfloat16: its raw 16 bits, viewed as one in torch).
_NUMPY = {"F16": np.float16, "BF16": np.uint16, "F32": np.float32}
_TORCH = {name: dtype for dtype, name in STORAGE_DTYPES.items()}

#: Metadata key under which :func:`save_soft_targets` records the stored dtype (``float16``, ...).
DTYPE_KEY = "dtype"


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"`` (how the dtype is written to metadata and run configs)."""
    return str(dtype).removeprefix("torch.")


def _check_settings(path: Path, shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, str],
                    dtype: torch.dtype) -> dict[str, tuple[int, ...]]:
    """Validate the writer's arguments (before any file exists); returns the shapes as int tuples."""
    if dtype not in STORAGE_DTYPES:
        raise ConfigError(f"dtype={dtype} must be one of {sorted(map(dtype_name, STORAGE_DTYPES))}")
    if not shapes:
        raise DataError(f"{path}: no tensors to cache")
    for key, value in metadata.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise DataError(f"{path}: metadata {key!r}={value!r} must map a string to a string")
    if DTYPE_KEY in metadata:
        raise DataError(f"{path}: metadata key {DTYPE_KEY!r} is reserved for the stored dtype")
    out = {}
    for name, shape in shapes.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise DataError(f"{path}: tensor name {name!r} must be a string other than '__metadata__'")
        try:
            dims = tuple(operator.index(d) for d in shape)
        except TypeError:
            dims = ()
        if not dims or min(dims) < 0:
            raise DataError(f"{path}: {name!r} must have an [N, ...] shape, got {tuple(shape)}")
        out[name] = dims
    rows = {shape[0] for shape in out.values()}
    if len(rows) != 1:
        raise DataError(f"{path}: soft targets are per training feature, so every tensor needs the same rows; "
                        f"got shapes {out}")
    return out


def _header(shapes: Mapping[str, tuple[int, ...]], metadata: Mapping[str, str], dtype: torch.dtype
            ) -> tuple[bytes, dict[str, int]]:
    """The safetensors header (8-byte length, JSON padded with spaces to 8 bytes, as safetensors writes it)
    and each tensor's byte offset in the file. Tensors are laid out by name, as ``save_file`` lays them out."""
    kind = STORAGE_DTYPES[dtype]
    itemsize = torch.empty((), dtype=dtype).element_size()
    entries: dict[str, object] = {"__metadata__": dict(metadata)}
    starts, end = {}, 0
    for name in sorted(shapes):
        size = math.prod(shapes[name]) * itemsize
        entries[name] = {"dtype": kind, "shape": list(shapes[name]), "data_offsets": [end, end + size]}
        starts[name], end = end, end + size
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    base = 8 + len(text)
    return struct.pack("<Q", len(text)) + text, {name: base + lo for name, lo in starts.items()}


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        done = os.pwrite(fd, data, offset)
        data, offset = data[done:], offset + done


class _Rows:
    """Which rows ``[lo, hi)`` were written so far (disjoint intervals, sorted by start)."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self.starts, self.ends, self.count = path, n, [], [], 0

    def add(self, lo: int, hi: int) -> None:
        if not 0 <= lo <= hi <= self.n:
            raise DataError(f"{self.path}: chunk rows [{lo}, {hi}) are outside the cache's {self.n} rows")
        if lo == hi:
            return
        i = bisect.bisect_right(self.starts, lo)
        if (i > 0 and self.ends[i - 1] > lo) or (i < len(self.starts) and self.starts[i] < hi):
            j = i - 1 if i > 0 and self.ends[i - 1] > lo else i
            raise DataError(f"{self.path}: rows [{lo}, {hi}) overlap rows [{self.starts[j]}, {self.ends[j]}) "
                            f"written before: every row must be written exactly once")
        self.starts.insert(i, lo)
        self.ends.insert(i, hi)
        self.count += hi - lo

    def check_complete(self) -> None:
        if self.count == self.n:
            return
        gaps, end = [], 0
        for lo, hi in zip([*self.starts, self.n], [*self.ends, self.n]):
            if lo > end:
                gaps.append(f"[{end}, {lo})")
            end = hi
        raise DataError(f"{self.path}: {self.n - self.count} of {self.n} rows were never written "
                        f"(rows {', '.join(gaps[:5])}{', ...' if len(gaps) > 5 else ''}); no cache was saved")


def _stored_chunk(path: Path, shapes: Mapping[str, tuple[int, ...]], lo: int, tensors: Mapping[str, Tensor],
                  dtype: torch.dtype) -> tuple[int, dict[str, Tensor]]:
    """One chunk validated and converted to ``dtype`` on the CPU: ``(rows, name -> contiguous tensor)``."""
    if set(tensors) != set(shapes):
        raise DataError(f"{path}: the chunk at row {lo} holds {sorted(tensors)} but the cache has {sorted(shapes)}")
    stored, rows = {}, set()
    for name in sorted(shapes):
        t = tensors[name]
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() < 1:
            raise DataError(f"{path}: {name!r} must be a floating tensor with a row dimension, got "
                            f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
        if tuple(t.shape[1:]) != shapes[name][1:]:
            raise DataError(f"{path}: {name!r} rows have shape {tuple(t.shape[1:])} in the chunk at row {lo}, "
                            f"but the cache holds {shapes[name][1:]}")
        value = t.detach().to("cpu", dtype).contiguous()
        if not bool(torch.isfinite(value).all()):
            # (posinf too: nan_to_num would report an inf as float32's largest value)
            peak = float(t.detach().abs().float().nan_to_num(nan=math.inf, posinf=math.inf).max())
            raise DataError(f"{path}: {name!r} is not finite as {dtype_name(dtype)} (largest magnitude {peak:g} "
                            f"in rows [{lo}, {lo + len(t)}); float16 holds |x| <= 65504): a diverged teacher?")
        stored[name] = value
        rows.add(len(t))
    if len(rows) != 1:
        raise DataError(f"{path}: the chunk at row {lo} has tensors of different lengths "
                        f"{ {name: len(v) for name, v in stored.items()} }")
    return rows.pop(), stored


def write_soft_targets(
    path: Path,
    shapes: Mapping[str, tuple[int, ...]],
    metadata: Mapping[str, str],
    chunks: Iterable[tuple[int, Mapping[str, Tensor]]],
    dtype: torch.dtype = SOFT_TARGET_DTYPE,
) -> Path:
    """Stream teacher soft targets into a safetensors cache, chunk by chunk, atomically; returns ``path``.

    ``shapes`` gives every tensor's full shape (``start_logits``/``end_logits``: ``(N, L)``; all with the same
    ``N`` rows). ``chunks`` yields ``(lo, {name: rows lo..lo+B of that tensor})`` with every name in each chunk,
    in any order; each row must come exactly once (a doubled or overlapping chunk, or rows never written, is
    a DataError and no file is left). Values are stored as ``dtype`` (float16 by default, see the module
    docstring) and ``dtype``'s name is added to the metadata under ``"dtype"``; other metadata keys and values
    must be strings. A value that is not finite in ``dtype`` (float16 overflow past 65504, NaN, inf) is a
    DataError naming the file and the largest magnitude. Only one chunk is held (converted) at a time.

    Under torchrun only rank 0 writes (a result: the writers' rule in :mod:`road_repro.io`; the other ranks
    open the file after the run store's barrier), but every rank iterates
    ``chunks`` (a teacher's ``predict`` needs every rank for its forward passes) and checks them the same
    way, so a bad chunk fails every rank alike.
    """
    path = Path(path)
    shapes = _check_settings(path, shapes, metadata, dtype)
    header, offsets = _header(shapes, {**metadata, DTYPE_KEY: dtype_name(dtype)}, dtype)
    n = next(iter(shapes.values()))[0]
    row_bytes = {name: math.prod(shape[1:]) * torch.empty((), dtype=dtype).element_size()
                 for name, shape in shapes.items()}
    size = len(header) + sum(n * b for b in row_bytes.values())

    def fill(fd: int | None) -> None:
        written = _Rows(path, n)
        if fd is not None:
            _pwrite_all(fd, memoryview(header), 0)
            os.ftruncate(fd, size)
        for lo, tensors in chunks:
            lo = operator.index(lo)
            rows, stored = _stored_chunk(path, shapes, lo, tensors, dtype)
            written.add(lo, lo + rows)
            if fd is None:
                continue
            for name, value in stored.items():
                raw = value.reshape(-1).view(torch.uint8).numpy()
                _pwrite_all(fd, memoryview(raw), offsets[name] + lo * row_bytes[name])
        written.check_complete()

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_RDWR | os.O_TRUNC)
        try:
            fill(fd)
        finally:
            os.close(fd)

    if is_main():
        return atomic_write(path, write)
    fill(None)
    return path


def save_soft_targets(
    path: Path,
    tensors: Mapping[str, Tensor],
    metadata: Mapping[str, str],
    dtype: torch.dtype = SOFT_TARGET_DTYPE,
) -> Path:
    """Write teacher soft targets (e.g. ``start_logits`` / ``end_logits`` ``[N, L]``) and metadata atomically.

    The one-chunk case of :func:`write_soft_targets` (same checks, same file). Tensors must be floating point
    with the same number of rows; they are stored as ``dtype`` (float16 by default, see the module docstring)
    and ``dtype``'s name is added to the metadata under ``"dtype"``. Other metadata keys and values must be
    strings (a safetensors header holds only strings). A value that is not finite in ``dtype`` (float16
    overflow past 65504, NaN, inf) is a DataError naming the file. Returns ``path``.
    """
    path = Path(path)
    for name, t in tensors.items():
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.dim() < 1:
            raise DataError(f"{path}: {name!r} must be a floating tensor with a row dimension, got "
                            f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    return write_soft_targets(path, shapes, metadata, [(0, tensors)], dtype)


@dataclass(frozen=True)
class SoftTargetFile:
    """One teacher's opened soft-target cache: its metadata and one read-only memory map per tensor.

    The maps give each tensor's place and shape in the file; :meth:`rows` reads just the requested rows with
    ``pread`` (through the page cache, which every rank shares) rather than through the map: a fault on a map
    pulls in the pages around it too (fault-around, read-ahead), so random batches would leave a process's
    resident set growing with the file's size (measured: +140 MiB for 3 teachers x 200k windows after 30
    steps), while a read leaves nothing mapped.
    """

    path: Path
    metadata: dict[str, str]
    arrays: dict[str, np.memmap]  # name -> [N, ...] raw stored values
    dtype: torch.dtype  # the stored dtype (the same for every tensor of the file)
    handle: Any = None  # the file, opened when validated: reads see that file even if it is replaced later

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    def rows(self, name: str, rows: np.ndarray) -> Tensor:
        """Rows ``rows`` (1-D int64, any order, repeats allowed) of tensor ``name``, as float32 ``[B, ...]``."""
        array = self._array(name)
        row_bytes = array.itemsize * math.prod(array.shape[1:])
        raw = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
        view = memoryview(raw.reshape(-1).view(np.uint8))  # the rows' bytes, one after another
        fd = self.handle.fileno()
        for i, row in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
            if not 0 <= row < array.shape[0]:
                raise IndexError(f"{self.path}: row {row} outside [0, {array.shape[0]}) of {name!r}")
            if os.preadv(fd, [view[i * row_bytes:(i + 1) * row_bytes]], array.offset + row * row_bytes) != row_bytes:
                raise _torn(self.path, f"a short read of row {row} of {name!r}")
        out = torch.from_numpy(raw)
        return (out.view(torch.bfloat16) if self.dtype == torch.bfloat16 else out).float()

    def _array(self, name: str) -> np.memmap:
        if name not in self.arrays:
            raise DataError(f"{self.path}: soft-target cache has no {name!r} (has {sorted(self.arrays)})")
        return self.arrays[name]


def _torn(path: Path, why: str) -> DataError:
    return DataError(f"{path}: soft-target cache is torn or unreadable ({why})")


def open_soft_targets(path: Path, expect: Mapping[str, str] | None = None) -> SoftTargetFile:
    """Validate and memory-map a soft-target cache (see :class:`SoftTargetFile`).

    Raises DataError naming the file when it is missing, torn (truncated, a bad header, sizes that do not
    add up) or unreadable, holds an unsupported dtype, or when a metadata key in ``expect`` is absent or has
    another value (a stale cache from another teacher or dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: soft-target cache is missing")
    size = path.stat().st_size
    if size < 8:
        raise _torn(path, f"{size} bytes, shorter than the 8-byte header length")
    try:
        with safe_open(str(path), framework="pt"):  # the library's own validation of header and buffer
            pass
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n)) if n <= size - 8 else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise _torn(path, str(exc)) from exc
    if not isinstance(header, dict):
        raise _torn(path, f"the {n}-byte header is not a JSON object inside the file's {size} bytes")
    metadata = dict(header.pop("__metadata__", None) or {})
    for key, wanted in (expect or {}).items():
        if metadata.get(key) != wanted:
            raise DataError(
                f"{path}: metadata {key}={metadata.get(key)!r} but {wanted!r} was expected (stale soft-target cache)"
            )
    if not header:
        raise DataError(f"{path}: soft-target cache holds no tensors")
    kinds = {entry.get("dtype") for entry in header.values()}
    if len(kinds) != 1 or not kinds <= set(_NUMPY):
        raise DataError(f"{path}: soft targets must be stored in one of {sorted(_NUMPY)}, found {sorted(map(str, kinds))}")
    kind = kinds.pop()
    dtype = _TORCH[kind]
    if DTYPE_KEY in metadata and metadata[DTYPE_KEY] != dtype_name(dtype):
        raise DataError(f"{path}: metadata says dtype={metadata[DTYPE_KEY]!r} but the tensors are {dtype_name(dtype)}")
    itemsize = np.dtype(_NUMPY[kind]).itemsize
    base, arrays, end = 8 + n, {}, 0
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        shape, (lo, hi) = tuple(entry["shape"]), entry["data_offsets"]
        if lo != end or hi - lo != math.prod(shape) * itemsize or not shape:
            raise _torn(path, f"{name!r} of shape {shape} at bytes [{lo}, {hi}) is not an [N, ...] block "
                                f"right after byte {end}")
        end = hi
        arrays[name] = (np.memmap(path, dtype=_NUMPY[kind], mode="r", offset=base + lo, shape=shape) if hi > lo
                        else np.zeros(shape, _NUMPY[kind]))  # an empty tensor has nothing to map
    if base + end != size:
        raise _torn(path, f"{size} bytes but the header describes {base + end}")
    return SoftTargetFile(path, metadata, arrays, dtype, open(path, "rb", buffering=0))
