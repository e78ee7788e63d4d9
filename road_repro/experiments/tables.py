"""Run a table spec at a scale: rows -> stages -> tidy results, summary, plot and report page.

A row says how its model is built (optional multi-task pretraining, ROaD or MT-DNN, with or without KD)
and how it is finetuned (plain, KD / annealing / Weighted KD from same-model teachers of other seeds, or
KD from one teacher of another model); the table says which tasks and metrics it reports. Stages are
shared through the run cache, so e.g. the ROaD MTL checkpoint of Table 2 is reused by Table 4.

The tidy CSV has one row per (table row, seed, task, metric) with the run id that produced it, so every
number can be traced to ``runs/<run_id>/config.json`` (resolved config, seed, versions, git hash).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from road_repro.config import (
    ProfileConfig, RowSpec, TableSpec, load_profile, load_table_spec, parse_overrides, parse_seeds, to_dict,
    validate_profile,
)
from road_repro.errors import ConfigProblems, RoadError
from road_repro.experiments.preflight import PreflightError, folder_problems, preflight, run_folders
from road_repro.experiments.runs import Progress, Run, config_hash, provenance
from road_repro.experiments.stages import Experiment
from road_repro.io import atomic_write_csv, atomic_write_json, shared_outcome
from road_repro.train.distributed import is_main, world_size
from road_repro.log import console
from road_repro.train.objectives import Objective

#: Run metric keys -> tidy metric names (percent): official SQuAD 2.0 keys, and accuracy.
METRIC_NAMES = {"f1": "f1", "exact": "em", "best_f1": "best_f1", "best_exact": "best_em",
                "HasAns_f1": "has_ans_f1", "NoAns_f1": "no_ans_f1", "acc": "acc"}

TIDY_COLUMNS = ["table", "row", "method", "paper_model", "seed", "metric", "value", "dataset", "split",
                "data_source", "profile", "run_id"]


def _source(profile: ProfileConfig, task: str) -> str:
    dev = profile.tasks[task].dev
    return f"{dev.dataset}:{dev.split}" + (f"[:{dev.limit}]" if dev.limit else "")


class TableRunner:
    """Computes the rows of one table with an :class:`Experiment`."""

    def __init__(self, exp: Experiment, spec: TableSpec):
        self.exp, self.spec, self.p = exp, spec, exp.profile

    def _init(self, model_key: str, mtl, seed: int | None = None) -> Run | None:
        """The MTL encoder the finetuning run of ``seed`` starts from: the one run of ``mtl.seed``, or with
        ``mtl.seeds`` (several MTL runs per arm) the finetuning seeds take those runs in turn."""
        if not mtl:
            return None
        runs = self.p.mtl.seeds
        mtl_seed = runs[self.p.seeds.index(seed) % len(runs)] if runs and seed in self.p.seeds else None
        return self.exp.mtl(model_key, mtl.mode, mtl.pass_step, mtl.kd, mtl.steps_fraction, seed=mtl_seed)

    def _objective(self, distill: str | None, label_smoothing: float = 0.0) -> Objective:
        d = self.p.distill
        return Objective(distill, d.temperature, d.lam, d.t2_scale, label_smoothing)

    def _seeds(self, ensemble: bool) -> list[int]:
        """The teachers' seeds: the first ``distill.n_teachers`` (paper: 3), or only the first."""
        return self.p.seeds[: self.p.distill.n_teachers] if ensemble else self.p.seeds[:1]

    def _teachers(self, row: RowSpec, task: str, model_key: str) -> tuple[Run, ...]:
        """The row's teachers on ``task``: by default the same model and init at the first n_teachers seeds
        (Table 5: the teachers are the single-model runs); or ``row.teacher``'s model, init and seeds,
        themselves distilled when ``distilled_from`` says so (blog 4.2). All are shared cached stages."""
        t = row.teacher
        if t is None:
            return tuple(self.exp.finetune(task, model_key, s, init=self._init(model_key, row.mtl, s))
                         for s in self._seeds(True))
        src = t.distilled_from
        if src is None:
            return tuple(self.exp.finetune(task, t.model, s, init=self._init(t.model, t.mtl, s))
                         for s in self._seeds(t.ensemble))
        sources = tuple(self.exp.finetune(task, src.model, s, init=self._init(src.model, src.mtl, s))
                        for s in self._seeds(src.ensemble))
        return tuple(self.exp.finetune(task, t.model, s, self._objective(src.distill), sources,
                                       self._init(t.model, t.mtl, s),
                                       teacher_model=src.model if src.model != t.model else None)
                     for s in self._seeds(t.ensemble))

    def _tidy(self, row_no: int, row: RowSpec, task: str, seed: int | None, run: Run) -> list[dict[str, Any]]:
        return [
            {"table": self.spec.table, "row": row_no, "method": row.method, "paper_model": row.paper_model or "",
             "seed": seed, "metric": name, "value": float(run.metrics[key]), "dataset": task, "split": "dev",
             "data_source": _source(self.p, task), "profile": self.p.name, "run_id": run.run_id}
            for key, name in METRIC_NAMES.items() if key in run.metrics
        ]

    def row(self, row_no: int, row: RowSpec) -> list[dict[str, Any]]:
        """Compute one row: its runs for every task of the table, as tidy records (none for a published row)."""
        if row.recipe == "published":
            return []
        model_key = row.model or self.spec.model
        objective = self._objective(row.distill, row.label_smoothing)
        teacher_model = row.teacher.model if row.teacher and row.teacher.model != model_key else None
        records: list[dict[str, Any]] = []
        for task in self.spec.evaluate:
            source = self.p.tasks[task].predict_with
            train_task = source or task
            if row.recipe == "ensemble":
                members = self._teachers(row, train_task, model_key)
                if source:  # e.g. NewsQA: each member's predictions through the SQuAD 2.0 model
                    members = tuple(self.exp.predict(m, source, task, model_key) for m in members)
                records += self._tidy(row_no, row, task, None, self.exp.ensemble(task, model_key, members))
                continue
            teachers = self._teachers(row, train_task, model_key) if row.distill or row.hidden else ()
            for seed in self.p.seeds:
                run = self.exp.finetune(train_task, model_key, seed, objective, teachers,
                                        self._init(model_key, row.mtl, seed),
                                        teacher_model=teacher_model, hidden=row.hidden, augment=row.augment)
                if source:
                    run = self.exp.predict(run, source, task, model_key)
                records += self._tidy(row_no, row, task, seed, run)
        return records

    def compute(self) -> pd.DataFrame:
        preflight(self.spec, self.exp)
        records = [r for i, row in enumerate(self.spec.rows, start=1) for r in self.row(i, row)]
        frame = pd.DataFrame.from_records(records, columns=TIDY_COLUMNS)
        frame["seed"] = frame["seed"].astype("Int64")
        return frame

    def no_answer_baselines(self) -> dict[str, float]:
        """Per span task: F1 (= EM) of answering every dev question with "no answer"."""
        out = {}
        for task in self.spec.evaluate:
            data = self.exp.task(task, self.spec.model)
            if data.is_span:
                out[task] = 100.0 * sum(ex.is_impossible for ex in data.dev.examples) / len(data.dev.examples)
        return out


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
            prof = _profile(profile, overrides, spec, seeds)
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
    from road_repro.experiments.planning import PlanningExperiment, build_plan

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


