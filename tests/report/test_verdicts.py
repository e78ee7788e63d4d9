"""Claim verdicts on hand-made per-seed scores: each kind of claim and outcome, Bonferroni, determinism, and the
vectorised ASO against deepsig's own."""

from __future__ import annotations

import dataclasses
import math

import pytest

from road_repro.report.verdicts import (
    HOLDS,
    INCONCLUSIVE,
    REVERSED,
    TOO_FEW,
    Verdict,
    aso_eps_min,
    compare,
    rule_text,
)

WORSE = [80.0, 80.4, 79.8, 80.2, 80.6]
CLEAR_WIN = [81.5, 81.9, 81.3, 81.7, 82.1]
OVERLAP = [80.3, 80.5, 79.7, 80.5, 80.5]
#: 0.36 points above WORSE with a little shuffle: ASO dominance at alpha 0.05, not at 0.05 / 20.
BORDERLINE = [80.46, 80.66, 80.21, 80.56, 80.91]


def test_clear_win_holds() -> None:
    v = compare(CLEAR_WIN, WORSE)
    assert v.verdict == HOLDS
    assert v.eps_min < 0.2 < v.eps_min_reverse
    assert v.mean_diff == pytest.approx(1.5)
    assert 0 < v.ci_low < 1.5 < v.ci_high
    assert (v.n_better, v.n_worse, v.ci_level) == (5, 5, 0.95)
    assert v.explanation.startswith("holds:")


def test_clear_loss_reversed() -> None:
    v = compare(WORSE, CLEAR_WIN)
    assert v.verdict == REVERSED
    assert v.eps_min_reverse < 0.2
    assert v.ci_high < 0


def test_overlap_inconclusive() -> None:
    v = compare(OVERLAP, WORSE)
    assert v.verdict == INCONCLUSIVE
    assert v.eps_min >= 0.2 and v.eps_min_reverse >= 0.2
    assert v.ci_low < 0 < v.ci_high
    assert v.seeds_needed is not None and v.seeds_needed > 5


@pytest.mark.parametrize("better, worse", [([82.0], WORSE), (CLEAR_WIN, [80.0]), ([82.0], [80.0])])
def test_one_seed_is_too_few(better: list[float], worse: list[float]) -> None:
    v = compare(better, worse)
    assert v.verdict == TOO_FEW
    assert math.isnan(v.eps_min) and math.isnan(v.eps_min_reverse)
    assert v.mean_diff > 0 and v.ci_low <= v.mean_diff <= v.ci_high
    assert v.seeds_needed is not None and v.seeds_needed >= 2
    assert "too few seeds" in v.explanation


def test_equal_kind() -> None:
    same = [80.05, 80.45, 79.75, 80.25, 80.55]
    assert compare(same, WORSE, kind="equal").verdict == HOLDS
    differs = compare(CLEAR_WIN, WORSE, kind="equal")
    assert differs.verdict == REVERSED and "differ" in differs.explanation
    wide = [78.0, 82.5, 79.0, 81.8, 80.0]
    assert compare(wide, WORSE, kind="equal").verdict == INCONCLUSIVE


def test_not_worse_kind() -> None:
    assert compare(OVERLAP, WORSE, kind="not_worse").verdict == HOLDS
    assert compare(CLEAR_WIN, WORSE, kind="not_worse").verdict == HOLDS
    assert compare(WORSE, CLEAR_WIN, kind="not_worse").verdict == REVERSED
    wide = [78.0, 82.5, 79.0, 81.8, 79.5]
    assert compare(wide, WORSE, kind="not_worse").verdict == INCONCLUSIVE


def test_bonferroni_turns_a_borderline_win_inconclusive() -> None:
    one, twenty = compare(BORDERLINE, WORSE), compare(BORDERLINE, WORSE, n_comparisons=20)
    assert one.verdict == HOLDS and twenty.verdict == INCONCLUSIVE
    assert one.eps_min < 0.2 <= twenty.eps_min
    assert twenty.ci_level == pytest.approx(1 - 0.05 / 20)
    assert twenty.ci_low < one.ci_low and twenty.ci_high > one.ci_high
    assert twenty.seeds_needed > one.seeds_needed


def test_deterministic_given_seed() -> None:
    assert compare(OVERLAP, WORSE, seed=7) == compare(OVERLAP, WORSE, seed=7)
    assert compare(OVERLAP, WORSE, seed=7).ci_low != compare(OVERLAP, WORSE, seed=8).ci_low


def test_verdict_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        compare(CLEAR_WIN, WORSE).verdict = REVERSED  # type: ignore[misc]
    assert isinstance(compare(CLEAR_WIN, WORSE), Verdict)


@pytest.mark.parametrize("kwargs", [{"kind": "less"}, {"alpha": 0.0}, {"n_comparisons": 0}, {"eps": 1.5}])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        compare(CLEAR_WIN, WORSE, **kwargs)


def test_bad_scores() -> None:
    with pytest.raises(ValueError):
        compare([], WORSE)
    with pytest.raises(ValueError):
        compare([80.0, math.nan], WORSE)


def test_rule_text_names_the_thresholds() -> None:
    text = rule_text()
    assert "eps = 0.2" in text and "alpha = 0.05" in text and "0.5 points" in text
    assert "eps = 0.1" in rule_text(eps=0.1)


@pytest.mark.parametrize("a, b, confidence", [(BORDERLINE, WORSE, 0.95), (OVERLAP, WORSE[:3], 1 - 0.05 / 20),
                                               ([82.0], WORSE, 0.95)])
def test_aso_equals_deepsig(a: list[float], b: list[float], confidence: float) -> None:
    deepsig = pytest.importorskip("deepsig")
    ours = aso_eps_min(a, b, confidence=confidence, n_boot=50, seed=3)
    theirs = deepsig.aso(a, b, confidence_level=confidence, num_bootstrap_iterations=50, seed=3, show_progress=False)
    assert ours == pytest.approx(theirs, abs=1e-9)
