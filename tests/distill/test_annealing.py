"""Teacher annealing targets and loss against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from road_repro.distill import annealed_targets, annealing_kd_loss
from road_repro.errors import ConfigError

TEACHER = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
STUDENT = torch.tensor([[0.5, -0.5, 1.0], [2.0, 1.0, 0.0]])
LABELS = torch.tensor([0, 2])


def test_progress_zero_is_teacher_softmax_and_one_is_onehot() -> None:
    torch.testing.assert_close(annealed_targets(TEACHER, LABELS, 0.0), F.softmax(TEACHER, -1))
    torch.testing.assert_close(annealed_targets(TEACHER, LABELS, 1.0), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))


def test_midway_mix_hand_computed_and_rows_sum_to_one() -> None:
    e = [math.exp(1.0), math.exp(2.0), 1.0]
    p0 = [x / sum(e) for x in e]
    expected0 = [0.25 * 1.0 + 0.75 * p0[0], 0.75 * p0[1], 0.75 * p0[2]]
    got = annealed_targets(TEACHER, LABELS, 0.25)
    assert got[0].tolist() == pytest.approx(expected0, rel=1e-6)
    for progress in (0.0, 0.3, 0.7, 1.0):
        torch.testing.assert_close(annealed_targets(TEACHER, LABELS, progress).sum(-1), torch.ones(2))


def test_annealing_loss_is_soft_ce_against_the_targets() -> None:
    targets = annealed_targets(TEACHER, LABELS, 0.4).tolist()
    log_q = F.log_softmax(STUDENT, -1).tolist()
    expected = -sum(sum(p * lq for p, lq in zip(pr, qr)) for pr, qr in zip(targets, log_q)) / 2
    assert annealing_kd_loss(STUDENT, TEACHER, LABELS, 0.4).item() == pytest.approx(expected, rel=1e-6)
    # At the end of training it is plain cross-entropy on the gold labels.
    assert annealing_kd_loss(STUDENT, TEACHER, LABELS, 1.0).item() == pytest.approx(
        F.cross_entropy(STUDENT, LABELS).item(), rel=1e-6
    )


def test_gradient_reaches_the_student_only() -> None:
    student, teacher = STUDENT.clone().requires_grad_(True), TEACHER.clone().requires_grad_(True)
    annealing_kd_loss(student, teacher, LABELS, 0.5).backward()
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize("progress", [-0.01, 1.01])
def test_progress_out_of_range_names_progress(progress: float) -> None:
    with pytest.raises(ConfigError, match="progress="):
        annealed_targets(TEACHER, LABELS, progress)
    with pytest.raises(ConfigError, match="progress="):
        annealing_kd_loss(STUDENT, TEACHER, LABELS, progress)


def test_shape_mismatch_names_the_shapes() -> None:
    with pytest.raises(ConfigError, match=r"\(2, 4\).*\(2, 3\)"):
        annealing_kd_loss(STUDENT, torch.zeros(2, 4), LABELS, 0.5)
    with pytest.raises(ConfigError, match=r"labels shape \(3,\)"):
        annealed_targets(TEACHER, torch.tensor([0, 1, 2]), 0.5)
