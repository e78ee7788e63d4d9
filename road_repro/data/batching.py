"""Batches sized by real tokens: length-grouped training minibatches and length-sorted inference groups.

With ``features.span_padding: batch`` span-QA windows are padded to the longest window of their batch, not to
``max_seq_length`` (the masked span objective makes that exact, see :mod:`road_repro.distill.losses`), so what
a batch costs is its longest row. Grouping rows of similar length keeps that close to their mean:

* :class:`LengthGroupedBatches` -- training order as a pure function of the step (a resumed run replays it),
  with ``transformers``' own ``get_length_grouped_indices`` (the Trainer's ``group_by_length``): a random
  permutation cut into mega-batches of up to 50 batches, each sorted by length, the longest batch first;
* :func:`length_sorted_groups` -- inference (dev scoring, soft-target passes): rows sorted by length and cut
  into groups; the caller puts outputs back in row order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from transformers.trainer_pt_utils import get_length_grouped_indices

from road_repro.errors import ConfigError, DataError


class LengthGroupedBatches:
    """Minibatch indices grouped by length; epoch ``e`` orders rows under a generator seeded by ``(seed, e)``
    and step ``k`` of the epoch takes the ``k``-th slice of ``batch_size`` (the interface of
    :class:`road_repro.train.loop.EpochBatches`)."""

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int):
        if len(lengths) == 0:
            raise DataError("no training examples: the training set is empty")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be at least 1")
        self.lengths, self.batch_size, self.seed = [int(n) for n in lengths], batch_size, seed
        self.steps_per_epoch = -(-len(self.lengths) // batch_size)
        self._order: tuple[int, Tensor] | None = None

    def __call__(self, step: int) -> Tensor:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=gen)
            self._order = (epoch, torch.tensor(order, dtype=torch.long))
        return self._order[1][k * self.batch_size : (k + 1) * self.batch_size]


def length_sorted_groups(rows: Tensor, lengths: np.ndarray, group_size: int) -> list[Tensor]:
    """``rows`` (indices into ``lengths``) sorted by length (stable) and cut into groups of ``group_size``."""
    if group_size < 1:
        raise ConfigError(f"group_size={group_size} must be at least 1")
    order = rows[torch.from_numpy(np.argsort(lengths[rows.numpy()], kind="stable"))]
    return list(order.split(group_size))
