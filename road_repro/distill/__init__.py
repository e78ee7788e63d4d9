"""Knowledge distillation: KD losses, teacher ensembles (mean, Weighted KD), teacher annealing,
hidden-state distillation, the on-disk soft-target cache (float16, memory-mapped) and the per-batch teacher
targets read from it."""

from road_repro.distill.annealing import annealed_targets, annealing_kd_loss
from road_repro.distill.cache import (
    SOFT_TARGET_DTYPE,
    SoftTargetFile,
    dtype_name,
    open_soft_targets,
    save_soft_targets,
    write_soft_targets,
)
from road_repro.distill.ensemble import (
    mean_teacher_logits,
    weighted_kd_weights,
    weighted_span_teacher_logits,
    weighted_teacher_logits,
)
from road_repro.distill.hidden import HiddenStateKD, HiddenStateProjection, hidden_state_loss, uniform_layer_map
from road_repro.distill.losses import kd_kl, kd_loss, soft_cross_entropy
from road_repro.distill.targets import TeacherTargets

__all__ = [
    "SOFT_TARGET_DTYPE",
    "HiddenStateKD",
    "HiddenStateProjection",
    "SoftTargetFile",
    "TeacherTargets",
    "annealed_targets",
    "annealing_kd_loss",
    "dtype_name",
    "hidden_state_loss",
    "kd_kl",
    "kd_loss",
    "mean_teacher_logits",
    "open_soft_targets",
    "save_soft_targets",
    "soft_cross_entropy",
    "uniform_layer_map",
    "weighted_kd_weights",
    "weighted_span_teacher_logits",
    "weighted_teacher_logits",
    "write_soft_targets",
]