def plan_text(plan: dict[str, Any], stages: bool = False) -> str:
    """The plan for the console (:func:`road_repro.experiments.planning.plan_text`)."""
    from road_repro.experiments.planning import plan_text as text

    return text(plan, stages)


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


def _profile(profile: str, overrides: Sequence[str], spec: TableSpec, seeds: Sequence[int] | None) -> ProfileConfig:
    prof = load_profile(profile, overrides, spec)
    if (seeds := parse_seeds(seeds)) is not None:
        prof.seeds = seeds
        validate_profile(prof, spec)
    return prof


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
    from road_repro.report.claims import evaluate_claims
    from road_repro.report.plots import plot_table
    from road_repro.report.summary import summarize

    overrides = parse_overrides(overrides)
    spec = load_table_spec(table)
    prof = _profile(profile, overrides, spec, seeds)
    out = Path(output_dir) / prof.name
    if problems := folder_problems(run_folders(output_dir, runs_dir, prof.name)):
        raise PreflightError(problems)  # before the runs folder is created or anything trains
    table = table_name(table)
    if experiments is None:
        experiments = SharedExperiments(Path(runs_dir) if runs_dir else Path(output_dir) / "runs", progress)
    exp = experiments.get(prof)
    exp.store.context = f"{table} {prof.name}"
    exp.store.progress = _progress(output_dir, prof)
    runner = TableRunner(exp, spec)
    started = time.time()
    log = console() if is_main() else None  # one console line per table, not one per rank
    if log:
        log.info("[%s] %s at the %s scale: computing or reusing its stages", exp.store.context, spec.title, prof.name)
    frame = runner.compute()
    # Rank 0 writes the results (road_repro/io.py); no rank returns before they are on disk, and if rank 0 fails
    # writing them, every rank raises at once instead of waiting for it at a barrier.
    with shared_outcome(f"writing the results of table {table}"):
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
