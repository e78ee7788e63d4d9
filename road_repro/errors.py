"""The library's own error types: bad input is reported with one of these, naming the file, row or setting."""


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
    """SIGTERM arrived; the loop saved a checkpoint after the current step and stopped (rerun to resume)."""
