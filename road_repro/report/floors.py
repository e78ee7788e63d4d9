"""Learning floors: the least a row must score for the pipeline check to mean anything.

At the ``smoke`` scale every number comes from a tiny model on synthetic data, so the numbers say nothing
about the paper -- but a row that does not clear these floors shows a model that learned nothing, which is
how a broken method (a swapped label order, a head wired to the wrong task, KD targets on the wrong rows)
shows up. :func:`check_floors` names every such row; ``python -m road_repro.report`` prints a warning per
row and the report flags it.

The floors, by task type (the one place they are defined; the learning tests use them too):

* classification: accuracy above chance (100 / number of classes) + :data:`MARGIN` points --
  NLI 3-way 58.33, paraphrase 2-way 75, sentiment 5-way 45;
* span QA: F1 above the all-no-answer F1 of the dev set + :data:`SPAN_MARGIN` (15), and answerable-question F1
  (``has_ans_f1``) above :data:`HAS_ANS_F1` (a model that learns only to abstain fails the second).

They apply where the data is the embedded synthetic data the floors were set for (:data:`FLOOR_PROFILES`):
at the ``mini`` and ``paper`` scales real datasets differ in balance and difficulty (NewsQA predicted by a
SQuAD model, say), and a floor there would be a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from road_repro.data.schema import LABELS

#: Points above chance (classification) or above the all-no-answer F1 (span QA) a row must score.
MARGIN = 25.0
#: Span QA: points above the all-no-answer F1.
SPAN_MARGIN = 15.0
#: Span QA: the least answerable-question F1.
HAS_ANS_F1 = 50.0
#: Profiles whose tables are checked.
FLOOR_PROFILES = ("smoke",)


def chance(task_type: str) -> float:
    """Accuracy (percent) of guessing among the task type's classes (the synthetic tasks are balanced)."""
    return 100.0 / len(LABELS[task_type])


def accuracy_floor(task_type: str) -> float:
    """Least accuracy (percent) for a classification task type: chance + :data:`MARGIN`."""
    return chance(task_type) + MARGIN


def span_floors(no_answer_f1: float) -> dict[str, float]:
    """Least ``f1`` and ``has_ans_f1`` for span QA given the dev set's all-no-answer F1."""
    return {"f1": no_answer_f1 + SPAN_MARGIN, "has_ans_f1": HAS_ANS_F1}


@dataclass(frozen=True)
class FloorMiss:
    """One row of one table whose mean does not clear its floor."""

    table: str
    row: int
    method: str
    dataset: str
    metric: str
    mean: float
    floor: float
    paper_model: str = ""

    @property
    def label(self) -> str:
        return f"{self.paper_model}: {self.method}" if self.paper_model else self.method

    def message(self) -> str:
        return (f"{self.table} row {self.row} '{self.label}': {self.dataset} {self.metric} mean "
                f"{self.mean:.2f} is not above the floor {self.floor:.2f} (the model did not learn)")


def task_types(profile: Mapping[str, Any]) -> dict[str, str]:
    """Task -> task type (mrc, nli, sentiment, paraphrase) from a resolved profile's dev datasets."""
    from road_repro.data.registry import get_dataset

    out = {}
    for task, cfg in (profile.get("tasks") or {}).items():
        split = (cfg or {}).get("dev") or (cfg or {}).get("train")
        if split and split.get("dataset"):
            try:
                out[task] = get_dataset(split["dataset"]).task
            except Exception:  # noqa: BLE001 - an unknown dataset just goes unchecked
                continue
    return out


def floors_for(task_type: str, no_answer_f1: float | None) -> dict[str, float]:
    """Metric -> floor for one task type (span QA without a known all-no-answer F1: answerable F1 only)."""
    if task_type == "mrc":
        return span_floors(no_answer_f1) if no_answer_f1 is not None else {"has_ans_f1": HAS_ANS_F1}
    if task_type in LABELS:
        return {"acc": accuracy_floor(task_type)}
    return {}


def check_floors(summary: pd.DataFrame, table: str, types: Mapping[str, str],
                 no_answer_f1: Mapping[str, float]) -> list[FloorMiss]:
    """Every (row, dataset, metric) of ``summary`` whose mean is not above its floor, in table order.

    ``summary`` has the columns of :func:`road_repro.report.summary.summarize` (row, method, dataset,
    metric, mean); ``types`` maps each dataset to its task type, ``no_answer_f1`` each span dataset to its
    all-no-answer F1. A missing or NaN mean counts as a miss: a row that produced no number learned nothing.
    """
    misses = []
    for r in summary.itertuples(index=False):
        if getattr(r, "n", 1) == 0:  # a published number the paper quotes: nothing was run
            continue
        floor = floors_for(types.get(r.dataset, ""), no_answer_f1.get(r.dataset)).get(r.metric)
        if floor is None:
            continue
        mean = float(r.mean) if pd.notna(r.mean) else float("nan")
        if not mean > floor:  # NaN fails too
            paper_model = getattr(r, "paper_model", "")
            misses.append(FloorMiss(table, int(r.row), str(r.method), str(r.dataset), str(r.metric), mean, floor,
                                    paper_model if isinstance(paper_model, str) else ""))
    return misses


def check_table_files(meta: Mapping[str, Any], summary: pd.DataFrame) -> list[FloorMiss]:
    """:func:`check_floors` for a table as written by ``run_table`` (its ``<name>.json`` and summary CSV);
    nothing for profiles outside :data:`FLOOR_PROFILES`."""
    profile = meta.get("profile") or {}
    if profile.get("name") not in FLOOR_PROFILES:
        return []
    return check_floors(summary, str(meta.get("name") or meta.get("table")), task_types(profile),
                        meta.get("no_answer_baseline_f1") or {})
