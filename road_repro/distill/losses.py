"""Logit distillation losses (paper section 2.2, Hinton et al. 2015).

``J = (1 - lam) * CE(student, hard labels) + lam * KL(softmax(teacher / T) || softmax(student / T))``,
with the same temperature ``T`` for teacher and student. Every loss here takes logits of shape
``[B, C]`` and returns a batch mean; span heads are two such problems (start and end), so the caller
calls these once per side. Teacher logits are targets: they are detached, gradients reach the student only.

Span heads score every position of a window; with ``mask`` (the batch's ``attention_mask``, ``[B, C]``)
the positions where it is 0 (padding) leave the softmax of the student *and* of the teacher, and the
label-smoothed CE spreads its mass over the real positions only, so a window's loss and gradients do not
depend on how far it is padded (to its batch or to ``max_seq_length``). Masked logits are set to the
dtype's most negative finite value, not ``-inf``: ``exp`` gives exactly 0 and no ``inf - inf`` can NaN.
Without ``mask`` every position counts (the reference code's objective, ``features.span_padding: window``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from road_repro.errors import ConfigError


def check_temperature(temperature: float) -> None:
    """Raise ConfigError unless the softmax temperature is a finite number > 0."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature={temperature} must be a finite number > 0")


def check_lam(lam: float) -> None:
    """Raise ConfigError unless the KD weight ``lam`` lies in [0, 1]."""
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"lam={lam} must lie in [0, 1]")


