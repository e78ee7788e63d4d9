"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Each writer writes a temporary file in the target's directory, flushes and fsyncs it, then
``os.replace``-s it over the target (atomic on POSIX within one file system).

Who writes under torchrun -- the one rule (docs/distributed.md, "Who writes what"):

* **Results** -- what every rank computes identically (run folders, weights, logs, metrics, predictions,
  soft targets, CSVs, plots, checkpoints) -- are written by rank 0 alone, and every other rank waits at a
  barrier before it reads them (the run store's and the training loop's barriers). That is the default
  here: ``all_ranks=False`` writes on rank 0 and does nothing on the other ranks.
* **Shared caches built under a file lock** (the feature store) are written by whichever process takes the
  lock, *whatever its rank*, and that builder writes every file of the folder itself, manifest included:
  pass ``all_ranks=True``. A rank-0-only write inside code that a non-zero rank may run for its own sake
  would leave that rank's folder half written.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from road_repro.train.distributed import is_main


def atomic_write(path: Path, write: Callable[[Path], None], *, all_ranks: bool = False) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file over ``path`` atomically.

    ``all_ranks=False`` (a result every rank computes alike): rank 0 writes, other ranks do nothing.
    ``all_ranks=True`` (this process's own file, e.g. a lock holder's build): written whatever the rank.
    """
    path = Path(path)
    if not (all_ranks or is_main()):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:  # mkstemp makes 0600: give the mode open() would (group-readable results)
            os.fchmod(fd, 0o666 & ~process_umask())
        finally:
            os.close(fd)
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str, *, all_ranks: bool = False) -> Path:
    """Write ``text`` (UTF-8) atomically (``all_ranks``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), all_ranks=all_ranks)


def atomic_write_json(path: Path, obj: Any, *, all_ranks: bool = False) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically (``all_ranks``: see :func:`atomic_write`)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", all_ranks=all_ranks)


def atomic_write_csv(path: Path, frame: pd.DataFrame, *, all_ranks: bool = False) -> Path:
    """Write a DataFrame as CSV (no index) atomically (``all_ranks``: see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False), all_ranks=all_ranks)


@functools.cache
def process_umask() -> int:
    """The process umask, read once and cached: from ``/proc/self/status`` where the kernel shows it (Linux),
    else by setting it and setting it back, once. Writers never change it, so a thread that creates a file
    while another one writes gets the umask it expects. (A program that changes its umask later calls
    ``process_umask.cache_clear()``.)"""
    try:
        found = re.search(r"^Umask:\s*([0-7]+)$", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1), 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
