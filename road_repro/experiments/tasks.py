"""Task data for stages: examples, tokenized features and scoring, for span QA and classification alike.

A :class:`TaskData` hides the two shapes behind one interface: ``batch(split, rows)`` gives a model
batch (fixed-length QA features; dynamically padded sentence pairs), ``predict_inputs(split)`` the rows to
run a model over, ``score(examples, logits)`` the task's metrics (official SQuAD 2.0 scoring or accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from road_repro.config import FeatureConfig
from road_repro.data.features import pad_collate
from road_repro.data.schema import LABELS, ClassificationExample, QAExample
from road_repro.evaluate.accuracy import accuracy
from road_repro.evaluate.postprocess import squad_predictions
from road_repro.evaluate.squad_v2 import evaluate_examples

SPAN_TARGETS = ("start_positions", "end_positions")


def head_kind(task_type: str) -> str | int:
    """``"span"`` for MRC, else the number of classes of the task type."""
    return "span" if task_type == "mrc" else len(LABELS[task_type])


@dataclass
class Split:
    """One split's examples and features (QA: tensors of equal length; classification: unpadded lists)."""

    examples: list[QAExample] | list[ClassificationExample]
    features: dict[str, Any]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.features["input_ids"])


@dataclass
class TaskData:
    """A task's splits plus how to batch, predict and score them."""

    name: str
    task_type: str  # mrc | nli | sentiment | paraphrase
    train: Split | None
    dev: Split | None
    pad_token_id: int
    features_cfg: FeatureConfig

    @property
    def is_span(self) -> bool:
        return self.task_type == "mrc"

    @property
    def targets(self) -> tuple[str, ...]:
        return SPAN_TARGETS if self.is_span else ("labels",)

    def batch(self, split: Split, rows: Tensor, extra: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The model batch for ``rows`` of ``split``, with per-row ``extra`` tensors (teacher logits) added."""
        if self.is_span:
            keep = ("input_ids", "attention_mask", "token_type_ids", *SPAN_TARGETS)
            batch = {k: split.features[k][rows] for k in keep if k in split.features}
        else:
            idx = rows.tolist()
            batch = pad_collate([{k: split.features[k][i] for k in split.features} for i in idx], self.pad_token_id)
        for key, value in (extra or {}).items():
            batch[key] = value[rows]
        return batch

    def predict_inputs(self, split: Split) -> dict[str, Tensor]:
        """All rows of ``split`` as model inputs (classification padded to the split's longest row)."""
        if self.is_span:
            return {k: v for k, v in split.features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return self.batch(split, torch.arange(len(split)))

    def labels(self, split: Split) -> dict[str, Tensor]:
        """Gold targets of every row (start/end positions for spans, labels for classes)."""
        if self.is_span:
            return {k: split.features[k] for k in SPAN_TARGETS}
        return {"labels": torch.tensor(split.features["labels"])}

    def score(self, split: Split, logits: dict[str, Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(metrics, predictions to save): official SQuAD 2.0 scoring or accuracy in percent."""
        if not self.is_span:
            preds = logits["logits"].argmax(-1)
            return {"acc": accuracy(preds, self.labels(split)["labels"])}, {"predictions": preds.tolist()}
        f = self.features_cfg
        preds, null_odds = squad_predictions(
            split.examples, split.features["example_index"], split.features["offsets"],
            logits["start_logits"], logits["end_logits"], n_best_size=f.n_best_size,
            max_answer_length=f.max_answer_length, null_score_diff_threshold=f.null_score_diff_threshold,
            answer_selection=f.answer_selection,
        )
        metrics = dict(evaluate_examples(split.examples, preds, null_odds))
        return metrics, {"predictions": preds, "na_probs": null_odds}
