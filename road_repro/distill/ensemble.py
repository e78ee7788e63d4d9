"""Teacher ensembles: the plain logit mean and the paper's Weighted KD (section 2.3, Algorithm 2).

Weighted KD, per example: a teacher is *correct* when its argmax equals the gold label. Incorrect
teachers' logits are scaled by ``w < 1``; correct ones by ``w_hat = (M - n_incorrect * w) / n_correct``,
so the weights still sum to ``M`` and ``sum(weights * logits) / M`` keeps the range of the plain mean.
An example no teacher gets right falls back to the plain mean (Algorithm 2 would divide by zero).
"""

from __future__ import annotations

import torch
from torch import Tensor

from road_repro.errors import ConfigError


def check_w(w: float) -> None:
    """Raise ConfigError unless the Weighted KD scale ``w`` lies in (0, 1]."""
    if not 0.0 < w <= 1.0:
        raise ConfigError(f"w={w} must lie in (0, 1]")


def _check_teachers(teacher_logits: Tensor) -> None:
    if teacher_logits.dim() != 3 or teacher_logits.shape[0] == 0:
        raise ConfigError(f"teacher_logits must have shape [M, B, C] with M >= 1, got {tuple(teacher_logits.shape)}")


def _as_labels(teacher_logits: Tensor, labels: Tensor, name: str) -> Tensor:
    labels = torch.as_tensor(labels, device=teacher_logits.device)
    if labels.dim() != 1 or labels.shape[0] != teacher_logits.shape[1]:
        raise ConfigError(
            f"{name} shape {tuple(labels.shape)} does not match teacher_logits shape {tuple(teacher_logits.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ConfigError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    return labels


def mean_teacher_logits(teacher_logits: Tensor) -> Tensor:
    """The plain ensemble: the mean of ``[M, B, C]`` teacher logits over the ``M`` teachers, ``[B, C]``."""
    _check_teachers(teacher_logits)
    return teacher_logits.mean(dim=0)


def weighted_kd_weights(teacher_logits: Tensor, labels: Tensor, w: float = 0.75) -> Tensor:
    """Algorithm 2's per-teacher, per-example weights ``[M, B]`` (vectorized; each column sums to ``M``).

    Incorrect teachers get ``w``, correct ones ``(M - n_incorrect * w) / n_correct``; a column with no
    correct teacher is all ones (the plain mean).
    """
    check_w(w)
    _check_teachers(teacher_logits)
    labels = _as_labels(teacher_logits, labels, "labels")
    m = teacher_logits.shape[0]
    correct = teacher_logits.argmax(dim=-1) == labels.unsqueeze(0)  # [M, B]
    n_correct = correct.sum(dim=0)  # [B]
    n_incorrect = m - n_correct
    w_hat = (m - n_incorrect * w) / n_correct.clamp(min=1)
    weights = torch.where(correct, w_hat.unsqueeze(0), torch.full_like(w_hat, w).unsqueeze(0))
    weights = torch.where(n_correct.unsqueeze(0) > 0, weights, torch.ones_like(weights))
    return weights.to(teacher_logits.dtype)


def weighted_teacher_logits(teacher_logits: Tensor, labels: Tensor, w: float = 0.75) -> Tensor:
    """Weighted KD soft-target logits ``[B, C]`` from ``[M, B, C]`` teacher logits and gold ``labels`` ``[B]``.

    ``sum_m weight[m, b] * logits[m, b] / M`` with the weights of :func:`weighted_kd_weights`, so the
    student leans on the teachers that got each example right.
    """
    weights = weighted_kd_weights(teacher_logits, labels, w)
    return (weights.unsqueeze(-1) * teacher_logits).sum(dim=0) / teacher_logits.shape[0]


def weighted_span_teacher_logits(
    start_logits: Tensor,
    end_logits: Tensor,
    start_positions: Tensor,
    end_positions: Tensor,
    w: float = 0.75,
) -> tuple[Tensor, Tensor]:
    """Weighted KD for span heads: start and end (``[M, B, L]`` each) are weighted as two separate problems.

    A teacher may be right about the start and wrong about the end of the same feature, so each side
    gets its own correctness and weights. Returns ``(start [B, L], end [B, L])``.
    """
    start = weighted_teacher_logits(start_logits, _as_labels(start_logits, start_positions, "start_positions"), w)
    end = weighted_teacher_logits(end_logits, _as_labels(end_logits, end_positions, "end_positions"), w)
    return start, end
