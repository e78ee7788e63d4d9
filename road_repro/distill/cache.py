"""The on-disk soft-target cache: teacher logits per training feature, generated once per teacher and dataset.

One safetensors file per teacher and dataset, written atomically (temporary file in the same directory,
fsync, ``os.replace``; see :mod:`road_repro.io`), with string metadata such as the teacher run id and
the dataset fingerprint. Loading checks that metadata against what the caller expects, so a stale cache
(another teacher, other data) is an error rather than silently wrong soft targets. Student training only
reads these files; it never runs a teacher.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from road_repro.errors import ConfigError, DataError
from road_repro.io import atomic_write

STORAGE_DTYPES = (torch.float32, torch.float16)


def save_soft_targets(
    path: Path,
    tensors: Mapping[str, Tensor],
    metadata: Mapping[str, str],
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write teacher soft targets (e.g. ``start_logits`` / ``end_logits`` ``[N, L]``) and metadata atomically.

    Floating tensors are stored as ``dtype`` (float32, or float16 to halve the file); metadata keys and
    values must be strings (a safetensors header holds only strings). Returns ``path``.
    """
    path = Path(path)
    if dtype not in STORAGE_DTYPES:
        raise ConfigError(f"dtype={dtype} must be one of {STORAGE_DTYPES}")
    if not tensors:
        raise DataError(f"{path}: no tensors to cache")
    for key, value in metadata.items():
        if not (isinstance(key, str) and isinstance(value, str)):
            raise DataError(f"{path}: metadata {key!r}={value!r} must map a string to a string")
    stored = {
        name: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu()).contiguous()
        for name, t in tensors.items()
    }
    return atomic_write(path, lambda tmp: save_file(stored, str(tmp), metadata=dict(metadata)))


def load_soft_targets(
    path: Path, expect: Mapping[str, str] | None = None
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a soft-target cache: ``(tensors, metadata)``; floating tensors come back as float32.

    Raises DataError naming the file when it is missing, torn or unreadable, or when a metadata key in
    ``expect`` is absent or has another value (a stale cache from another teacher or dataset).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: soft-target cache is missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{path}: soft-target cache is torn or unreadable ({exc})") from exc
    for key, wanted in (expect or {}).items():
        if metadata.get(key) != wanted:
            raise DataError(
                f"{path}: metadata {key}={metadata.get(key)!r} but {wanted!r} was expected (stale soft-target cache)"
            )
    return {name: t.float() if t.is_floating_point() else t for name, t in tensors.items()}, metadata


def stack_teachers(caches: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-teacher soft targets into ``{name: [M, N, ...]}`` for the ensemble functions.

    Every teacher must hold the same tensor names with the same shapes (same features); otherwise a
    DataError names the teacher index, the tensor and the disagreement.
    """
    if not caches:
        raise DataError("stack_teachers needs at least one teacher's soft targets, got none")
    names = set(caches[0])
    for i, cache in enumerate(caches[1:], start=1):
        if set(cache) != names:
            raise DataError(
                f"teacher {i} holds tensors {sorted(cache)} but teacher 0 holds {sorted(names)}"
            )
        for name in sorted(names):
            if cache[name].shape != caches[0][name].shape:
                raise DataError(
                    f"teacher {i} {name!r} has shape {tuple(cache[name].shape)} "
                    f"but teacher 0 has {tuple(caches[0][name].shape)}"
                )
    return {name: torch.stack([cache[name] for cache in caches]) for name in caches[0]}
