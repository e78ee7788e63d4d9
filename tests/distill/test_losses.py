"""KD losses against hand-written loop formulas on small hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from road_repro.distill import kd_kl, kd_loss, soft_cross_entropy
from road_repro.errors import ConfigError

STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.5, 3.0, 0.0]])
TEACHER = torch.tensor([[1.0, 1.5, -0.5], [2.0, -1.0, 0.0], [0.0, 2.5, 1.0]])
LABELS = torch.tensor([0, 2, 1])


def _log_softmax(row: list[float], t: float = 1.0) -> list[float]:
    z = [x / t for x in row]
    log_norm = math.log(sum(math.exp(x) for x in z))
    return [x - log_norm for x in z]


def loop_ce(student: torch.Tensor, labels: torch.Tensor) -> float:
    rows = student.tolist()
    return sum(-_log_softmax(r)[y] for r, y in zip(rows, labels.tolist())) / len(rows)


def loop_kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        log_q, log_p = _log_softmax(s_row, t), _log_softmax(t_row, t)
        total += sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))
    return total / len(student)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 1.0])
def test_kd_loss_matches_loop_formula(temperature: float, lam: float) -> None:
    expected = (1 - lam) * loop_ce(STUDENT, LABELS) + lam * loop_kl(STUDENT, TEACHER, temperature)
    got = kd_loss(STUDENT, TEACHER, LABELS, temperature, lam)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_lam_zero_is_plain_ce_and_lam_one_is_pure_kl() -> None:
    assert kd_loss(STUDENT, TEACHER, LABELS, 5.0, 0.0).item() == pytest.approx(F.cross_entropy(STUDENT, LABELS).item())
    assert kd_loss(STUDENT, TEACHER, LABELS, 5.0, 1.0).item() == pytest.approx(loop_kl(STUDENT, TEACHER, 5.0), rel=1e-5)
    assert kd_kl(STUDENT, TEACHER, 5.0).item() == pytest.approx(loop_kl(STUDENT, TEACHER, 5.0), rel=1e-5)


def test_t2_scale_multiplies_kl_by_t_squared() -> None:
    t, lam = 3.0, 0.6
    plain = kd_loss(STUDENT, TEACHER, LABELS, t, lam)
    scaled = kd_loss(STUDENT, TEACHER, LABELS, t, lam, t2_scale=True)
    ce, kl = loop_ce(STUDENT, LABELS), loop_kl(STUDENT, TEACHER, t)
    assert plain.item() == pytest.approx((1 - lam) * ce + lam * kl, rel=1e-5)
    assert scaled.item() == pytest.approx((1 - lam) * ce + lam * t * t * kl, rel=1e-5)


def test_temperature_softens_the_kl() -> None:
    # Higher T flattens both distributions, so the divergence shrinks.
    kls = [kd_kl(STUDENT, TEACHER, t).item() for t in (1.0, 3.0, 7.0)]
    assert kls[0] > kls[1] > kls[2] > 0


def test_identical_teacher_and_student_have_zero_kl() -> None:
    assert kd_kl(STUDENT, STUDENT.clone(), 5.0).item() == pytest.approx(0.0, abs=1e-7)
    assert kd_loss(STUDENT, STUDENT.clone(), LABELS, 5.0, 1.0).item() == pytest.approx(0.0, abs=1e-7)


def test_label_smoothing_reaches_the_ce_term() -> None:
    got = kd_loss(STUDENT, TEACHER, LABELS, 5.0, 0.4, label_smoothing=0.1)
    expected = 0.6 * F.cross_entropy(STUDENT, LABELS, label_smoothing=0.1) + 0.4 * loop_kl(STUDENT, TEACHER, 5.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_reaches_the_student_only() -> None:
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    kd_loss(student, teacher, LABELS, 5.0, 0.9).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_kl_gradient_is_softmax_difference_over_t() -> None:
    # d/ds KL(p_t || q_s) with q = softmax(s/T) is (q - p) / T per example, / B for the batch mean.
    t = 2.0
    student = STUDENT.clone().requires_grad_(True)
    kd_kl(student, TEACHER, t).backward()
    expected = (F.softmax(STUDENT / t, -1) - F.softmax(TEACHER / t, -1)) / t / len(STUDENT)
    torch.testing.assert_close(student.grad, expected)


def test_soft_cross_entropy_matches_loop() -> None:
    probs = torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8]])
    expected = sum(
        -sum(p * lq for p, lq in zip(p_row, _log_softmax(s_row)))
        for p_row, s_row in zip(probs.tolist(), STUDENT.tolist())
    ) / 3
    assert soft_cross_entropy(STUDENT, probs).item() == pytest.approx(expected, rel=1e-5)
    onehot = F.one_hot(LABELS, 3).float()
    assert soft_cross_entropy(STUDENT, onehot).item() == pytest.approx(loop_ce(STUDENT, LABELS), rel=1e-5)


@pytest.mark.parametrize("lam", [-0.1, 1.5, float("nan")])
def test_lam_out_of_range_names_lam(lam: float) -> None:
    with pytest.raises(ConfigError, match="lam="):
        kd_loss(STUDENT, TEACHER, LABELS, 5.0, lam)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf")])
def test_bad_temperature_names_temperature(temperature: float) -> None:
    with pytest.raises(ConfigError, match="temperature="):
        kd_loss(STUDENT, TEACHER, LABELS, temperature, 0.5)
    with pytest.raises(ConfigError, match="temperature="):
        kd_kl(STUDENT, TEACHER, temperature)


def test_bad_label_smoothing_names_it() -> None:
    with pytest.raises(ConfigError, match="label_smoothing="):
        kd_loss(STUDENT, TEACHER, LABELS, 5.0, 0.5, label_smoothing=1.5)


def test_shape_mismatches_name_the_shapes() -> None:
    with pytest.raises(ConfigError, match=r"\(3, 4\).*\(3, 3\)"):
        kd_loss(STUDENT, torch.zeros(3, 4), LABELS, 5.0, 0.5)
    with pytest.raises(ConfigError, match=r"labels shape \(2,\)"):
        kd_loss(STUDENT, TEACHER, LABELS[:2], 5.0, 0.5)
    with pytest.raises(ConfigError, match=r"\[B, C\]"):
        kd_kl(STUDENT[None], TEACHER[None], 5.0)
    with pytest.raises(ConfigError, match="target_probs shape"):
        soft_cross_entropy(STUDENT, torch.ones(3, 2) / 2)


def test_bad_labels_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 3\)"):
        kd_loss(STUDENT, TEACHER, torch.tensor([0, 3, 1]), 5.0, 0.5)
    with pytest.raises(ConfigError, match="integer"):
        kd_loss(STUDENT, TEACHER, LABELS.float(), 5.0, 0.5)
