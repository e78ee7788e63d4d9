"""Hidden-state distillation in the training loop (ROaD-Base blog, section 4.3).

Hidden states are too large to cache, so the teacher runs inside every step. The finetuning stage:

1. ``hidden_kd = attach_hidden_kd(student, teacher, last_layer_only)`` -- builds the projection and layer
   pairs from the two models and assigns them to ``student.distill_projection`` (trained with the student,
   saved in its ``model.safetensors``, unused at evaluation);
2. ``loss_fn = make_hidden_kd_loss_fn(objective, hidden_kd, teacher, hidden_weight)`` -- the loop's
   ``loss_fn``: ``total = logits part + hidden_weight * hidden MSE``, where the logits part is
   :func:`~road_repro.train.objectives.pass_losses` of ``objective`` (plain CE, or logits KD with the
   cached teacher logits in the batch).

The teacher runs in eval mode (no dropout), without gradients, on the student's device and under the
loop's autocast (``loss_fn`` is called inside it), so in the same precision as the student.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from road_repro.distill import HiddenStateKD
from road_repro.errors import ConfigError, TrainingError
from road_repro.models.model import DISTILL_HIDDEN, RoadModel
from road_repro.train.loop import MODEL_INPUTS, LossFn, Pass
from road_repro.train.objectives import Objective, pass_losses


def attach_hidden_kd(student: RoadModel, teacher: RoadModel, last_layer_only: bool) -> HiddenStateKD:
    """A fresh :class:`HiddenStateKD` for this student/teacher pair, attached as ``student.distill_projection``.

    Call it after the student's weights are initialised (and before :func:`~road_repro.train.loop.train`,
    which builds the optimizer and resumes checkpoints with the projection in place).
    """
    hidden_kd = HiddenStateKD(
        int(student.encoder.config.hidden_size), int(teacher.encoder.config.hidden_size),
        student.num_layers, teacher.num_layers, last_layer_only,
    )
    student.distill_projection = hidden_kd
    return hidden_kd


@torch.no_grad()
def teacher_hidden_states(teacher: RoadModel, batch: Mapping[str, Tensor]) -> tuple[Tensor, ...]:
    """The teacher encoder's hidden states (embedding output first) on ``batch``'s encoder inputs.

    Eval mode, no gradients, moved to the batch's device if needed; any active autocast applies (inside
    the loop's ``loss_fn``, the student's).
    """
    device = batch["input_ids"].device
    if next(teacher.parameters()).device != device:
        teacher.to(device)
    teacher.eval()
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    return tuple(teacher.encoder(**inputs, output_hidden_states=True).hidden_states)


def make_hidden_kd_loss_fn(objective: Objective, hidden_kd: HiddenStateKD, teacher: RoadModel,
                           hidden_weight: float) -> LossFn:
    """The loop's ``loss_fn`` for hidden-state KD, alone (``objective`` plain CE) or with logits KD.

    Returns ``pass_losses``' keys plus ``logits_loss`` (its total), ``hidden_mse`` and
    ``total = logits_loss + hidden_weight * hidden_mse``. ``hidden_kd`` must be the module attached to the
    student (:func:`attach_hidden_kd`); the teacher is frozen (no gradients) and never becomes part of the
    student. Pass the teacher to :func:`~road_repro.train.loop.train` as ``in_step_teacher`` too, so the
    automatic ``max_rows_per_device`` leaves room for it on the GPU.
    """
    if not hidden_weight > 0:
        raise ConfigError(f"hidden_weight={hidden_weight} must be > 0")
    teacher.requires_grad_(False).eval()

    def loss_fn(out: dict[str, Tensor], pass_: Pass, progress: float) -> dict[str, Tensor]:
        if DISTILL_HIDDEN not in out:
            raise TrainingError("hidden-state KD needs the student's projected hidden states: attach the projection "
                                "(attach_hidden_kd) and train the student in training mode")
        losses = pass_losses(objective, out, pass_.batch, progress)
        teacher_hidden = teacher_hidden_states(teacher, pass_.batch)
        hidden = hidden_kd.loss(out[DISTILL_HIDDEN], teacher_hidden, pass_.batch.get("attention_mask"))
        return {**losses, "logits_loss": losses["total"], "hidden_mse": hidden,
                "total": losses["total"] + hidden_weight * hidden}

    return loss_fn
