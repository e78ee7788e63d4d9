"""Run a table spec at a scale: rows -> stages -> tidy results, summary, plot and report page.

A row says how its model is built (optional multi-task pretraining, ROaD or MT-DNN, with or without KD)
and how it is finetuned (plain, KD / annealing / Weighted KD from same-model teachers of other seeds, or
KD from one teacher of another model); the table says which tasks and metrics it reports. Stages are
shared through the run cache, so e.g. the ROaD MTL checkpoint of Table 2 is reused by Table 4.

The tidy CSV has one row per (table row, seed, task, metric) with the run id that produced it, so every
number can be traced to ``runs/<run_id>/config.json`` (resolved config, seed, versions, git hash).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from road_repro.config import (
    ProfileConfig, RowSpec, TableSpec, load_profile, load_table_spec, to_dict, validate_profile,
)
from road_repro.errors import ConfigError, ConfigProblems, RoadError
from road_repro.experiments.preflight import PreflightError, preflight
from road_repro.experiments.runs import Run, provenance
from road_repro.experiments.stages import Experiment
from road_repro.io import atomic_write_csv, atomic_write_json
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

    def _init(self, model_key: str, mtl) -> Run | None:
        return self.exp.mtl(model_key, mtl.mode, mtl.pass_step, mtl.kd, mtl.steps_fraction) if mtl else None

    def _teachers(self, row: RowSpec, task: str, model_key: str, init: Run | None) -> tuple[Run, ...]:
        if row.teacher is not None:
            t_init = self._init(row.teacher.model, row.teacher.mtl)
            return (self.exp.finetune(task, row.teacher.model, self.p.seeds[0], init=t_init),)
        return tuple(self.exp.finetune(task, model_key, s, init=init) for s in self.p.seeds[: self.p.distill.n_teachers])

    def _tidy(self, row_no: int, row: RowSpec, task: str, seed: int | None, run: Run) -> list[dict[str, Any]]:
        return [
            {"table": self.spec.table, "row": row_no, "method": row.method, "paper_model": row.paper_model or "",
             "seed": seed, "metric": name, "value": float(run.metrics[key]), "dataset": task, "split": "dev",
             "data_source": _source(self.p, task), "profile": self.p.name, "run_id": run.run_id}
            for key, name in METRIC_NAMES.items() if key in run.metrics
        ]

    def row(self, row_no: int, row: RowSpec) -> list[dict[str, Any]]:
        model_key, d = row.model or self.spec.model, self.p.distill
        init = self._init(model_key, row.mtl)
        objective = Objective(row.distill, d.temperature, d.lam, d.t2_scale, row.label_smoothing)
        teacher_model = row.teacher.model if row.teacher else None
        records: list[dict[str, Any]] = []
        for task in self.spec.evaluate:
            source = self.p.tasks[task].predict_with
            train_task = source or task
            if row.recipe == "ensemble":
                if source:
                    raise ConfigError(f"table {self.spec.table}: an ensemble row cannot score {task!r} through {source!r}")
                run = self.exp.ensemble(task, model_key, self._teachers(row, task, model_key, init))
                records += self._tidy(row_no, row, task, None, run)
                continue
            teachers = self._teachers(row, train_task, model_key, init) if row.distill else ()
            for seed in self.p.seeds:
                run = self.exp.finetune(train_task, model_key, seed, objective, teachers, init, teacher_model=teacher_model)
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


def check_tables(tables: Sequence[str], profile: str = "smoke", seeds: Sequence[int] | None = None,
                 overrides: Sequence[str] = ()) -> None:
    """The preflight of several tables before any of them trains: every problem of every table, at once."""
    found: dict[str, list[str]] = {}  # problem -> the tables it concerns (settings problems concern all)
    for table in tables:
        try:
            spec = load_table_spec(table)
            prof = _profile(profile, overrides, spec, seeds)
            preflight(spec, Experiment(prof, Path(tempfile.gettempdir()) / "road-preflight", progress=False))
        except ConfigProblems as exc:
            for problem in exc.problems:
                found.setdefault(problem, []).append(table)
        except RoadError as exc:
            found.setdefault(str(exc), []).append(table)
    if found:
        raise PreflightError([f"{', '.join(names)}: {problem}" if len(tables) > 1 else problem
                              for problem, names in found.items()])


def _profile(profile: str, overrides: Sequence[str], spec: TableSpec, seeds: Sequence[int] | None) -> ProfileConfig:
    prof = load_profile(profile, overrides, spec)
    if seeds is not None:
        prof.seeds = [int(s) for s in seeds]
        validate_profile(prof)
    return prof


def run_table(
    table: str,
    profile: str = "smoke",
    seeds: Sequence[int] | None = None,
    output_dir: str | Path = "results",
    overrides: Sequence[str] = (),
    runs_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Compute a table at a scale and write ``<output_dir>/<profile>/<table>.csv`` plus its summary and plot.

    Finished stages are reused from ``runs_dir`` (default ``<output_dir>/runs``), so re-running is cheap
    and tables that share a stage (teachers, MTL checkpoints) train it once.
    """
    from road_repro.report.plots import plot_table
    from road_repro.report.summary import summarize

    spec = load_table_spec(table)
    prof = _profile(profile, overrides, spec, seeds)
    out = Path(output_dir) / prof.name
    exp = Experiment(prof, Path(runs_dir) if runs_dir else Path(output_dir) / "runs", progress)
    exp.store.context = f"{table} {prof.name}"
    runner = TableRunner(exp, spec)
    started = time.time()
    log = console()
    log.info("[%s] %s at the %s scale: computing or reusing its stages", exp.store.context, spec.title, prof.name)
    frame = runner.compute()
    atomic_write_csv(out / f"{table}.csv", frame)
    summary = summarize(frame, spec)
    atomic_write_csv(out / f"{table}_summary.csv", summary)
    plot_table(frame, spec, prof, out / f"{table}.png")
    atomic_write_json(out / f"{table}.json", {
        "table": spec.table, "name": table, "title": spec.title, "profile": to_dict(prof),
        "overrides": list(overrides), "seeds": prof.seeds, "evaluate": spec.evaluate, "metrics": spec.metrics,
        "no_answer_baseline_f1": runner.no_answer_baselines(), "provenance": provenance(),
        "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    log.info("[%s] done in %.1f s: %s", exp.store.context, time.time() - started, out / f"{table}.csv")
    return frame
