"""Task data for stages: examples, tokenized features and scoring, for span QA and classification alike.

A :class:`TaskData` hides the two shapes behind one interface: ``batch(split, rows)`` gives a model
batch (sentence pairs padded to the batch's longest row; QA windows too, or to ``max_seq_length`` with
``features.span_padding: window``) read from
the memory-mapped feature store, ``score(split, logits)`` the task's metrics (official SQuAD 2.0 scoring or
accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import torch
from torch import Tensor

from road_repro.config import FeatureConfig
from road_repro.data.feature_store import StoredFeatures
from road_repro.data.schema import LABELS, ClassificationExample, QAExample
from road_repro.evaluate.accuracy import accuracy
from road_repro.evaluate.postprocess import squad_predictions
from road_repro.evaluate.squad_v2 import evaluate_examples

SPAN_TARGETS = ("start_positions", "end_positions")


def head_kind(task_type: str) -> str | int:
    """``"span"`` for MRC, else the number of classes of the task type."""
    return "span" if task_type == "mrc" else len(LABELS[task_type])


class Split:
    """One split's examples and its tokenized features, stored once on disk (:mod:`road_repro.data.feature_store`).

    ``fingerprint`` identifies the features (examples, tokenizer, settings) without building them, so a dry
    run can name every run; ``features`` maps the stored split (building it first if needed) on first use.
    """

    def __init__(self, examples: list[QAExample] | list[ClassificationExample], fingerprint: str,
                 load: Callable[[], StoredFeatures], known_rows: int | None = None):
        self.examples, self.fingerprint, self._load, self._known_rows = examples, fingerprint, load, known_rows

    @cached_property
    def features(self) -> StoredFeatures:
        return self._load()

    @property
    def known_rows(self) -> int | None:
        """Rows (windows) if the features are built or loaded already, without building them (for plans)."""
        return len(self.features) if "features" in self.__dict__ else self._known_rows

    def __len__(self) -> int:
        return len(self.features)

    def __bool__(self) -> bool:
        """A split is there (truth must not ask for its length: that would build its features)."""
        return True


@dataclass
class TaskData:
    """A task's splits plus how to batch, predict and score them."""

    name: str
    task_type: str  # mrc | nli | sentiment | paraphrase
    train: Split | None
    dev: Split | None
    features_cfg: FeatureConfig

    @property
    def is_span(self) -> bool:
        return self.task_type == "mrc"

    @property
    def targets(self) -> tuple[str, ...]:
        return SPAN_TARGETS if self.is_span else ("labels",)

    def batch(self, split: Split, rows: Tensor, extra: dict[str, Any] | None = None,
              targets: bool = True) -> dict[str, Tensor]:
        """The model batch for ``rows`` of ``split`` (with targets unless ``targets=False``), plus per-row
        ``extra`` values (teacher soft targets: anything indexable by a tensor of rows)."""
        batch = split.features.batch(rows, targets, per_batch=self.per_batch)
        width = batch["input_ids"].shape[1]
        for key, value in (extra or {}).items():
            batch[key] = value[rows]
            if self.is_span and batch[key].dim() == 2:  # span soft targets: stored to max_seq_length
                batch[key] = batch[key][:, :width]
        return batch

    @property
    def per_batch(self) -> bool:
        """Span windows padded per batch (``features.span_padding: batch``), not to ``max_seq_length``."""
        return self.features_cfg.span_padding == "batch"

    def labels(self, split: Split) -> dict[str, Tensor]:
        """Gold targets of every row (start/end positions for spans, labels for classes)."""
        return split.features.labels()

    def score(self, split: Split, logits: dict[str, Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(metrics, predictions to save): official SQuAD 2.0 scoring or accuracy in percent."""
        if not self.is_span:
            preds = logits["logits"].argmax(-1)
            return {"acc": accuracy(preds, self.labels(split)["labels"])}, {"predictions": preds.tolist()}
        f = self.features_cfg
        preds, null_odds = squad_predictions(
            split.examples, split.features.column("example_index"), split.features.offsets,
            logits["start_logits"], logits["end_logits"], n_best_size=f.n_best_size,
            max_answer_length=f.max_answer_length, null_score_diff_threshold=f.null_score_diff_threshold,
            answer_selection=f.answer_selection,
        )
        metrics = dict(evaluate_examples(split.examples, preds, null_odds))
        return metrics, {"predictions": preds, "na_probs": null_odds}
