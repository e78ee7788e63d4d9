"""Run a table spec at a scale: rows -> stages -> tidy results, summary, plot and report page.

A row says how its model is built (optional multi-task pretraining, ROaD or MT-DNN, with or without KD)
and how it is finetuned (plain, KD / annealing / Weighted KD from same-model teachers of other seeds, or
KD from one teacher of another model); the table says which tasks and metrics it reports. Stages are
shared through the run cache, so e.g. the ROaD MTL checkpoint of Table 2 is reused by Table 4. The rows'
stages are computed by :class:`~road_repro.experiments.rows.TableRunner`, which the planner walks too.

The tidy CSV has one row per (table row, seed, task, metric) with the run id that produced it, so every
number can be traced to ``runs/<run_id>/config.json`` (resolved config, seed, versions, git hash).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from road_repro.config import ProfileConfig, TableSpec, load_profile, load_table_spec, parse_overrides, to_dict
from road_repro.errors import ConfigProblems, RoadError
from road_repro.experiments.interrupt import doing, sigterm_stops
from road_repro.experiments.planning import PlanningExperiment, build_plan
from road_repro.experiments.preflight import PreflightError, folder_problems, preflight, run_folders
from road_repro.experiments.rows import TableRunner
from road_repro.experiments.runs import Progress, provenance
from road_repro.experiments.session import SharedExperiments, resolve_profile
from road_repro.experiments.stages import Experiment
from road_repro.io import atomic_write_csv, atomic_write_json, shared_outcome
from road_repro.log import console
from road_repro.train.distributed import is_main, world_size


def check_tables(tables: Sequence[str], profile: str = "smoke", seeds: Sequence[int] | None = None,
                 overrides: Sequence[str] = (), output_dir: str | Path | None = None,
                 runs_dir: str | Path | None = None, experiments: SharedExperiments | None = None) -> None:
    """The preflight of several tables before any of them trains: every problem of every table, at once.
    With ``output_dir``, also every folder the run will write (:func:`~road_repro.experiments.preflight.run_folders`).

    Pass the command's ``experiments`` so that the splits loaded here are the ones its tables then run on.
    """
    overrides = parse_overrides(overrides)
    found: dict[str, list[str]] = {}  # problem -> the tables it concerns (settings problems concern all)
    if experiments is None:
        experiments = SharedExperiments(Path(tempfile.gettempdir()) / "road-preflight" / "runs", progress=False)
    for table in tables:
        try:
            spec = load_table_spec(table)
            prof = resolve_profile(profile, overrides, spec, seeds)
            blocked = folder_problems(run_folders(output_dir, runs_dir, prof.name)) if output_dir is not None else []
            for problem in blocked:
                found.setdefault(problem, []).append(table)
            # The shared Experiment creates its runs folder: with a folder blocked, the other checks go through a
            # dry one (it creates nothing), so that they are reported now too and not after the folder is fixed.
            preflight(spec, Experiment(prof, experiments.runs_dir, progress=False, dry=True) if blocked
                      else experiments.get(prof))
        except ConfigProblems as exc:
            for problem in exc.problems:
                found.setdefault(problem, []).append(table)
        except RoadError as exc:
            found.setdefault(str(exc), []).append(table)
    if found:
        raise PreflightError([f"{', '.join(names)}: {problem}" if len(tables) > 1 else problem
                              for problem, names in found.items()])


def plan_tables(tables: Sequence[str], profile: str = "smoke", seeds: Sequence[int] | None = None,
                overrides: Sequence[str] = (), output_dir: str | Path = "results",
                runs_dir: str | Path | None = None, offline: bool = False) -> dict[str, Any]:
    """The stages every table needs, with their run ids, steps, examples and GPU-hours, without training.

    Tables are planned in the order given; a stage an earlier table needs is *shared*, one already finished
    on disk is *cached*, the rest are *new*. The union of all tables' stages is what a full run computes
    once. Written to ``<output_dir>/<profile>/plan.json``, which :func:`run_table` reads to report overall
    progress (stages finished / planned, elapsed time). ``offline=False`` (``--plan``) runs the full preflight
    first and loads everything; ``offline=True`` (``--dry-run``) downloads nothing and gives what is not on
    disk planned ids (:mod:`road_repro.experiments.planning`).
    """
    overrides = parse_overrides(overrides)
    experiments = SharedExperiments(Path(runs_dir) if runs_dir else Path(output_dir) / "runs", progress=False,
                                    make=lambda prof, runs, _: PlanningExperiment(prof, runs, offline))
    if not offline:
        check_tables(tables, profile, seeds, overrides, output_dir, runs_dir, experiments)  # the plan reuses its loads
    else:
        try:
            name = load_profile(profile, overrides).name
        except RoadError:
            name = None  # build_plan reports it with the tables it concerns
        if name is not None and (problems := folder_problems({"output": Path(output_dir) / name})):
            raise PreflightError(problems)
    return build_plan(tables, profile, seeds, overrides, output_dir, runs_dir, offline, experiments)


def _progress(output_dir: str | Path, profile: ProfileConfig) -> Progress | None:
    """Overall progress from the plan of a multi-table run (``make reproduce-all``), if one was written."""
    path = Path(output_dir) / profile.name / "plan.json"
    try:
        plan = json.loads(path.read_text())
        if any(stage.get("planned_id") for stage in plan.get("stages", {}).values()):
            return None  # a dry run's plan: some of its ids are planned ones, not the ids the run computes
        return Progress(frozenset(plan["run_ids"]), float(plan["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def table_name(table: str) -> str:
    """The name results are filed under: the spec's name, or its file's stem when given as a path (so that
    ``<output_dir>/<profile>/<name>.csv`` stays inside the output folder)."""
    return Path(table).stem if Path(table).suffix in (".yaml", ".yml") else table


def run_table(
    table: str,
    profile: str = "smoke",
    seeds: Sequence[int] | None = None,
    output_dir: str | Path = "results",
    overrides: Sequence[str] = (),
    runs_dir: str | Path | None = None,
    progress: bool = True,
    experiments: SharedExperiments | None = None,
) -> pd.DataFrame:
    """Compute a table at a scale and write ``<output_dir>/<profile>/<table>.csv`` plus its summary and plot.

    Finished stages are reused from ``runs_dir`` (default ``<output_dir>/runs``), so re-running is cheap
    and tables that share a stage (teachers, MTL checkpoints) train it once. ``experiments``: the command's
    shared Experiments (:class:`SharedExperiments`, on the same runs folder), so several tables load each
    split once. Under torchrun rank 0 writes the table's files and every rank returns once they are written.
    """
    overrides = parse_overrides(overrides)
    spec = load_table_spec(table)
    prof = resolve_profile(profile, overrides, spec, seeds)
    out = Path(output_dir) / prof.name
    if problems := folder_problems(run_folders(output_dir, runs_dir, prof.name)):
        raise PreflightError(problems)  # before the runs folder is created or anything trains
    table = table_name(table)
    if experiments is None:
        experiments = SharedExperiments(Path(runs_dir) if runs_dir else Path(output_dir) / "runs", progress)
    exp = experiments.get(prof)
    exp.store.context = f"{table} {prof.name}"
    exp.store.progress = _progress(output_dir, prof)
    with sigterm_stops(), doing(f"computing table {table} at the {prof.name} scale"):
        return _compute_and_write(exp, spec, table, prof, overrides, out)


def _compute_and_write(exp: Experiment, spec: TableSpec, table: str, prof: ProfileConfig, overrides: list[str],
                       out: Path) -> pd.DataFrame:
    """Compute the table's stages with ``exp`` and write its files into ``out`` (see :func:`run_table`)."""
    from road_repro.report.claims import evaluate_claims
    from road_repro.report.plots import plot_table
    from road_repro.report.summary import summarize

    runner = TableRunner(exp, spec)
    started = time.time()
    log = console() if is_main() else None  # one console line per table, not one per rank
    if log:
        log.info("[%s] %s at the %s scale: computing or reusing its stages", exp.store.context, spec.title, prof.name)
    frame = runner.compute()
    # Rank 0 writes the results (road_repro/io.py); no rank returns before they are on disk, and if rank 0 fails
    # writing them, every rank raises at once instead of waiting for it at a barrier.
    with doing(f"writing the results of table {table}"), shared_outcome(f"writing the results of table {table}"):
        atomic_write_csv(out / f"{table}.csv", frame)
        summary = summarize(frame, spec)
        atomic_write_csv(out / f"{table}_summary.csv", summary)
        plot_table(frame, spec, prof, out / f"{table}.png")
        atomic_write_csv(out / f"{table}_claims.csv", evaluate_claims(frame, spec))
        atomic_write_json(out / f"{table}.json", {
            "table": spec.table, "name": table, "title": spec.title, "profile": to_dict(prof),
            "overrides": list(overrides), "seeds": prof.seeds, "evaluate": spec.evaluate, "metrics": spec.metrics,
            "no_answer_baseline_f1": runner.no_answer_baselines(), "provenance": provenance(),
            "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "world_size": world_size(),
        })
    if log:
        log.info("[%s] done in %.1f s: %s", exp.store.context, time.time() - started, out / f"{table}.csv")
    return frame
