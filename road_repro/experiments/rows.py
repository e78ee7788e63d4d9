"""A table's rows as stages: :class:`TableRunner` turns each row of a spec into the cached stages it needs
(multi-task pretraining, teachers, finetuning, predictions, ensembles) and their metrics into tidy records.

Shared by the run (:mod:`road_repro.experiments.tables`), which computes the stages, and the planner
(:mod:`road_repro.experiments.planning`), which walks the same rows through a dry Experiment to list them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from road_repro.config import ProfileConfig, RowSpec, TableSpec
from road_repro.experiments.preflight import preflight
from road_repro.experiments.runs import Run
from road_repro.experiments.stages import Experiment
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
