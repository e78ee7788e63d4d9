"""Hidden-state distillation (ROaD-Base blog, section 4.3; TinyBERT's uniform layer mapping).

The student's hidden states are projected to the teacher's width by a learned linear map and matched
to the teacher's with mean-squared error. Layers are paired uniformly (student layer ``i`` to teacher
layer ``i * n_teacher / n_student``: 12 vs 24 layers pairs 12->24, 11->22, ..., 1->2), or only the last
layers are matched. Hidden-state lists follow Hugging Face ``output_hidden_states``: index 0 is the
embedding output, so transformer layer ``i`` is index ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from road_repro.errors import ConfigError


def uniform_layer_map(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Pairs ``(student_layer, teacher_layer)`` for layers ``1..n_student``: ``i -> i * n_teacher // n_student``.

    Requires ``1 <= n_student <= n_teacher`` and ``n_teacher`` a multiple of ``n_student``, so every
    student layer gets a teacher layer at the same relative depth.
    """
    if n_student < 1 or n_teacher < 1:
        raise ConfigError(f"n_student={n_student} and n_teacher={n_teacher} must both be >= 1")
    if n_student > n_teacher:
        raise ConfigError(f"n_student={n_student} must not exceed n_teacher={n_teacher}")
    if n_teacher % n_student != 0:
        raise ConfigError(f"n_teacher={n_teacher} must be a multiple of n_student={n_student}")
    return [(i, i * n_teacher // n_student) for i in range(1, n_student + 1)]


class HiddenStateProjection(nn.Module):
    """A learned ``Linear(student_hidden -> teacher_hidden)`` lifting student hidden states to the teacher's width."""

    def __init__(self, student_hidden: int, teacher_hidden: int):
        super().__init__()
        if student_hidden < 1 or teacher_hidden < 1:
            raise ConfigError(
                f"student_hidden={student_hidden} and teacher_hidden={teacher_hidden} must both be >= 1"
            )
        if student_hidden > teacher_hidden:
            raise ConfigError(
                f"student_hidden={student_hidden} > teacher_hidden={teacher_hidden}: the projection lifts a "
                "student to the teacher's width; a student wider than the projection's output is not supported"
            )
        self.proj = nn.Linear(student_hidden, teacher_hidden)

    def forward(self, hidden: Tensor) -> Tensor:
        """Project ``[..., student_hidden]`` to ``[..., teacher_hidden]``."""
        return self.proj(hidden)


def _layer_pairs(
    n_student_states: int, n_teacher_states: int, layer_map: Sequence[tuple[int, int]], last_layer_only: bool
) -> list[tuple[int, int]]:
    if last_layer_only:
        return [(n_student_states - 1, n_teacher_states - 1)]
    if not layer_map:
        raise ConfigError("layer_map is empty: no layers to distill")
    for s, t in layer_map:
        if not (0 <= s < n_student_states and 0 <= t < n_teacher_states):
            raise ConfigError(
                f"layer_map pair ({s}, {t}) is out of range for {n_student_states} student and "
                f"{n_teacher_states} teacher hidden states (index 0 is the embedding output)"
            )
    return list(layer_map)


def _token_weights(attention_mask: Tensor | None, batch: int, length: int, like: Tensor) -> Tensor:
    if attention_mask is None:
        return torch.ones(batch, length, dtype=like.dtype, device=like.device)
    if tuple(attention_mask.shape) != (batch, length):
        raise ConfigError(f"attention_mask shape {tuple(attention_mask.shape)} is not [B, L] = {(batch, length)}")
    weights = attention_mask.to(device=like.device, dtype=like.dtype)
    if not weights.sum() > 0:
        raise ConfigError("attention_mask has no non-padding token: nothing to distill")
    return weights


def hidden_state_loss(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    projection: HiddenStateProjection,
    layer_map: Sequence[tuple[int, int]],
    attention_mask: Tensor | None = None,
    last_layer_only: bool = False,
) -> Tensor:
    """MSE between projected student and mapped teacher hidden states, averaged over layers and real tokens.

    ``student_hidden`` / ``teacher_hidden`` are ``output_hidden_states`` tuples (``[B, L, Hs]`` /
    ``[B, L, Ht]``, embeddings at index 0). Per mapped pair, the squared error is averaged over the hidden
    dimension and over the tokens where ``attention_mask`` is 1 (all tokens without a mask); the pairs'
    losses are then averaged. ``last_layer_only`` matches only the last student layer to the last teacher
    layer and ignores ``layer_map``. Teacher states are targets (detached).
    """
    pairs = _layer_pairs(len(student_hidden), len(teacher_hidden), layer_map, last_layer_only)
    reference = student_hidden[pairs[0][0]]
    if reference.dim() != 3:
        raise ConfigError(f"student hidden states must have shape [B, L, H], got {tuple(reference.shape)}")
    batch, length, _ = reference.shape
    weights = _token_weights(attention_mask, batch, length, reference)
    losses = []
    for s, t in pairs:
        student, teacher = student_hidden[s], teacher_hidden[t].detach()
        if student.shape[:2] != (batch, length) or teacher.shape[:2] != (batch, length):
            raise ConfigError(
                f"layer pair ({s}, {t}): student shape {tuple(student.shape)} and teacher shape "
                f"{tuple(teacher.shape)} must share [B, L] = {(batch, length)}"
            )
        projected = projection(student)
        if projected.shape != teacher.shape:
            raise ConfigError(
                f"layer pair ({s}, {t}): projected student shape {tuple(projected.shape)} differs from "
                f"teacher shape {tuple(teacher.shape)}"
            )
        per_token = (projected - teacher.to(projected.dtype)).pow(2).mean(dim=-1)  # [B, L]
        losses.append((per_token * weights).sum() / weights.sum())
    return torch.stack(losses).mean()
