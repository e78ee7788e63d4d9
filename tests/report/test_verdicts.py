"""Claim verdicts on hand-made per-seed scores: each kind of claim and outcome, Bonferroni, the t statistics
against scipy's own tests, the fixed reference of an ensemble, determinism, and the vectorised ASO against
deepsig's own. The rule's calibration is simulated in test_verdict_calibration.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from road_repro.report.verdicts import (
    HOLDS,
    INCONCLUSIVE,
    REVERSED,
    TOO_FEW,
    Verdict,
    aso_eps_min,
    compare,
    rule_text,
    t_interval,
    verdicts,
)

WORSE = [80.0, 80.4, 79.8, 80.2, 80.6]
CLEAR_WIN = [81.5, 81.9, 81.3, 81.7, 82.1]
OVERLAP = [80.3, 80.5, 79.7, 80.5, 80.5]
#: 0.5 points above WORSE with a little shuffle: holds at alpha 0.05 (p ~ 0.02), not at 0.05 / 20.
BORDERLINE = [80.6, 80.8, 80.35, 80.7, 81.05]


def test_clear_win_holds() -> None:
    v = compare(CLEAR_WIN, WORSE)
    assert v.verdict == HOLDS
    assert v.eps_min < 0.2 < v.eps_min_reverse
    assert v.mean_diff == pytest.approx(1.5)
    assert 0 < v.ci_low < 1.5 < v.ci_high
    assert (v.n_better, v.n_worse) == (5, 5) and v.ci_level == pytest.approx(0.9)
    assert v.p_value < 0.05 and v.test == "one-sided Welch t + ASO"
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
    assert math.isnan(v.eps_min) and math.isnan(v.eps_min_reverse) and math.isnan(v.p_value)
    assert v.mean_diff > 0
    assert v.seeds_needed is not None and v.seeds_needed >= 2
    assert "too few seeds" in v.explanation


def test_equal_kind() -> None:
    same = [80.05, 80.45, 79.75, 80.25, 80.55]
    assert compare(same, WORSE, kind="equal", margin=0.5).verdict == HOLDS
    assert compare(same, WORSE, kind="equal", margin=0.2).verdict == INCONCLUSIVE  # interval wider than +-0.2
    assert compare(CLEAR_WIN, WORSE, kind="equal", margin=0.5).verdict == REVERSED
    wide = [78.0, 82.5, 79.0, 81.8, 80.0]
    assert compare(wide, WORSE, kind="equal", margin=0.5).verdict == INCONCLUSIVE


def test_equal_is_not_reversed_inside_the_margin() -> None:
    """A difference of 0.3 inside a margin of 0.5 is not "the rows differ" (the old rule said reversed)."""
    inside = [x + 0.3 for x in WORSE]
    v = compare(inside, WORSE, kind="equal", margin=0.5)
    assert v.verdict == INCONCLUSIVE and v.ci_low < 0.5 < v.ci_high


def test_not_worse_kind() -> None:
    assert compare(OVERLAP, WORSE, kind="not_worse", margin=0.5).verdict == HOLDS
    assert compare(CLEAR_WIN, WORSE, kind="not_worse", margin=0.5).verdict == HOLDS
    assert compare(WORSE, CLEAR_WIN, kind="not_worse", margin=0.5).verdict == REVERSED
    wide = [78.0, 82.5, 79.0, 81.8, 79.5]
    assert compare(wide, WORSE, kind="not_worse", margin=0.5).verdict == INCONCLUSIVE


def test_two_seeds_that_barely_differ_do_not_hold() -> None:
    """The issue's example: ASO alone said holds (eps_min 0.00) for 0.02 points over 2 seeds."""
    v = compare([90.02, 90.03], [90.00, 90.01])
    assert v.eps_min == 0.0 and v.verdict == INCONCLUSIVE and v.p_value > 0.05


def test_welch_statistic_equals_scipy() -> None:
    v = compare(OVERLAP, WORSE[:3])
    ref = stats.ttest_ind(OVERLAP, WORSE[:3], equal_var=False, alternative="greater")
    assert v.statistic == pytest.approx(ref.statistic) and v.p_value == pytest.approx(ref.pvalue)
    nw = compare(OVERLAP, WORSE[:3], kind="not_worse", margin=0.4)
    shifted = stats.ttest_ind([x + 0.4 for x in OVERLAP], WORSE[:3], equal_var=False, alternative="greater")
    assert nw.statistic == pytest.approx(shifted.statistic) and nw.p_value == pytest.approx(shifted.pvalue)


