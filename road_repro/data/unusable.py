"""Rows that real releases are known to contain and that cannot be used: skipped, counted, bounded.

Real data is not clean: GLUE QQP train on the hub has rows with an empty ``question2``, SNLI marks 785
train pairs without a gold label (``-1`` / ``"-"``), a review can be blank. One rule for every loader,
hub or local file:

* a converter raises :class:`UnusableRow` for such a row (an empty text, question or context, a label
  outside the task's label set, an answer that is not in its context) and wraps each row in
  :func:`skip_unusable`, which -- while :func:`load_examples <road_repro.data.registry.load_examples>`
  collects (:func:`collecting`) -- records the row and goes on; called directly, outside a load, a
  converter stays strict and the error propagates;
* a row without a gold label (``"-"``, ``-1``) is recorded with :func:`note_no_gold_label`: dropping them
  is the datasets' own convention (SNLI train: 0.14 %, dev: 1.6 %), so they are counted and reported but
  not held against the share;
* after the split is read, :meth:`SkipTally.check` stops with a :class:`DataError` naming the source and
  the first rows when unusable rows exceed ``max_share`` of the rows read, or when no usable row is left
  (e.g. "every row has label '-'"), and otherwise returns one line for the console and the provenance.

The tally also numbers the rows as read, usable or not (each :func:`skip_unusable` block and each
unusable row noted is one row; a row without a gold label is no row of the dataset, by its own
convention), so :meth:`SkipTally.example_rows` gives each kept example's row: a cap samples rows
(:func:`road_repro.data.registry.cap_rows`) and then drops the unusable ones, the same rule for a local
file and for the hub, where the rows can be picked before any conversion.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType

from road_repro.errors import DataError

#: Default largest share of a split's rows that may be unusable before loading stops (0.1 %).
DEFAULT_MAX_UNUSABLE_SHARE = 0.001
#: How many skipped rows a message names.
FIRST_ROWS = 3
#: The reason recorded for a row without a gold label.
NO_GOLD_LABEL = "no gold label"


class UnusableRow(DataError):
    """A row real releases are known to contain that cannot be used; ``reason`` is its short kind
    (``"empty text"``, ``"label outside the label set"``, ...), the message names the row."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class SkipTally:
    """The rows skipped while one split is read: counts per reason and the first few messages."""

    unusable: Counter = field(default_factory=Counter)
    no_gold: Counter = field(default_factory=Counter)  # raw label value -> rows
    first: list[str] = field(default_factory=list)
    rows: int = 0  # rows read so far, usable or not (rows without a gold label left out)
    skipped_at: list[int] = field(default_factory=list)  # the row number of each skipped row

    @property
    def skipped(self) -> int:
        return sum(self.unusable.values()) + sum(self.no_gold.values())

    def add(self, reason: str, message: str) -> None:
        self.unusable[reason] += 1
        if len(self.first) < FIRST_ROWS:
            self.first.append(message)
        self.skipped_at.append(self.rows)
        self.rows += 1

    def example_rows(self, used: int, source: str) -> list[int]:
        """The row number of each of the ``used`` examples read, in order (rows skipped left out).

        A reader that marks no row (no :func:`skip_unusable` block, nothing skipped) read one row per
        example. Otherwise every example must come from one block: a count that does not add up is a bug
        in the reader of ``source``, raised rather than sampling the wrong rows.
        """
        if self.rows == 0:
            return list(range(used))
        bad = sum(self.unusable.values())
        if self.rows != used + bad:
            raise RuntimeError(f"{source}: the reader marked {self.rows:,} rows but returned {used:,} examples and "
                               f"skipped {bad:,}: every row must be converted inside skip_unusable()")
        skipped = set(self.skipped_at)
        return [row for row in range(self.rows) if row not in skipped]

    def summary(self, used: int) -> str:
        """One line: rows skipped per reason out of the rows read (``used`` + skipped); empty if none."""
        if not self.skipped:
            return ""
        parts = [f"{n:,} {reason}" for reason, n in sorted(self.unusable.items())]
        parts += [f"{n:,} {NO_GOLD_LABEL} (label {raw!r})" for raw, n in sorted(self.no_gold.items(), key=str)]
        return f"skipped {self.skipped:,} of {used + self.skipped:,} rows: {', '.join(parts)}"

    def check(self, used: int, source: str, max_share: float) -> str:
        """Raise :class:`DataError` naming ``source`` when no row is usable or unusable rows exceed
        ``max_share`` of the rows read; otherwise the :meth:`summary` line (empty if nothing was skipped)."""
        bad = sum(self.unusable.values())
        first = f"; first: {' | '.join(self.first)}" if self.first else ""
        if used == 0:
            if self.no_gold and not self.unusable and len(self.no_gold) == 1:
                (raw,) = self.no_gold
                raise DataError(f"{source}: no usable rows: every row has label {raw!r} ({NO_GOLD_LABEL}, "
                                f"{self.skipped:,} rows); is this an unlabelled test split?")
            if self.skipped:
                raise DataError(f"{source}: no usable rows ({self.summary(0)}){first}")
            raise DataError(f"{source}: no rows (an empty file or split)")
        total = used + self.skipped
        if bad > max_share * total:
            raise DataError(f"{source}: {bad:,} of {total:,} rows ({100 * bad / total:.3g} %) are unusable, more than "
                            f"the {100 * max_share:.3g} % allowed (max_unusable_share) -- {self.summary(used)}{first}")
        return self.summary(used)


_ACTIVE: ContextVar[SkipTally | None] = ContextVar("road_repro_skip_tally", default=None)


@contextmanager
def collecting() -> Iterator[SkipTally]:
    """Collect skipped rows into a fresh :class:`SkipTally` for the duration of the block."""
    tally = SkipTally()
    token = _ACTIVE.set(tally)
    try:
        yield tally
    finally:
        _ACTIVE.reset(token)


class skip_unusable:  # noqa: N801 (used like a function: ``with skip_unusable():``)
    """Around one row's conversion (one row, at most one example): an :class:`UnusableRow` is recorded and
    suppressed while a load collects; outside one it propagates (a converter called directly stays strict).
    A block that ends normally without noting its row as skipped counts one row read and kept."""

    def __enter__(self) -> "skip_unusable":
        tally = _ACTIVE.get()
        self._noted_before = _noted(tally)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        tally = _ACTIVE.get()
        if tally is None:
            return False
        if isinstance(exc, UnusableRow):
            tally.add(exc.reason, str(exc))
            return True
        if exc is None and _noted(tally) == self._noted_before:
            tally.rows += 1
        return False


def _noted(tally: SkipTally | None) -> tuple[int, int]:
    """How many rows ``tally`` has numbered and dropped without a gold label (changes when a row is noted)."""
    return (tally.rows, sum(tally.no_gold.values())) if tally is not None else (0, 0)


def note_unusable(reason: str, message: str) -> None:
    """Count a row its converter drops itself (always, not only while a load collects), e.g. a blank review."""
    tally = _ACTIVE.get()
    if tally is not None:
        tally.add(reason, message)


def note_no_gold_label(raw: object) -> None:
    """Count a row dropped because it has no gold label (``raw``: its label value, e.g. ``"-"`` or ``-1``)."""
    tally = _ACTIVE.get()
    if tally is not None:
        tally.no_gold[str(raw).strip()] += 1
