"""Soft targets per batch: the teachers' ensemble (mean or Weighted KD) computed for a batch's rows only.

A student batch needs teacher logits for its ``B`` rows, not for the whole training set. A
:class:`TeacherTargets` holds the ``M`` teachers' memory-mapped caches (:class:`~road_repro.distill.cache.SoftTargetFile`)
and, for Weighted KD, a reference to the gold labels; indexing it with a batch's rows reads ``M x B`` rows
from the maps and combines them with :func:`mean_teacher_logits` or :func:`weighted_teacher_logits`, which
work example by example, so a batch's targets equal the rows of the whole-dataset computation. At the paper
scale this replaces ``M`` fp32 copies of every teacher's logits plus their ``[M, N, L]`` stack (tens of GB,
once per torchrun rank) by a few page-cache-shared maps and a ``[M, B, L]`` tensor per step.

Span heads get one object per side (``teacher_start_logits`` from the teachers' ``start_logits`` with the gold
start positions, ``teacher_end_logits`` likewise): Weighted KD weighs start and end as two problems, as
:func:`~road_repro.distill.ensemble.weighted_span_teacher_logits` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from road_repro.distill.cache import SoftTargetFile
from road_repro.distill.ensemble import check_w, mean_teacher_logits, weighted_teacher_logits
from road_repro.errors import ConfigError, DataError

#: How a :class:`TeacherTargets` combines its teachers.
MODES = ("mean", "weighted")


class TeacherTargets:
    """Float32 teacher targets for any rows: ``targets[rows]`` is ``[B, ...]`` for a 1-D index ``rows``.

    ``teachers``: the opened caches of the ``M`` teachers; ``name``: the tensor to read from each
    (``logits``, ``start_logits`` or ``end_logits``); ``mode``: ``mean`` (plain ensemble, and KD from one
    teacher) or ``weighted`` (Algorithm 2 with scale ``w``, needs ``gold``: the ``[N]`` gold class index per
    row, a label or a start/end position). ``gold``, when given, must have one entry per cached row.
    Every teacher must cache ``name`` with the same shape. Only the maps and ``gold`` are held.
    """

    def __init__(self, teachers: Sequence[SoftTargetFile], name: str, mode: str = "mean",
                 gold: Tensor | None = None, w: float = 0.75):
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} must be one of {MODES}")
        if not teachers:
            raise DataError(f"teacher targets for {name!r} need at least one teacher's soft targets, got none")
        if mode == "weighted":
            check_w(w)
            if gold is None:
                raise ConfigError(f"Weighted KD targets for {name!r} need the gold labels")
        shape = teachers[0].shape(name)
        for i, teacher in enumerate(teachers[1:], start=1):
            if teacher.shape(name) != shape:
                raise DataError(f"teacher {i} ({teacher.path}) {name!r} has shape {teacher.shape(name)} "
                                f"but teacher 0 ({teachers[0].path}) has {shape}")
        if gold is not None:
            gold = torch.as_tensor(gold)
            if gold.shape != shape[:1]:
                raise DataError(f"{teachers[0].path}: {name!r} caches {shape[0]} rows but the training split has "
                                f"{tuple(gold.shape)} gold targets (stale soft-target cache?)")
        self.teachers, self.name, self.mode, self.gold, self.w = tuple(teachers), name, mode, gold, w
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"TeacherTargets({self.name!r}, {len(self.teachers)} teachers, mode={self.mode!r}, shape={self.shape}, "
                f"stored {self.teachers[0].dtype})")

    def __getitem__(self, rows: Tensor | np.ndarray | Sequence[int]) -> Tensor:
        """The targets of ``rows`` (1-D integer indices in ``[0, N)``, any order), float32 ``[B, ...]``."""
        idx = np.asarray(rows.cpu() if isinstance(rows, Tensor) else rows)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise IndexError(f"teacher targets are indexed by a 1-D integer array of rows, got {idx.dtype} "
                             f"of shape {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"rows [{idx.min()}, {idx.max()}] outside [0, {len(self)}) of {self!r}")
        stacked = torch.stack([teacher.rows(self.name, idx) for teacher in self.teachers])  # [M, B, ...]
        if self.mode == "weighted":
            return weighted_teacher_logits(stacked, self.gold[torch.from_numpy(idx)], self.w)
        return mean_teacher_logits(stacked)
