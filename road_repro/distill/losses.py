"""Logit distillation losses (paper section 2.2, Hinton et al. 2015).

``J = (1 - lam) * CE(student, hard labels) + lam * KL(softmax(teacher / T) || softmax(student / T))``,
with the same temperature ``T`` for teacher and student. Every loss here takes logits of shape
``[B, C]`` and returns a batch mean; span heads are two such problems (start and end), so the caller
calls these once per side. Teacher logits are targets: they are detached, gradients reach the student only.
"""

from __future__ import annotations

import math

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


def soft_cross_entropy(student_logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross-entropy of the student against a target distribution per example, averaged over the batch.

    ``-sum_c p_c log softmax(student)_c``; the building block of teacher annealing (targets mix gold
    and teacher). The targets are detached: they are fixed for this step.
    """
    check_logits_pair(student_logits, target_probs, "target_probs")
    return F.cross_entropy(student_logits, target_probs.detach().to(student_logits.dtype))


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))`` summed over classes, averaged over the batch.

    The soft-target term of KD (no ``T^2`` factor; :func:`kd_loss` adds it on request).
    """
    check_temperature(temperature)
    check_logits_pair(student_logits, teacher_logits, "teacher_logits")
    student_log_p = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_p = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / temperature, dim=-1)
    return F.kl_div(student_log_p, teacher_log_p, reduction="batchmean", log_target=True)


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    temperature: float,
    lam: float,
    t2_scale: bool = False,
    label_smoothing: float = 0.0,
) -> Tensor:
    """The paper's KD objective ``(1 - lam) * CE(student, labels) + lam * KL_T(teacher || student)``.

    ``t2_scale`` multiplies the KL term by ``T^2`` (Hinton et al.: keeps soft-target gradients the same
    size as ``T`` changes); ``label_smoothing`` goes to the hard-label CE term (paper Table 3).
    All settings and shapes are checked before any compute.
    """
    check_lam(lam)
    check_temperature(temperature)
    check_label_smoothing(label_smoothing)
    check_logits_pair(student_logits, teacher_logits, "teacher_logits")
    check_labels(student_logits, labels)
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    kl = kd_kl(student_logits, teacher_logits, temperature)
    if t2_scale:
        kl = kl * temperature * temperature
    return (1.0 - lam) * ce + lam * kl
