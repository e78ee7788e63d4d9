"""Teacher annealing (Clark et al. 2019, "BAM!"), the baseline of the paper's Table 5.

The target mixes gold and teacher: ``progress * onehot(label) + (1 - progress) * softmax(teacher)``,
where ``progress`` (the fraction of training done) rises linearly from 0 to 1: the student distills
from the teacher early on and relies on the hard labels by the end.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from road_repro.distill.losses import check_labels, check_logits_pair, check_mask, mask_padding, soft_cross_entropy
from road_repro.errors import ConfigError


def check_progress(progress: float) -> None:
    """Raise ConfigError unless the training ``progress`` lies in [0, 1]."""
    if not 0.0 <= progress <= 1.0:
        raise ConfigError(f"progress={progress} must lie in [0, 1]")


def annealed_targets(teacher_logits: Tensor, labels: Tensor, progress: float, mask: Tensor | None = None) -> Tensor:
    """Teacher-annealing target distributions ``[B, C]``: ``progress * onehot + (1 - progress) * softmax(teacher)``.

    Rows sum to 1; at ``progress=0`` they are the teacher's softmax, at ``progress=1`` the one-hot gold labels.
    With ``mask`` the teacher's softmax runs over the real positions only (0 on padding).
    """
    check_progress(progress)
    if teacher_logits.dim() != 2:
        raise ConfigError(f"teacher_logits must have shape [B, C], got {tuple(teacher_logits.shape)}")
    check_labels(teacher_logits, labels)
    check_mask(teacher_logits, mask, labels)
    teacher_probs = F.softmax(mask_padding(teacher_logits.detach(), mask), dim=-1)
    onehot = F.one_hot(labels, num_classes=teacher_logits.shape[-1]).to(teacher_probs.dtype)
    return progress * onehot + (1.0 - progress) * teacher_probs


def annealing_kd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, progress: float,
                      mask: Tensor | None = None) -> Tensor:
    """Soft cross-entropy of the student against :func:`annealed_targets`, averaged over the batch (``mask``:
    real span positions, for student and teacher alike)."""
    check_logits_pair(student_logits, teacher_logits, "teacher_logits")
    return soft_cross_entropy(student_logits, annealed_targets(teacher_logits, labels, progress, mask), mask)
