"""The suite's console lines: one per stage (table, stage, run id, cached or computing, time taken) and one
per loaded checkpoint (which of its keys were dropped and why).

Everything goes through the ``road_repro`` logger; :func:`console` gives it one stderr handler the first
time a command or notebook runs a table, so the lines show in a terminal, under papermill and in CI logs
without configuring logging, and an application that configures logging itself keeps control.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("road_repro")


def console() -> logging.Logger:
    """The ``road_repro`` logger, with a plain stderr handler at INFO unless one is configured already."""
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger
