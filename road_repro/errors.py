"""The library's own error types: bad input is reported with one of these, naming the file, row or setting.

The command line (``python -m road_repro.experiments``) turns them into exit statuses (:func:`exit_status`),
documented in docs/reliability.md: 0 done, 1 an unexpected error (a bug: its traceback is shown),
2 bad input (settings, spec, data, folders; found before any compute), 3 training stopped (e.g. a NaN loss),
143 (128 + SIGTERM) stopped by SIGTERM after a checkpoint (rerun to resume).
"""

import signal


class RoadError(Exception):
    """Base class of every error road-repro raises on purpose."""


class DataError(RoadError, ValueError):
    """A data file or record is missing, malformed or inconsistent (the message names file and row)."""


class ConfigError(RoadError, ValueError):
    """A setting is unknown, out of range or inconsistent with another (the message names the setting)."""


class ConfigProblems(ConfigError):
    """Several problems found at once (settings, models, data), reported together, one per line."""

    def __init__(self, problems: list[str], what: str = "found before any training"):
        self.problems = problems
        super().__init__(problems[0] if len(problems) == 1 else
                         f"{len(problems)} problems {what}:\n  " + "\n  ".join(problems))


class TrainingError(RoadError, RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the message names step, batch and dataset."""


class TrainingInterrupted(TrainingError):
    """SIGTERM arrived: during training the loop saved a checkpoint after the current step and stopped; elsewhere
    the work in progress stopped (:mod:`road_repro.experiments.interrupt`). Rerun to resume."""


class RankFailed(RuntimeError):
    """Under torchrun, another rank failed in a step every rank waits on (e.g. rank 0 writing a table's results);
    the message names the rank, the step and its error. Not a :class:`RoadError`: it is never bad input, and
    each rank shows its traceback (status 1) rather than leaving the saying to rank 0."""


#: Exit statuses of the command line (see the module docstring).
EXIT_BAD_INPUT = 2
EXIT_TRAINING_STOPPED = 3
EXIT_INTERRUPTED = 128 + signal.SIGTERM


def exit_status(exc: RoadError) -> tuple[int, str]:
    """The exit status for ``exc`` and the word its one-line message starts with."""
    if isinstance(exc, TrainingInterrupted):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, TrainingError):
        return EXIT_TRAINING_STOPPED, "training stopped"
    return EXIT_BAD_INPUT, "error"
