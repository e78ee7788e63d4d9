"""Run a table spec at a scale: rows -> stages -> tidy results, summary, plot and report page.

The tidy CSV has one row per (table row, seed, metric) with the run id that produced it, so every
number can be traced to ``runs/<run_id>/config.json`` (resolved config, seed, versions, git hash).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from road_repro.config import ProfileConfig, RowSpec, TableSpec, load_profile, load_table_spec, to_dict, validate_profile
from road_repro.experiments.runs import Run, provenance
from road_repro.experiments.stages import Experiment
from road_repro.io import atomic_write_csv, atomic_write_json
from road_repro.train.objectives import Objective

#: Official SQuAD 2.0 keys -> tidy metric names (percent).
SQUAD_METRICS = {"f1": "f1", "exact": "em", "best_f1": "best_f1", "best_exact": "best_em",
                 "HasAns_f1": "has_ans_f1", "NoAns_f1": "no_ans_f1"}

TIDY_COLUMNS = ["table", "row", "method", "seed", "metric", "value", "dataset", "split", "data_source",
                "profile", "run_id"]


def _tidy(spec: TableSpec, profile: ProfileConfig, row_no: int, row: RowSpec, seed: int | None, run: Run) -> list[dict[str, Any]]:
    task = profile.tasks[spec.task]
    source = f"{task.dev.dataset}:{task.dev.split}" + (f"[:{task.dev.limit}]" if task.dev.limit else "")
    return [
        {"table": spec.table, "row": row_no, "method": row.method, "seed": seed, "metric": name,
         "value": float(run.metrics[key]), "dataset": spec.task, "split": "dev", "data_source": source,
         "profile": profile.name, "run_id": run.run_id}
        for key, name in SQUAD_METRICS.items() if key in run.metrics
    ]


def compute_squad_table(exp: Experiment, spec: TableSpec) -> pd.DataFrame:
    """Rows of a SQuAD 2.0 finetuning table (single models, ensemble, KD variants) as tidy records."""
    p, d = exp.profile, exp.profile.distill
    records: list[dict[str, Any]] = []
    teacher_seeds = p.seeds[: d.n_teachers]

    def teachers(model_key: str) -> tuple[Run, ...]:
        return tuple(exp.finetune(spec.task, model_key, s) for s in teacher_seeds)

    for row_no, row in enumerate(spec.rows, start=1):
        model_key = row.model or spec.model
        if row.recipe == "ensemble":
            run = exp.ensemble(spec.task, model_key, teachers(model_key))
            records += _tidy(spec, p, row_no, row, None, run)
            continue
        objective = Objective(row.distill, d.temperature, d.lam, d.t2_scale, row.label_smoothing)
        for seed in p.seeds:
            run = exp.finetune(spec.task, model_key, seed, objective, teachers(model_key) if row.distill else ())
            records += _tidy(spec, p, row_no, row, seed, run)
    frame = pd.DataFrame.from_records(records, columns=TIDY_COLUMNS)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def no_answer_baseline(exp: Experiment, spec: TableSpec) -> float:
    """F1 (= EM) of answering every dev question with "no answer": the floor a learned model must clear."""
    dev = exp.qa_task(spec.task, spec.model).dev_examples
    return 100.0 * sum(ex.is_impossible for ex in dev) / len(dev)


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
    and tables that share a stage (e.g. the same teachers) train it once.
    """
    from road_repro.report.summary import summarize
    from road_repro.report.plots import plot_table

    spec = load_table_spec(table)
    prof = load_profile(profile, overrides, spec)
    if seeds is not None:
        prof.seeds = [int(s) for s in seeds]
        validate_profile(prof)
    out = Path(output_dir) / prof.name
    exp = Experiment(prof, Path(runs_dir) if runs_dir else Path(output_dir) / "runs", progress=progress)
    started = time.time()
    frame = compute_squad_table(exp, spec)
    atomic_write_csv(out / f"{table}.csv", frame)
    summary = summarize(frame, spec)
    atomic_write_csv(out / f"{table}_summary.csv", summary)
    plot_table(frame, spec, prof, out / f"{table}.png")
    atomic_write_json(out / f"{table}.json", {
        "table": spec.table, "name": table, "title": spec.title, "profile": to_dict(prof),
        "overrides": list(overrides), "seeds": prof.seeds, "metrics": spec.metrics,
        "no_answer_baseline_f1": no_answer_baseline(exp, spec), "provenance": provenance(),
        "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return frame
