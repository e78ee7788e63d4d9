"""The per-step training log of a run folder: ``train_log.csv`` (and TensorBoard events when installed).

One row per optimizer step, written while the stage trains so a diverging or flat run is visible before it
ends (and :mod:`road_repro.status` can read the running stage's step and loss): the step, the datasets the
step's passes drew (ROaD MTL draws one per pass; finetuning has one), each loss term of the objective --
``ce`` (hard-label cross-entropy of the student), ``kd`` (the distillation term), ``hidden`` (hidden-state
MSE) and ``total`` (what is back-propagated) -- the learning rate, the gradient norm before clipping, the
fp16 loss scale, the step's examples, examples per second and seconds since the stage started (carried in
its checkpoints, so a resumed stage counts on from where its checkpoint left off).

Only the main rank writes. Rows are appended and flushed every ``FLUSH_EVERY`` steps or ``FLUSH_SECONDS``
seconds, so a reader sees at most a few steps' delay and a killed process loses no more. A stage that
resumes from a checkpoint at step ``k`` first drops the rows past ``k`` (written after the checkpoint, then
lost with the process) so the file is exactly the steps the model went through once.

``tensorboard --logdir results/runs`` shows every run: the events land in ``<run>/tensorboard`` (through
``torch.utils.tensorboard``, which needs the optional ``tensorboard`` package; without it only the CSV is
written).
"""

from __future__ import annotations

import contextlib
import csv
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

#: The columns of ``train_log.csv``, in order; a term a stage's objective lacks is left empty.
COLUMNS = ("step", "datasets", "total", "ce", "kd", "hidden", "lr", "grad_norm", "loss_scale", "examples",
           "examples_per_s", "elapsed_s")
#: Loop log keys that feed a column under another name (hidden-state KD reports ``hidden_mse``).
ALIASES = {"hidden_mse": "hidden"}
FLUSH_EVERY = 10
FLUSH_SECONDS = 5.0


def _tensorboard_writer(log_dir: Path, purge_step: int):
    """A TensorBoard ``SummaryWriter`` for ``log_dir``, or None when the ``tensorboard`` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step or None)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a ``train_log.csv`` as strings; a partly written last line (a live writer) is dropped."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        text = fh.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(text.splitlines()))
    return [r for r in rows if r.get("step", "").isdigit()]


def _keep_until(path: Path, step: int, history: Sequence[dict[str, float]]) -> None:
    """Rewrite ``path`` with only its rows up to ``step`` (``step`` 0: an empty log with a header).

    If the file does not hold every step up to ``step`` (lost, or from another run), the rows come from
    ``history``, the loop's log restored from the checkpoint (without the datasets and rate columns).
    """
    rows: list[dict[str, Any]] = [r for r in read_rows(path) if int(r["step"]) <= step] if step else []
    if [int(r["step"]) for r in rows] != list(range(1, step + 1)):
        rows = [{ALIASES.get(k, k): v for k, v in r.items()} for r in history if int(r["step"]) <= step]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


class TrainLog:
    """Appends one row per step to ``train_log.csv`` (and TensorBoard); see the module docstring."""

    def __init__(self, path: Path, start_step: int, history: Sequence[dict[str, float]] = (),
                 tensorboard: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _keep_until(self.path, start_step, history)
        if not start_step:  # a fresh start: no events of an earlier attempt
            for old in (self.path.parent / "tensorboard").glob("events.out.tfevents.*"):
                old.unlink()
        self._fh = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._fh, COLUMNS, extrasaction="ignore")
        self._tb = _tensorboard_writer(self.path.parent / "tensorboard", start_step) if tensorboard else None
        self._last = self._flushed = time.perf_counter()
        self._unflushed = 0

    def write(self, row: dict[str, float], datasets: Sequence[str], examples: int, elapsed_s: float) -> None:
        """Log one step: ``row`` is the loop's log row (step, losses, lr, grad_norm, loss_scale); ``elapsed_s``
        the seconds the stage has trained, over every attempt (the loop carries it across a resume)."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        values: dict[str, Any] = {ALIASES.get(k, k): v for k, v in row.items()}
        values.update(datasets="+".join(datasets), examples=examples, elapsed_s=round(elapsed_s, 3),
                      examples_per_s=round(examples / seconds, 3) if seconds > 0 else "")
        self._csv.writerow({k: values.get(k, "") for k in COLUMNS})
        if self._tb is not None:
            for key in ("total", "ce", "kd", "hidden", "lr", "grad_norm", "examples_per_s"):
                if isinstance(values.get(key), (int, float)):
                    self._tb.add_scalar(f"train/{key}", values[key], int(row["step"]))
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY or now - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._fh.flush()
        if self._tb is not None:
            self._tb.flush()
        self._flushed, self._unflushed = time.perf_counter(), 0

    def close(self) -> None:
        self.flush()
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


@contextlib.contextmanager
def open_train_log(path: Path | None, start_step: int, main: bool,
                   history: Sequence[dict[str, float]] = ()) -> Iterator[TrainLog | None]:
    """A :class:`TrainLog` on the main rank when ``path`` is given, else None; flushed and closed on exit."""
    log = TrainLog(path, start_step, history) if path is not None and main else None
    try:
        yield log
    finally:
        if log is not None:
            log.close()
