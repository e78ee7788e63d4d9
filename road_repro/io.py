"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Each writer writes a temporary file in the target's directory, flushes and fsyncs it, then
``os.replace``-s it over the target (atomic on POSIX within one file system). Under torchrun only rank 0
writes results (every rank computes the same ones), so the writers do nothing on other ranks.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from road_repro.train.distributed import is_main


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file over ``path`` atomically (rank 0 only)."""
    path = Path(path)
    if not is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the mode open() would (group-readable results)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write a DataFrame as CSV (no index) atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _umask() -> int:
    """The process umask (read by setting it, so it is set back at once; 0o022 in the meantime)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
