"""The suite's console lines: one per stage (table, stage, run id, cached or computing, time taken) and one
per loaded checkpoint (which of its keys were dropped and why); and its progress bars (:func:`progress`),
which redraw in place on a terminal but write a plain line every few percent or minutes into a log file.

Everything goes through the ``road_repro`` logger; :func:`console` gives it one stderr handler the first
time a command or notebook runs a table, so the lines show in a terminal, under papermill and in CI logs
without configuring logging, and an application that configures logging itself keeps control.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any, Iterable, Sequence

from tqdm.auto import tqdm as auto_tqdm
from tqdm.std import tqdm as std_tqdm

logger = logging.getLogger("road_repro")


def console() -> logging.Logger:
    """The ``road_repro`` logger, with a plain stderr handler at INFO unless one is configured already."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger


#: Where stderr is not a terminal, a progress bar writes one plain line per ``PLAIN_PERCENT`` of its total
#: or every ``PLAIN_SECONDS`` seconds (whichever comes first), never a carriage-return redraw.
PLAIN_PERCENT = 5
PLAIN_SECONDS = 120.0


class _Lines:
    """A file for tqdm that turns each redraw (``\\r`` + bar) into one plain line; clears are dropped."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


class PlainProgress(std_tqdm):
    """A tqdm bar for logs: redraws only every ``PLAIN_PERCENT`` % or ``PLAIN_SECONDS`` s, as whole lines."""

    def __init__(self, *args, **kwargs):
        kwargs["file"] = _Lines(kwargs.get("file") or sys.stderr)
        kwargs.setdefault("mininterval", 1.0)
        kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is None and not self.disable:  # a redraw while running (closing always prints the last line)
            bucket = self.n * 100 // (self.total * PLAIN_PERCENT) if self.total else None
            now = time.monotonic()
            last = getattr(self, "_plain_last", None)
            if last is not None and bucket == self._plain_bucket and now - last < PLAIN_SECONDS:
                return True
            self._plain_bucket, self._plain_last = bucket, now
        return super().display(msg, pos)


def interactive(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stderr) is a terminal, where bars may redraw in place."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(iterable: Iterable | None = None, **kwargs: Any) -> std_tqdm:
    """The suite's one progress bar: tqdm's own on a terminal, :class:`PlainProgress` lines in a log file."""
    if interactive(kwargs.get("file")):
        return auto_tqdm(iterable, **kwargs)
    return PlainProgress(iterable, **kwargs)


def plain_table(headers: Sequence[str], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> str:
    """A fixed-width text table: every column as wide as its widest cell, nothing cut, whatever the terminal.

    For output that may go to a file, a pipe or a narrow terminal, where a box-drawn table that fits itself
    to the width squeezes cells to ``…``. ``right``: the columns to right-align (numbers).
    """
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = set(right)

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in align else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])
