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
from torch import Tensor

from road_repro.distill import annealing_kd_loss
from road_repro.distill.losses import check_lam, cross_entropy, kd_terms


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
         mask: Tensor | None = None) -> dict[str, Tensor]:
    """One classification problem's loss ``total`` (back-propagated) and its logged terms, each computed once:
    ``ce`` against the hard labels (with the objective's label smoothing) and, for KD, ``kd`` (the
    temperature-softened KL, times ``T^2`` with ``t2_scale``), so that ``total = (1 - lam) ce + lam kd``.
    Teacher annealing's ``total`` is the soft CE against its mixed targets, logged beside the hard-label ``ce``.
    Span logits at padding are masked out (``mask``)."""
    if objective.distill is None:
        ce = cross_entropy(logits, labels, objective.label_smoothing, mask)
        return {"total": ce, "ce": ce.detach()}
    if teacher is None:
        raise KeyError("distillation objective but the batch carries no teacher logits")
    if objective.distill == "annealing":
        total = annealing_kd_loss(logits, teacher, labels, progress, mask)
        with torch.no_grad():
            return {"total": total, "ce": cross_entropy(logits, labels, objective.label_smoothing, mask)}
    check_lam(objective.lam)
    ce, kd = kd_terms(logits, teacher, labels, objective.temperature, objective.t2_scale,
                      objective.label_smoothing, mask)
    return {"total": (1.0 - objective.lam) * ce + objective.lam * kd, "ce": ce.detach(), "kd": kd.detach()}


def pass_losses(objective: Objective, out: dict[str, Tensor], batch: dict[str, Tensor], progress: float) -> dict[str, Tensor]:
    """Losses of one pass; ``total`` is what is back-propagated, ``ce``/``kd`` are logged terms (:func:`_one`);
    a span head's are the means of its start and end sides (and ``start``/``end`` their totals)."""
    if "start_logits" in out:
        mask = batch["attention_mask"] if objective.mask_padding else None
        start, end = (_one(objective, out[f"{s}_logits"], batch[f"{s}_positions"], batch.get(f"teacher_{s}_logits"),
                           progress, mask) for s in ("start", "end"))
        return {"start": start["total"], "end": end["total"], **{k: (start[k] + end[k]) / 2 for k in start}}
    return _one(objective, out["logits"], batch["labels"], batch.get("teacher_logits"), progress)
