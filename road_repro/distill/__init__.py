"""Knowledge distillation: KD losses, teacher ensembles (mean, Weighted KD), teacher annealing,
hidden-state distillation and the on-disk soft-target cache."""

from road_repro.distill.annealing import annealed_targets, annealing_kd_loss
from road_repro.distill.cache import load_soft_targets, save_soft_targets, stack_teachers
from road_repro.distill.ensemble import (
    mean_teacher_logits,
    weighted_kd_weights,
    weighted_span_teacher_logits,
    weighted_teacher_logits,
)
from road_repro.distill.hidden import HiddenStateKD, HiddenStateProjection, hidden_state_loss, uniform_layer_map
from road_repro.distill.losses import kd_kl, kd_loss, soft_cross_entropy

__all__ = [
    "HiddenStateKD",
    "HiddenStateProjection",
    "annealed_targets",
    "annealing_kd_loss",
    "hidden_state_loss",
    "kd_kl",
    "kd_loss",
    "load_soft_targets",
    "mean_teacher_logits",
    "save_soft_targets",
    "soft_cross_entropy",
    "stack_teachers",
    "uniform_layer_map",
    "weighted_kd_weights",
    "weighted_span_teacher_logits",
    "weighted_teacher_logits",
]
