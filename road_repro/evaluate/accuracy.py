"""Classification accuracy in percent (MNLI-m, QQP and the other classification rows of the paper's tables)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from road_repro.errors import DataError


def predicted_classes(logits_or_preds: Tensor | Sequence) -> Tensor:
    """Class ids: the argmax of ``[N, C]`` logits, or ``[N]`` predictions unchanged."""
    values = torch.as_tensor(logits_or_preds)
    if values.dim() == 2:
        return values.argmax(dim=-1)
    if values.dim() == 1:
        return values
    raise DataError(f"accuracy: expected [N, C] logits or [N] class ids, got shape {tuple(values.shape)}")


def accuracy(logits_or_preds: Tensor | Sequence, labels: Tensor | Sequence) -> float:
    """Percentage of examples whose predicted class equals the label.

    ``logits_or_preds`` is ``[N, C]`` logits (argmax taken) or ``[N]`` class ids; ``labels`` is ``[N]``.
    Raises :class:`DataError` if the counts differ or there are no examples.
    """
    preds = predicted_classes(logits_or_preds)
    gold = torch.as_tensor(labels)
    if gold.dim() != 1:
        raise DataError(f"accuracy: labels must be [N], got shape {tuple(gold.shape)}")
    if preds.shape[0] != gold.shape[0]:
        raise DataError(f"accuracy: {preds.shape[0]} predictions but {gold.shape[0]} labels")
    if gold.shape[0] == 0:
        raise DataError("accuracy: no examples to score")
    return 100.0 * (preds == gold).sum().item() / gold.shape[0]
