"""Weighted KD (Algorithm 2) against hand-computed weights and a direct per-example implementation."""

from __future__ import annotations

import pytest
import torch

from road_repro.distill import (
    mean_teacher_logits,
    weighted_kd_weights,
    weighted_span_teacher_logits,
    weighted_teacher_logits,
)
from road_repro.errors import ConfigError


def algorithm2(teacher_logits: torch.Tensor, labels: torch.Tensor, w: float) -> torch.Tensor:
    """The paper's Algorithm 2, one example at a time, with the no-correct-teacher fallback to the mean."""
    m, b, _ = teacher_logits.shape
    out = []
    for j in range(b):
        scaled, correctness = [], []
        n_correct = n_incorrect = 0
        for i in range(m):
            logits = teacher_logits[i, j]
            if int(logits.argmax()) == int(labels[j]):
                n_correct += 1
                scaled.append(logits)
                correctness.append(True)
            else:
                n_incorrect += 1
                scaled.append(logits * w)
                correctness.append(False)
        if n_correct == 0:
            out.append(teacher_logits[:, j].mean(0))
            continue
        w_hat = (m - n_incorrect * w) / n_correct
        scaled = [s * w_hat if ok else s for s, ok in zip(scaled, correctness)]
        out.append(sum(scaled) / m)
    return torch.stack(out)


# Three teachers, one example with label 0: teachers 0 and 1 are right, teacher 2 is wrong.
TWO_RIGHT = torch.tensor([[[3.0, 1.0, 0.0]], [[2.0, 0.0, 1.0]], [[0.0, 4.0, 1.0]]])


def test_two_correct_one_incorrect_hand_computed() -> None:
    weights = weighted_kd_weights(TWO_RIGHT, torch.tensor([0]), w=0.75)
    # w_hat = (3 - 1 * 0.75) / 2 = 1.125
    torch.testing.assert_close(weights, torch.tensor([[1.125], [1.125], [0.75]]))
    expected = (1.125 * TWO_RIGHT[0, 0] + 1.125 * TWO_RIGHT[1, 0] + 0.75 * TWO_RIGHT[2, 0]) / 3
    torch.testing.assert_close(expected, torch.tensor([1.875, 1.375, 0.625]))
    torch.testing.assert_close(weighted_teacher_logits(TWO_RIGHT, torch.tensor([0]), 0.75)[0], expected)


def test_all_correct_none_correct_and_w_one_give_the_plain_mean() -> None:
    mean = mean_teacher_logits(TWO_RIGHT)
    torch.testing.assert_close(mean[0], TWO_RIGHT[:, 0].mean(0))
    all_right = TWO_RIGHT.clone()
    all_right[2, 0] = torch.tensor([5.0, 4.0, 1.0])
    got = weighted_teacher_logits(all_right, torch.tensor([0]), 0.75)
    torch.testing.assert_close(got, mean_teacher_logits(all_right))
    torch.testing.assert_close(weighted_teacher_logits(TWO_RIGHT, torch.tensor([2]), 0.75), mean)  # nobody says 2
    torch.testing.assert_close(weighted_teacher_logits(TWO_RIGHT, torch.tensor([0]), 1.0), mean)


def test_mixed_batch_each_example_with_its_own_count() -> None:
    # Labels chosen so example 0 has 3 correct, 1 has 2, 2 has 1 and 3 has 0 correct teachers.
    teachers = torch.tensor(
        [
            [[5.0, 0.0], [5.0, 0.0], [5.0, 0.0], [5.0, 0.0]],
            [[4.0, 1.0], [3.0, 1.0], [1.0, 3.0], [2.0, 1.0]],
            [[2.0, 1.0], [0.0, 2.0], [0.0, 1.0], [3.0, 0.0]],
        ]
    )
    labels = torch.tensor([0, 0, 0, 1])
    weights = weighted_kd_weights(teachers, labels, w=0.5)
    expected = torch.tensor(
        [
            [1.0, 1.25, 2.0, 1.0],  # 2 correct: (3 - 0.5) / 2; 1 correct: (3 - 1) / 1
            [1.0, 1.25, 0.5, 1.0],
            [1.0, 0.5, 0.5, 1.0],
        ]
    )
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weighted_teacher_logits(teachers, labels, 0.5), algorithm2(teachers, labels, 0.5))


@pytest.mark.parametrize("w", [0.5, 0.75, 1.0])
@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_matches_direct_algorithm2_on_random_logits(m: int, w: float) -> None:
    gen = torch.Generator().manual_seed(m * 100 + int(w * 10))
    teachers = torch.randn(m, 16, 3, generator=gen)
    labels = torch.randint(0, 3, (16,), generator=gen)
    torch.testing.assert_close(weighted_teacher_logits(teachers, labels, w), algorithm2(teachers, labels, w))
    weights = weighted_kd_weights(teachers, labels, w)
    torch.testing.assert_close(weights.sum(0), torch.full((16,), float(m)))  # average range preserved
    assert (weights > 0).all()


def test_span_start_and_end_are_weighted_separately() -> None:
    gen = torch.Generator().manual_seed(7)
    start, end = torch.randn(3, 4, 6, generator=gen), torch.randn(3, 4, 6, generator=gen)
    start_pos, end_pos = torch.tensor([0, 2, 5, 1]), torch.tensor([0, 3, 5, 4])
    got_start, got_end = weighted_span_teacher_logits(start, end, start_pos, end_pos, 0.75)
    torch.testing.assert_close(got_start, algorithm2(start, start_pos, 0.75))
    torch.testing.assert_close(got_end, algorithm2(end, end_pos, 0.75))
    # A teacher right about the start but wrong about the end is up-weighted for start only.
    start, end = TWO_RIGHT.clone(), TWO_RIGHT.clone()
    got_start, got_end = weighted_span_teacher_logits(start, end, torch.tensor([0]), torch.tensor([1]), 0.75)
    torch.testing.assert_close(got_start, weighted_teacher_logits(start, torch.tensor([0]), 0.75))
    torch.testing.assert_close(got_end, weighted_teacher_logits(end, torch.tensor([1]), 0.75))
    assert not torch.allclose(got_start, got_end)


@pytest.mark.parametrize("w", [0.0, -0.1, 1.5])
def test_w_outside_unit_interval_names_w(w: float) -> None:
    with pytest.raises(ConfigError, match="w="):
        weighted_teacher_logits(TWO_RIGHT, torch.tensor([0]), w)
    with pytest.raises(ConfigError, match="w="):
        weighted_span_teacher_logits(TWO_RIGHT, TWO_RIGHT, torch.tensor([0]), torch.tensor([0]), w)


def test_bad_shapes_name_the_shapes() -> None:
    with pytest.raises(ConfigError, match=r"\[M, B, C\]"):
        weighted_teacher_logits(TWO_RIGHT[0], torch.tensor([0]), 0.75)
    with pytest.raises(ConfigError, match=r"labels shape \(2,\)"):
        weighted_teacher_logits(TWO_RIGHT, torch.tensor([0, 1]), 0.75)
    with pytest.raises(ConfigError, match=r"end_positions shape \(2,\)"):
        weighted_span_teacher_logits(TWO_RIGHT, TWO_RIGHT, torch.tensor([0]), torch.tensor([0, 1]), 0.75)
    with pytest.raises(ConfigError, match=r"\[M, B, C\]"):
        mean_teacher_logits(torch.zeros(0, 2, 3))