def test_ensemble_is_a_fixed_reference() -> None:
    """One ensemble value: a one-sample t of the seeded row, equal to scipy's; seeds are asked of that row only."""
    v = compare(CLEAR_WIN, [81.0], fixed="worse")
    ref = stats.ttest_1samp(CLEAR_WIN, 81.0, alternative="greater")
    assert v.statistic == pytest.approx(ref.statistic) and v.p_value == pytest.approx(ref.pvalue)
    assert v.verdict == HOLDS and v.df == 4 and "fixed reference" in v.test
    eq = compare(OVERLAP, [80.3], kind="equal", margin=0.2, fixed="worse")
    assert eq.verdict == INCONCLUSIVE and "on the seeded row" in eq.change and eq.seeds_needed > 5
    above = compare([83.0], WORSE, fixed="better")  # the ensemble is the row claimed better
    assert above.verdict == HOLDS and above.df == 4 and above.n_better == 1
    with pytest.raises(ValueError, match="one value"):
        compare(CLEAR_WIN, WORSE, fixed="worse")
    too_few = compare([82.0], [81.0], fixed="worse")
    assert too_few.verdict == TOO_FEW and "on the seeded row" in too_few.change


def test_zero_spread_decides_nothing() -> None:
    """Identical seeds (e.g. a collapsed model) estimate no noise: the claim is inconclusive, never decided at p = 0."""
    v = compare([81.0, 81.0], [80.0, 80.0])
    assert v.verdict == INCONCLUSIVE and (v.ci_low, v.ci_high) == (-math.inf, math.inf) and math.isnan(v.p_value)
    assert compare([80.0, 80.0], [80.0, 80.0], kind="equal", margin=0.1).verdict == INCONCLUSIVE
    _, _, _, low, high = t_interval(np.array([80.0, 80.5, 81.0]), np.array([79.0, 79.0, 79.0]), level=0.99)
    assert np.isfinite(low) and np.isfinite(high)


def test_bonferroni_turns_a_borderline_win_inconclusive() -> None:
    one, twenty = compare(BORDERLINE, WORSE), compare(BORDERLINE, WORSE, n_comparisons=20)
    assert one.verdict == HOLDS and twenty.verdict == INCONCLUSIVE
    assert one.p_value < 0.05 < 20 * one.p_value and one.p_value == twenty.p_value
    assert twenty.ci_level == pytest.approx(1 - 2 * 0.05 / 20)
    assert twenty.ci_low < one.ci_low and twenty.ci_high > one.ci_high
    assert twenty.seeds_needed > one.seeds_needed


def test_deterministic_given_seed() -> None:
    assert compare(OVERLAP, WORSE, seed=7) == compare(OVERLAP, WORSE, seed=7)
    assert compare(OVERLAP, WORSE, seed=7).eps_min != compare(OVERLAP, WORSE, seed=8).eps_min  # ASO's bootstrap


def test_verdict_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        compare(CLEAR_WIN, WORSE).verdict = REVERSED  # type: ignore[misc]
    assert isinstance(compare(CLEAR_WIN, WORSE), Verdict)


@pytest.mark.parametrize("kwargs", [{"kind": "less"}, {"alpha": 0.0}, {"n_comparisons": 0}, {"eps": 1.5},
                                    {"kind": "equal"}, {"kind": "not_worse", "margin": 0.0}, {"fixed": "both"}])
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
    assert "eps = 0.2" in text and "alpha = 0.05" in text and "Welch" in text and "fixed reference" in text
    assert "eps = 0.1" in rule_text(eps=0.1)


@pytest.mark.parametrize("a, b, confidence", [(BORDERLINE, WORSE, 0.95), (OVERLAP, WORSE[:3], 1 - 0.05 / 20),
                                               ([82.0], WORSE, 0.95)])
def test_aso_equals_deepsig(a: list[float], b: list[float], confidence: float) -> None:
    deepsig = pytest.importorskip("deepsig")
    ours = aso_eps_min(a, b, confidence=confidence, n_boot=50, seed=3)
    theirs = deepsig.aso(a, b, confidence_level=confidence, num_bootstrap_iterations=50, seed=3, show_progress=False)
    assert ours == pytest.approx(theirs, abs=1e-9)


@pytest.mark.parametrize("kind, margin, fixed", [("greater", None, None), ("equal", 0.5, None),
                                                 ("not_worse", 0.5, None), ("greater", None, "worse"),
                                                 ("equal", 0.5, "worse")])
def test_the_simulated_rule_is_compares_rule(kind: str, margin: float | None, fixed: str | None) -> None:
    """``verdicts`` (what the calibration test simulates) gives ``compare``'s verdict on every table."""
    rng = np.random.default_rng(11)
    better = rng.normal(0.4, 0.4, (40, 4))
    worse = np.full((40, 1), 0.0) if fixed else rng.normal(0.0, 0.4, (40, 3))
    batch = verdicts(better, worse, kind=kind, margin=margin or 0.0, fixed=fixed, n_comparisons=2, n_boot=300)
    single = [compare(b, w, kind=kind, margin=margin, fixed=fixed, n_comparisons=2, n_boot=300).verdict
              for b, w in zip(better, worse)]
    assert batch.tolist() == single and len(set(single)) > 1

