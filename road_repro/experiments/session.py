"""What the tables of one command share: the resolved profile of each table and one Experiment per profile.

Used by the run (:mod:`road_repro.experiments.tables`) and the planner (:mod:`road_repro.experiments.planning`)
alike, so that neither imports the other's internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from road_repro.config import ProfileConfig, TableSpec, load_profile, parse_seeds, to_dict, validate_profile
from road_repro.experiments.runs import config_hash
from road_repro.experiments.stages import Experiment


class SharedExperiments:
    """The :class:`Experiment` of every table of one command, so that each process loads each split once.

    Tables that resolve to the same profile (every table without ``profile_overrides`` of its own) share one
    Experiment, and with it its loaded examples, tokenizers and tokenized splits: the preflight's loads are
    the run's, and the second table re-reads nothing. A table whose spec changes the profile gets its own.
    ``make`` builds a new one (the planner passes one that makes a dry :class:`PlanningExperiment`).
    """

    def __init__(self, runs_dir: str | Path, progress: bool = True,
                 make: Callable[[ProfileConfig, Path, bool], Experiment] = Experiment):
        self.runs_dir, self.progress, self.make = Path(runs_dir), progress, make
        self._by_profile: dict[str, Experiment] = {}

    def get(self, profile: ProfileConfig) -> Experiment:
        """The Experiment for ``profile`` (made on first use)."""
        key = config_hash(to_dict(profile))
        if key not in self._by_profile:
            self._by_profile[key] = self.make(profile, self.runs_dir, self.progress)
        return self._by_profile[key]


def resolve_profile(profile: str, overrides: Sequence[str], spec: TableSpec, seeds: Sequence[int] | None
                    ) -> ProfileConfig:
    """The profile a table runs at: ``profile`` with ``overrides`` and the spec's own overrides, and ``seeds``
    (when given) in place of its seeds, checked against the table."""
    prof = load_profile(profile, overrides, spec)
    if (seeds := parse_seeds(seeds)) is not None:
        prof.seeds = seeds
        validate_profile(prof, spec)
    return prof
