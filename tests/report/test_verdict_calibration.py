"""The verdict rule, proven by simulation: when a claim is false, "holds" comes at most at the nominal level
alpha/m for 2 to 10 seeds per row and every kind of claim, and real effects are found with useful power.

Each case draws ``REPS`` seeded tables of normal seed noise (sd 1: the rule is scale-free) at the claim's
boundary -- equal rows for "beats", a true difference of exactly the margin for "about equal" / "not worse"
-- for two seeded rows (Welch) and for a seeded row against an ensemble's single value (fixed reference),
and runs the rule (:func:`road_repro.report.verdicts.verdicts`, the same rule as ``compare``) on all of them
at once. ``python tests/report/test_verdict_calibration.py`` prints the table of docs/verdicts.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from road_repro.report.verdicts import ALPHA, HOLDS, verdicts

KINDS_ORDER = ("greater", "equal", "not_worse")
M = 5  #: claims per table (a typical spec): nominal level alpha/m = 1 %
NOMINAL = ALPHA / M
REPS = 500
SEEDS = range(2, 11)
MARGIN = 1.0  #: in units of the seed-to-seed sd
N_BOOT = 200  #: ASO bootstrap iterations in the simulation (ASO can only turn "holds" into "inconclusive")
#: (kind, true difference A - B at the boundary where the claim is false)
BOUNDARY = {"greater": 0.0, "equal": MARGIN, "not_worse": -MARGIN}
#: Per case: "holds" no more often than the 99.9 % quantile of Binomial(REPS, alpha/m) (Monte-Carlo slack).
SLACK_COUNT = int(stats.binom.ppf(0.999, REPS, NOMINAL))


def holds_rate(kind: str, diff: float, n: int, fixed: str | None, *, sd_worse: float = 1.0, reps: int = REPS,
               seed: int = 0, margin: float = MARGIN) -> float:
    """Share of ``reps`` simulated claims (``n`` seeds per row, true difference ``diff`` sds) that "hold"."""
    rng = np.random.default_rng([seed, n, int(1000 * diff) + 10**6, KINDS_ORDER.index(kind), fixed is None])
    better = rng.normal(diff, 1.0, (reps, n))
    worse = np.zeros((reps, 1)) if fixed else rng.normal(0.0, sd_worse, (reps, n))
    out = verdicts(better, worse, kind=kind, margin=margin, fixed=fixed, n_comparisons=M, n_boot=N_BOOT)
    return float(np.mean(out == HOLDS))


@pytest.mark.parametrize("fixed", [None, "worse"], ids=["two rows (Welch)", "vs ensemble (one-sample)"])
@pytest.mark.parametrize("kind", KINDS_ORDER)
def test_false_holds_at_most_nominal(kind: str, fixed: str | None) -> None:
    rates = {n: holds_rate(kind, BOUNDARY[kind], n, fixed) for n in SEEDS}
    assert all(rate * REPS <= SLACK_COUNT for rate in rates.values()), (rates, SLACK_COUNT)
    pooled = np.mean(list(rates.values()))
    assert pooled <= NOMINAL + 3 * np.sqrt(NOMINAL * (1 - NOMINAL) / (REPS * len(SEEDS))), rates


def test_welch_stays_calibrated_with_unequal_spread() -> None:
    """Rows with different seed spread (sd 1 vs 3) at equal means: Welch, not a pooled t, keeps the level."""
    rates = [holds_rate("greater", 0.0, n, None, sd_worse=3.0) for n in (2, 3, 5, 10)]
    assert all(rate * REPS <= SLACK_COUNT for rate in rates), rates


#: (kind, fixed, n, true difference, margin, least power), in sds: measured in docs/verdicts.md, minus slack.
POWER_CASES = [
    ("greater", None, 5, 2.0, MARGIN, 0.45),      # measured 58 %
    ("greater", None, 10, 2.0, MARGIN, 0.88),     # 96 %
    ("greater", "worse", 5, 2.0, MARGIN, 0.6),    # 72 %
    ("not_worse", None, 10, 0.0, 2.0, 0.88),      # 96 %
    ("equal", None, 10, 0.0, 2.0, 0.82),          # 92 %
    ("equal", "worse", 5, 0.0, 2.0, 0.45),        # 56 %
]


@pytest.mark.parametrize("kind, fixed, n, diff, margin, least", POWER_CASES)
def test_power_on_real_effects(kind: str, fixed: str | None, n: int, diff: float, margin: float, least: float) -> None:
    assert holds_rate(kind, diff, n, fixed, reps=400, seed=1, margin=margin) >= least


if __name__ == "__main__":  # the table of docs/verdicts.md
    for fixed in (None, "worse"):
        for kind in KINDS_ORDER:
            rates = [holds_rate(kind, BOUNDARY[kind], n, fixed, reps=20000) for n in SEEDS]
            print(f"| {kind} | {'vs ensemble' if fixed else 'two rows'} | "
                  + " | ".join(f"{100 * r:.1f}" for r in rates) + " |")
    for kind, fixed, diff in [("greater", None, 1.0), ("greater", None, 2.0), ("greater", "worse", 2.0),
                              ("not_worse", None, 0.0), ("equal", None, 0.0)]:
        print(f"power {kind} {'vs ensemble' if fixed else 'two rows'} diff {diff} sd:",
              " ".join(f"n={n}: {100 * holds_rate(kind, diff, n, fixed, reps=4000, seed=1):.0f}%"
                       for n in (2, 3, 5, 10)))
