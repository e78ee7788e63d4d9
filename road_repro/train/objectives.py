"""Training objectives: per-pass losses combined in one place and returned as a dict to log.

Span (MRC) heads are two classification problems, start and end, averaged as in BERT / ELECTRA.
With distillation the batch carries the teacher's per-feature logits (``teacher_start_logits`` /
``teacher_end_logits`` for spans, ``teacher_logits`` for classes), looked up from the soft-target
cache, so the student never runs a teacher:

* ``kd`` / ``weighted``: ``J = (1 - lam) * CE + lam * KL_T`` (Weighted KD only changes the teacher logits),
* ``annealing``: cross-entropy against ``progress * onehot + (1 - progress) * softmax(teacher)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from road_repro.distill import annealing_kd_loss, kd_loss
from road_repro.distill.losses import kd_kl


@dataclass(frozen=True)
class Objective:
    """How a pass's loss is formed: plain CE (``distill=None``), KD, Weighted KD or teacher annealing."""

    distill: str | None = None
    temperature: float = 5.0
    lam: float = 0.9
    t2_scale: bool = True
    label_smoothing: float = 0.0

    def settings(self) -> dict[str, object]:
        """The fields that change the loss (for run configs), so that e.g. a plain-CE run is the same run
        whatever KD temperature the profile names, and a table's single models are also its teachers."""
        if self.distill is None:
            return {"distill": None, "label_smoothing": self.label_smoothing}
        if self.distill == "annealing":
            return {"distill": "annealing"}
        return asdict(self)


def _one(objective: Objective, logits: Tensor, labels: Tensor, teacher: Tensor | None, progress: float) -> Tensor:
    if objective.distill is None:
        return F.cross_entropy(logits, labels, label_smoothing=objective.label_smoothing)
    if teacher is None:
        raise KeyError("distillation objective but the batch carries no teacher logits")
    if objective.distill == "annealing":
        return annealing_kd_loss(logits, teacher, labels, progress)
    return kd_loss(
        logits, teacher, labels, objective.temperature, objective.lam,
        t2_scale=objective.t2_scale, label_smoothing=objective.label_smoothing,
    )


def _terms(objective: Objective, logits: Tensor, labels: Tensor, teacher: Tensor | None) -> dict[str, Tensor]:
    """The loss terms logged per step (detached): ``ce`` against the hard labels and, for KD, the ``kd`` term
    (the temperature-softened KL, times ``T^2`` with ``t2_scale``), so that ``total = (1 - lam) ce + lam kd``."""
    with torch.no_grad():
        terms = {"ce": F.cross_entropy(logits, labels, label_smoothing=objective.label_smoothing)}
        if objective.distill not in (None, "annealing") and teacher is not None:
            kl = kd_kl(logits, teacher, objective.temperature)
            terms["kd"] = kl * objective.temperature**2 if objective.t2_scale else kl
    return terms


def pass_losses(objective: Objective, out: dict[str, Tensor], batch: dict[str, Tensor], progress: float) -> dict[str, Tensor]:
    """Losses of one pass; ``total`` is what is back-propagated, ``ce``/``kd`` are logged terms (:func:`_terms`)."""
    if "start_logits" in out:
        start = _one(objective, out["start_logits"], batch["start_positions"], batch.get("teacher_start_logits"), progress)
        end = _one(objective, out["end_logits"], batch["end_positions"], batch.get("teacher_end_logits"), progress)
        sides = [_terms(objective, out[f"{s}_logits"], batch[f"{s}_positions"], batch.get(f"teacher_{s}_logits"))
                 for s in ("start", "end")]
        return {"start": start, "end": end, "total": (start + end) / 2,
                **{k: (sides[0][k] + sides[1][k]) / 2 for k in sides[0]}}
    loss = _one(objective, out["logits"], batch["labels"], batch.get("teacher_logits"), progress)
    return {"total": loss, **_terms(objective, out["logits"], batch["labels"], batch.get("teacher_logits"))}
