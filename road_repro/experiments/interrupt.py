"""SIGTERM anywhere in a command: one line saying what it stopped, and a rerun resumes.

The training loop turns SIGTERM into a checkpoint and a clean stop between steps
(:func:`road_repro.train.loop.stop_on_sigterm`). Outside training steps -- loading and tokenizing data,
predicting soft targets, scoring, writing results -- SIGTERM used to end the process at once, with no word.
Inside :func:`sigterm_stops` it raises :class:`~road_repro.errors.TrainingInterrupted` instead, naming what was
being done (the innermost :func:`doing`), so the command line prints ``interrupted: SIGTERM while ...; rerun the
same command to resume`` and exits with 143, as it does for a stop during training.

Nothing written is lost or torn: the exception unwinds through :func:`road_repro.io.atomic_write`, which removes
its temporary file (the target stays the old file or the new one); a stage stopped midway has no ``DONE`` and
is computed again on the rerun, from its checkpoints; finished stages are reused. A second SIGTERM while the
first unwinds is ignored, so that clean-up completes (SIGKILL still ends the process), and
:func:`sigterm_held` defers it over steps that must finish together (a run's ``metrics.json``, the removal of
its checkpoints and its ``DONE`` marker).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from road_repro.errors import TrainingInterrupted

#: What the process is doing, innermost last (what a SIGTERM message names).
_doing: list[str] = []
#: Nesting depth of :func:`sigterm_held`; a SIGTERM that arrived meanwhile; whether one has been raised.
_state = {"held": 0, "pending": False, "raised": False}


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Name the work of the block (e.g. ``computing soft_targets-1a2b``) for a SIGTERM message."""
    _doing.append(what)
    try:
        yield
    finally:
        _doing.pop()


def interrupted() -> TrainingInterrupted:
    """The error of a SIGTERM outside training steps, naming the innermost work in progress (once raised, later
    SIGTERMs are ignored until the next :func:`sigterm_stops`)."""
    _state["raised"] = True
    what = _doing[-1] if _doing else "starting"
    return TrainingInterrupted(f"SIGTERM while {what}; finished stages are kept")


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """Within the block, SIGTERM raises :func:`interrupted` (once). In a thread other than the main one, where
    Python cannot set signal handlers, the block runs unchanged; a process forked meanwhile, which inherits the
    handler, still dies of SIGTERM (a worker pool is stopped that way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["raised"] = False
    owner = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked worker (e.g. of a parallel feature build): die as it would have
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if _state["raised"]:
            return  # the first one is unwinding: let its clean-up finish
        if _state["held"]:
            _state["pending"] = True
            return
        raise interrupted()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sigterm_held() -> Iterator[None]:
    """Defer a SIGTERM that arrives within the block to its end (steps that must complete together)."""
    _state["held"] += 1
    try:
        yield
    finally:
        _state["held"] -= 1
        pending = _state["pending"] and not _state["held"]
        if pending:  # taken now, so that a block left by an error leaves none behind
            _state["pending"] = False
    if pending:
        raise interrupted()
