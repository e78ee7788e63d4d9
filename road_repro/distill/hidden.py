"""Hidden-state distillation (ROaD-Base blog, section 4.3; TinyBERT's uniform layer mapping).

The student's hidden states are projected to the teacher's width by a learned linear map and matched
to the teacher's with mean-squared error. Layers are paired uniformly (student layer ``i`` to teacher
layer ``i * n_teacher / n_student``: 12 vs 24 layers pairs 12->24, 11->22, ..., 1->2), or only the last
layers are matched. Hidden-state lists follow Hugging Face ``output_hidden_states``: index 0 is the
embedding output, so transformer layer ``i`` is index ``i``.

:func:`hidden_state_loss` is the functional form for any layer map; :class:`HiddenStateKD` is what
training uses (the student's projection as a module, with embeddings paired to embeddings as in TinyBERT).
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
    if not bool((weights.sum(dim=1) > 0).all()):
        raise ConfigError("attention_mask has a row without a non-padding token: nothing to distill there")
    return weights


def _paired_mse(
    projected: Sequence[Tensor], teacher: Sequence[Tensor], pairs: Sequence[tuple[int, int]],
    attention_mask: Tensor | None,
) -> Tensor:
    """Mean over ``pairs`` of the masked MSE between ``projected[k]`` and ``teacher[k]`` (computed in fp32).

    Per pair, the squared error is averaged over the hidden dimension, then over each row's tokens where
    ``attention_mask`` is 1 (all tokens without a mask), then over the rows. Averaging per row, like the
    cross-entropy, keeps the loss a mean over examples, so a batch split into shards (data parallelism)
    gives the same gradient as the whole batch. Teacher states are targets (detached).
    """
    reference = projected[0]
    if reference.dim() != 3:
        raise ConfigError(f"student hidden states must have shape [B, L, H], got {tuple(reference.shape)}")
    batch, length, _ = reference.shape
    weights = _token_weights(attention_mask, batch, length, reference.float())
    losses = []
    for (s, t), student, target in zip(pairs, projected, teacher, strict=True):
        if student.shape != target.shape or student.shape[:2] != (batch, length):
            raise ConfigError(
                f"layer pair ({s}, {t}): projected student shape {tuple(student.shape)} differs from teacher shape "
                f"{tuple(target.shape)} (both must be [B, L, H_teacher] with [B, L] = {(batch, length)})"
            )
        per_token = (student.float() - target.detach().float()).pow(2).mean(dim=-1)  # [B, L]
        losses.append(((per_token * weights).sum(dim=1) / weights.sum(dim=1)).mean())
    return torch.stack(losses).mean()


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
    dimension, over each row's tokens where ``attention_mask`` is 1 (all tokens without a mask) and over
    the rows; the pairs' losses are then averaged. ``last_layer_only`` matches only the last student layer
    to the last teacher layer and ignores ``layer_map``. Teacher states are targets (detached).
    """
    pairs = _layer_pairs(len(student_hidden), len(teacher_hidden), layer_map, last_layer_only)
    projected = [projection(student_hidden[s]) for s, _ in pairs]
    return _paired_mse(projected, [teacher_hidden[t] for _, t in pairs], pairs, attention_mask)


class HiddenStateKD(nn.Module):
    """Hidden-state distillation for one student/teacher pair: the learned projection and the layer pairs.

    Pairs (indices into ``output_hidden_states``, 0 = embedding output):

    * all layers (``last_layer_only=False``): embeddings to embeddings, then the uniform map
      ``(j, j * teacher_layers / student_layers)`` for ``j = 1..student_layers`` (TinyBERT; 24/12 layers
      pairs 0->0, 1->2, ..., 12->24). One projection is shared by every pair.
    * last layer only: ``(student_layers, teacher_layers)``.

    Attached to the student as ``RoadModel.distill_projection``, it is trained with the student's head
    rate (outside ``encoder.``) and saved in its ``model.safetensors``. The student's forward calls it in
    training mode (``forward``: project the mapped student states) so that data-parallel training sees the
    projection used inside the forward; :meth:`loss` then compares with the teacher's states.
    """

    def __init__(self, student_width: int, teacher_width: int, student_layers: int, teacher_layers: int,
                 last_layer_only: bool = False):
        super().__init__()
        self.projection = HiddenStateProjection(student_width, teacher_width)
        self.student_layers, self.teacher_layers = student_layers, teacher_layers
        if last_layer_only:
            if student_layers < 1 or teacher_layers < 1:
                raise ConfigError(f"student_layers={student_layers} and teacher_layers={teacher_layers} must be >= 1")
            self.pairs: tuple[tuple[int, int], ...] = ((student_layers, teacher_layers),)
        else:
            self.pairs = ((0, 0), *uniform_layer_map(student_layers, teacher_layers))

    def _check_states(self, states: Sequence[Tensor], layers: int, who: str) -> None:
        if len(states) != layers + 1:
            raise ConfigError(
                f"{len(states)} {who} hidden states, expected {layers + 1} (embeddings + {layers} layers)"
            )

    def forward(self, student_hidden: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """The student's states at the paired layers, projected to the teacher's width (one per pair)."""
        self._check_states(student_hidden, self.student_layers, "student")
        return tuple(self.projection(student_hidden[s]) for s, _ in self.pairs)

    def loss(
        self, projected: Sequence[Tensor], teacher_hidden: Sequence[Tensor], attention_mask: Tensor | None
    ) -> Tensor:
        """Masked MSE between :meth:`forward`'s output and the teacher's paired states, averaged over pairs.

        Padding (``attention_mask == 0``) is excluded: per pair, the squared error is averaged over the
        teacher's hidden dimension, over each row's real tokens, then over the rows (every example weighs the
        same, as in the cross-entropy, so data-parallel shards average to the whole batch's loss); ``None``
        counts every token. Computed in fp32; the teacher's states are detached targets.
        """
        self._check_states(teacher_hidden, self.teacher_layers, "teacher")
        if len(projected) != len(self.pairs):
            raise ConfigError(f"{len(projected)} projected student states for {len(self.pairs)} layer pairs")
        return _paired_mse(projected, [teacher_hidden[t] for _, t in self.pairs], self.pairs, attention_mask)
