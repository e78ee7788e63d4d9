"""Classification accuracy in percent."""

from __future__ import annotations

import pytest
import torch

from road_repro.errors import DataError
from road_repro.evaluate.accuracy import accuracy, predicted_classes


def test_logits_take_the_argmax() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    assert predicted_classes(logits).tolist() == [1, 0, 2]
    assert accuracy(logits, torch.tensor([1, 0, 0])) == pytest.approx(200 / 3)


def test_class_ids_and_plain_lists() -> None:
    assert accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 75.0
    assert accuracy(torch.tensor([2, 2]), [2, 2]) == 100.0
    assert accuracy([1], [0]) == 0.0


def test_matches_direct_count_on_random_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 3, generator=gen)
    labels = torch.randint(0, 3, (500,), generator=gen)
    direct = sum(int(row.argmax()) == int(y) for row, y in zip(logits, labels)) / 500 * 100
    assert accuracy(logits, labels) == pytest.approx(direct, abs=1e-12)


@pytest.mark.parametrize(
    ("preds", "labels", "message"),
    [
        ([0, 1, 2], [0, 1], "3 predictions but 2 labels"),
        (torch.zeros(2, 3), [0, 1, 2], "2 predictions but 3 labels"),
        ([], [], "no examples"),
        (torch.zeros(2, 2, 2), [0, 1], r"\[N, C\] logits or \[N\] class ids"),
        ([0, 1], [[0, 1]], r"labels must be \[N\]"),
    ],
)
def test_bad_input(preds, labels, message: str) -> None:
    with pytest.raises(DataError, match=message):
        accuracy(preds, labels)
