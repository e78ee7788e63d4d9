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

Where the other ranks wait for rank 0's files, they wait in :func:`shared_outcome`, not at a bare barrier: if
rank 0 fails while writing, every rank learns it at once and raises, instead of waiting at the barrier until
the collective times out (30 minutes to hours).
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from road_repro.errors import RankFailed, TrainingInterrupted
from road_repro.train.distributed import all_gather_objects, is_main, world_size


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


@contextmanager
def shared_outcome(what: str) -> Iterator[None]:
    """Run the block on every rank, then tell every rank how it went on each: the barrier after rank 0's writes.

    Every rank runs the block (rank 0 writes, the others have nothing to do or do the same no-op writes), then
    the ranks exchange their outcome in one all-gather, which is also the barrier. A rank whose block raised
    re-raises its own error; every other rank raises :class:`~road_repro.errors.RankFailed`, e.g. ``rank 0
    failed writing results for table5: OSError: ...``. The block must not itself run collectives that a
    failing rank would skip. SIGTERM (:class:`~road_repro.errors.TrainingInterrupted`) is not exchanged: it
    reaches every rank, which all stop on their own. A no-op wrapper in a single process.
    """
    if world_size() == 1:
        yield
        return
    try:
        yield
    except TrainingInterrupted:
        raise
    except Exception as exc:
        _exchange(what, f"{type(exc).__name__}: {exc}")
        raise
    _exchange(what, None)


def _exchange(what: str, mine: str | None) -> None:
    """Share this rank's error (None: it succeeded); if it succeeded and another rank failed, raise RankFailed."""
    outcomes = all_gather_objects(mine)
    failed = [f"rank {rank} failed {what}: {error}" for rank, error in enumerate(outcomes) if error is not None]
    if mine is None and failed:
        raise RankFailed("; ".join(failed))


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