def check_label_smoothing(label_smoothing: float) -> None:
    """Raise ConfigError unless ``label_smoothing`` lies in [0, 1] (what torch's cross-entropy accepts)."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise ConfigError(f"label_smoothing={label_smoothing} must lie in [0, 1]")


def check_logits_pair(student_logits: Tensor, other: Tensor, other_name: str) -> None:
    """Raise ConfigError unless ``student_logits`` is ``[B, C]`` and ``other`` has exactly its shape."""
    if student_logits.dim() != 2:
        raise ConfigError(f"student_logits must have shape [B, C], got {tuple(student_logits.shape)}")
    if other.shape != student_logits.shape:
        raise ConfigError(
            f"{other_name} shape {tuple(other.shape)} differs from student_logits shape {tuple(student_logits.shape)}"
        )


def check_labels(logits: Tensor, labels: Tensor) -> None:
    """Raise ConfigError unless ``labels`` is an integer tensor ``[B]`` of class indices into ``logits`` ``[B, C]``."""
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise ConfigError(f"labels shape {tuple(labels.shape)} does not match logits shape {tuple(logits.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex:
        raise ConfigError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[-1]):
        raise ConfigError(
            f"labels must lie in [0, {logits.shape[-1]}) for logits shape {tuple(logits.shape)}, "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )


def check_mask(logits: Tensor, mask: Tensor | None, labels: Tensor | None = None) -> None:
    """Raise ConfigError unless ``mask`` is None or a ``[B, C]`` mask like ``logits`` with a real position per row
    and, given ``labels`` (class indices ``[B]``), every label on a real position.

    A label on a masked (padding) position would be scored against a logit set to the dtype's most negative
    value: a finite loss of ~1e38 instead of an error, so it is refused here, naming the first such row.
    """
    if mask is None:
        return
    if mask.shape != logits.shape:
        raise ConfigError(f"mask shape {tuple(mask.shape)} differs from logits shape {tuple(logits.shape)}")
    real = mask.to(logits.device) != 0
    if mask.numel() and not bool(real.any(-1).all()):
        raise ConfigError("mask has a row without a real (non-padding) position")
    if labels is not None and labels.numel():
        check_labels(logits, labels)
        on_padding = ~real.gather(-1, labels.to(real.device).long().unsqueeze(-1)).squeeze(-1)
        if bool(on_padding.any()):
            row = int(on_padding.nonzero()[0, 0])
            raise ConfigError(
                f"label {int(labels[row])} of row {row} falls on a padding position (attention_mask 0 there, "
                f"{int(real[row].sum())} real positions): a span label must point into the window's real tokens"
            )


def mask_padding(logits: Tensor, mask: Tensor | None) -> Tensor:
    """``logits`` with the positions where ``mask`` is 0 set to the dtype's most negative finite value
    (softmax 0 there, no gradient); ``logits`` itself without a mask."""
    if mask is None:
        return logits
    return logits.masked_fill(mask.to(logits.device) == 0, torch.finfo(logits.dtype).min)


def cross_entropy(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0, mask: Tensor | None = None) -> Tensor:
    """Hard-label CE averaged over the batch; with ``mask``, over the real positions only.

    torch's label smoothing is ``(1 - eps) * nll + eps * mean_c(-log p_c)`` over all ``C`` classes; with a
    mask the mean runs over each row's real positions, so padding adds nothing.
    """
    check_mask(logits, mask, labels)
    if mask is None or label_smoothing == 0.0:
        return F.cross_entropy(mask_padding(logits, mask), labels, label_smoothing=label_smoothing)
    real = (mask.to(logits.device) != 0).to(logits.dtype)
    log_p = F.log_softmax(mask_padding(logits, mask), dim=-1)
    nll = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    smooth = -(log_p * real).sum(-1) / real.sum(-1)
    return ((1.0 - label_smoothing) * nll + label_smoothing * smooth).mean()


def soft_cross_entropy(student_logits: Tensor, target_probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cross-entropy of the student against a target distribution per example, averaged over the batch.

    ``-sum_c p_c log softmax(student)_c``; the building block of teacher annealing (targets mix gold
    and teacher). The targets are detached: they are fixed for this step.
    """
    check_logits_pair(student_logits, target_probs, "target_probs")
    check_mask(student_logits, mask)
    return F.cross_entropy(mask_padding(student_logits, mask), target_probs.detach().to(student_logits.dtype))


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float, mask: Tensor | None = None) -> Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))`` summed over classes, averaged over the batch.

    The soft-target term of KD (no ``T^2`` factor; :func:`kd_loss` adds it on request). With ``mask`` both
    distributions live on the real positions only (teacher soft targets are masked on read).
    """
    check_temperature(temperature)
    check_logits_pair(student_logits, teacher_logits, "teacher_logits")
    check_mask(student_logits, mask)
    student_log_p = F.log_softmax(mask_padding(student_logits, mask) / temperature, dim=-1)
    teacher = mask_padding(teacher_logits.detach().to(student_logits.dtype), mask)
    teacher_log_p = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(student_log_p, teacher_log_p, reduction="batchmean", log_target=True)


def kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float,
    t2_scale: bool = False,
    label_smoothing: float = 0.0,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The two terms of :func:`kd_loss`, each computed once and with gradients: the hard-label CE and the
    soft-target KL (times ``T^2`` with ``t2_scale``), so a caller can log them and combine them without
    recomputing either. Shapes and settings are checked before any compute."""
    check_temperature(temperature)
    check_label_smoothing(label_smoothing)
    check_logits_pair(student_logits, teacher_logits, "teacher_logits")
    check_labels(student_logits, labels)
    ce = cross_entropy(student_logits, labels, label_smoothing, mask)
    kl = kd_kl(student_logits, teacher_logits, temperature, mask)
    if t2_scale:
        kl = kl * temperature * temperature
    return ce, kl


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float,
    lam: float,
    t2_scale: bool = False,
    label_smoothing: float = 0.0,
    mask: Tensor | None = None,
) -> Tensor:
    """The paper's KD objective ``(1 - lam) * CE(student, labels) + lam * KL_T(teacher || student)``.

    ``t2_scale`` multiplies the KL term by ``T^2`` (Hinton et al.: keeps soft-target gradients the same
    size as ``T`` changes); ``label_smoothing`` goes to the hard-label CE term (paper Table 3).
    ``mask``: real positions of span logits (see the module docstring). All settings and shapes are checked
    before any compute (:func:`kd_terms`).
    """
    check_lam(lam)
    ce, kl = kd_terms(student_logits, teacher_logits, labels, temperature, t2_scale, label_smoothing, mask)
    return (1.0 - lam) * ce + lam * kl
