"""Training objectives: per-pass losses combined in one place and returned as a dict to log.

Span (MRC) heads are two classification problems, start and end, averaged as in BERT / ELECTRA.
With distillation the batch carries the teacher's per-feature logits (``teacher_start_logits`` /
``teacher_end_logits`` for spans, ``teacher_logits`` for classes), looked up from the soft-target
cache, so the student never runs a teacher:

* ``kd`` / ``weighted``: ``J = (1 - lam) * CE + lam * KL_T`` (Weighted KD only changes the teacher logits),
* ``annealing``: cross-entropy against ``progress * onehot + (1 - progress) * softmax(teacher)``.

``mask_padding`` (``features.span_padding: batch``) masks span logits at the batch's padding positions out of
every softmax (student, teacher, label smoothing), so a window trains alike whatever it is padded to; off, every
position of the window counts (the reference objective, ``span_padding: window``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from road_repro.distill import annealing_kd_loss, kd_loss
from road_repro.distill.losses import cross_entropy, kd_kl


@dataclass(frozen=True)
class Objective:
    """How a pass's loss is formed: plain CE (``distill=None``), KD, Weighted KD or teacher annealing."""

    distill: str | None = None
    temperature: float = 5.0
    lam: float = 0.9
    t2_scale: bool = True
    label_smoothing: float = 0.0
    mask_padding: bool = False  # span logits: padding positions out of the softmax (set from features.span_padding)

    def settings(self) -> dict[str, object]:
        """The fields that change the loss (for run configs), so that e.g. a plain-CE run is the same run
        whatever KD temperature the profile names, and a table's single models are also its teachers.
        (``mask_padding`` follows ``features.span_padding``, which every run config records.)"""
        if self.distill is None:
            return {"distill": None, "label_smoothing": self.label_smoothing}
        if self.distill == "annealing":
            return {"distill": "annealing"}
        out = asdict(self)
        out.pop("mask_padding")
        return out


def _one(objective: Objective, logits: Tensor, labels: Tensor, teacher: Tensor | None, progress: float,
         mask: Tensor | None = None) -> Tensor:
    if objective.distill is None:
        if mask is None:
            return F.cross_entropy(logits, labels, label_smoothing=objective.label_smoothing)
        return cross_entropy(logits, labels, objective.label_smoothing, mask)
    if teacher is None:
        raise KeyError("distillation objective but the batch carries no teacher logits")
    if objective.distill == "annealing":
        return annealing_kd_loss(logits, teacher, labels, progress, mask)
    return kd_loss(
        logits, teacher, labels, objective.temperature, objective.lam,
        t2_scale=objective.t2_scale, label_smoothing=objective.label_smoothing, mask=mask,
    )


def _terms(objective: Objective, logits: Tensor, labels: Tensor, teacher: Tensor | None,
           mask: Tensor | None = None) -> dict[str, Tensor]:
    """The loss terms logged per step (detached): ``ce`` against the hard labels and, for KD, the ``kd`` term
    (the temperature-softened KL, times ``T^2`` with ``t2_scale``), so that ``total = (1 - lam) ce + lam kd``;
    span logits at padding are masked as in the loss (``mask``)."""
    with torch.no_grad():
        terms = {"ce": cross_entropy(logits, labels, objective.label_smoothing, mask)}
        if objective.distill not in (None, "annealing") and teacher is not None:
            kl = kd_kl(logits, teacher, objective.temperature, mask)
            terms["kd"] = kl * objective.temperature**2 if objective.t2_scale else kl
    return terms


def pass_losses(objective: Objective, out: dict[str, Tensor], batch: dict[str, Tensor], progress: float) -> dict[str, Tensor]:
    """Losses of one pass; ``total`` is what is back-propagated, ``ce``/``kd`` are logged terms (:func:`_terms`)."""
    if "start_logits" in out:
        mask = batch["attention_mask"] if objective.mask_padding else None
        start = _one(objective, out["start_logits"], batch["start_positions"], batch.get("teacher_start_logits"),
                     progress, mask)
        end = _one(objective, out["end_logits"], batch["end_positions"], batch.get("teacher_end_logits"), progress, mask)
        sides = [_terms(objective, out[f"{s}_logits"], batch[f"{s}_positions"], batch.get(f"teacher_{s}_logits"), mask)
                 for s in ("start", "end")]
        return {"start": start, "end": end, "total": (start + end) / 2,
                **{k: (sides[0][k] + sides[1][k]) / 2 for k in sides[0]}}
    loss = _one(objective, out["logits"], batch["labels"], batch.get("teacher_logits"), progress)
    return {"total": loss, **_terms(objective, out["logits"], batch["labels"], batch.get("teacher_logits"))}
