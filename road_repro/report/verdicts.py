"""Claim verdicts: does a comparison the paper makes hold on these runs?

A claim compares two rows of a table on one metric -- "Weighted KD beats KD on SQuAD 2.0 F1", "KD is about
equal to the ensemble", "ROaD-Base v1.1 without KD is not worse on MNLI-m" -- and :func:`compare` turns the
per-seed scores of the two rows into a :class:`Verdict`. The rule is stated once, in :data:`RULE`
(:func:`rule_text` fills in the numbers for the report page).

Statistics, all deterministic given ``seed``:

* **Mean difference** (claimed-better minus other row) with a **percentile bootstrap CI**. The two rows are
  resampled independently (unpaired): seed ``s`` of one method and seed ``s`` of another are separate
  training runs, so pairing them by seed number would invent a correlation. The CI's level is the
  Bonferroni-corrected ``1 - alpha / n_comparisons`` (95% for a single comparison).
* **Almost Stochastic Order** (Dror, Shlomov and Reichart 2019, "Deep Dominance"): ``eps_min(A > B)`` is the
  upper confidence bound, at ``1 - alpha / n_comparisons``, of the violation ratio -- the share of the squared
  Wasserstein distance between the two rows' empirical quantile functions where A's quantile lies below B's.
  ``eps_min < eps`` (0.2 by default) means A almost stochastically dominates B. Both directions are computed.
  This is deepsig's estimator (``deepsig.aso``, deepsig 1.2.8, same quantile function, integration grid
  ``dt = 0.005``, bootstrap and per-iteration seeding), vectorised: ``deepsig.aso`` loops in Python through
  joblib and takes about 9 s per direction at 1000 bootstrap iterations on one core, too slow for a report
  of many claims, and importing it imports torch. ``tests/report/test_verdicts.py`` checks that the two agree
  to 1e-9 (deepsig is a dev dependency for that check). The Bonferroni correction is applied here, as
  ``confidence = 1 - alpha / n_comparisons``; deepsig's own ``num_comparisons`` argument raises the
  confidence level to ``c + (1 - c) / m``, which is Bonferroni only for ``m = 2``.
* **Seeds needed**: a normal-approximation power analysis on the observed spread (pooled standard deviation
  of the rows with at least two seeds) -- the seeds per row at which a difference as large as the observed
  one is separated from the claim's decision boundary (0 for "greater", +-tolerance for "equal", -tolerance for
  "not_worse") at the corrected level with :data:`POWER` power: ``k = 2 ((z_alpha + z_power) sd / margin)^2``.
  deepsig offers no sample-size routine that fits (its ``bootstrap_power_analysis`` lifts scores by a
  factor, 25% by default, which on F1 around 80 is 20 points); this estimate approximates the ASO
  decision, it does not model it. It is ``None`` when the observed difference sits exactly on the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: The kinds of claim: the first row beats / is about equal to / is not worse than the second.
KINDS = ("greater", "equal", "not_worse")
HOLDS = "holds"
REVERSED = "reversed"
INCONCLUSIVE = "inconclusive"
TOO_FEW = "too few seeds"
#: Family-wise error rate of a table's claims (Bonferroni over ``n_comparisons``).
ALPHA = 0.05
#: ASO threshold: ``eps_min(A > B) < EPS`` means A almost stochastically dominates B.
EPS = 0.2
#: Points within which two rows count as "about equal" / "not worse" (scores are in percent).
TOLERANCE = 0.5
#: Fewer seeds than this on either row and there is no verdict.
MIN_SEEDS = 2
#: Power targeted by ``seeds_needed``.
POWER = 0.8
#: Integration step over the quantile functions (``deepsig.aso``'s default).
DT = 0.005

#: Standard normal quantile function.
_Z = NormalDist().inv_cdf

RULE = (
    "Each claim compares the per-seed scores of two rows on one metric: A, the row claimed better (or equal, "
    "or not worse), and B. With m claims on a table each is tested at the Bonferroni-corrected level "
    "alpha/m (alpha = {alpha}); the confidence interval (CI) of the mean difference A - B is a 100(1 - alpha/m)% "
    "percentile bootstrap, each row's seeds resampled independently. A dominates B when the Almost "
    "Stochastic Order bound eps_min(A > B) (Dror et al. 2019, at confidence 1 - alpha/m) is below "
    "eps = {eps}. "
    "'A beats B' holds if A dominates B, is reversed if B dominates A, and is inconclusive otherwise. "
    "'A is about equal to B' holds if the CI lies within +-{tolerance} points, is reversed (the rows differ) "
    "if one row dominates the other, and is inconclusive otherwise. "
    "'A is not worse than B' holds if the CI's lower end is above -{tolerance} points or A dominates B, is "
    "reversed if B dominates A, and is inconclusive otherwise. "
    "With fewer than {min_seeds} seeds on either row the verdict is 'too few seeds' (mean difference and CI "
    "are still shown). 'Seeds needed' is the number of seeds per row at which the observed difference would "
    "be resolved against the claim's boundary with {power:.0%} power (normal approximation, pooled spread)."
)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim; differences are ``better - worse`` in the metric's units (points)."""

    kind: str
    verdict: str
    mean_diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    eps_min: float
    eps_min_reverse: float
    n_better: int
    n_worse: int
    seeds_needed: int | None
    explanation: str


def rule_text(*, alpha: float = ALPHA, eps: float = EPS, tolerance: float = TOLERANCE) -> str:
    """The verdict rule as one paragraph for the report page, with the thresholds in use."""
    return RULE.format(alpha=alpha, eps=eps, tolerance=tolerance, min_seeds=MIN_SEEDS, power=POWER)


def _quantile_index(n: int, p: np.ndarray) -> np.ndarray:
    """Indices into sorted scores of the empirical quantile function at ``p`` (deepsig's definition)."""
    return np.clip(np.ceil(n * p).astype(np.int64) - 1, 0, n - 1)


def _violation_ratios(a_sorted: np.ndarray, b_sorted: np.ndarray) -> np.ndarray:
    """Violation ratio of A over B for each row of sorted score samples ``[R, n_a]``, ``[R, n_b]``."""
    t = np.arange(DT, 1, DT)
    f = a_sorted[:, _quantile_index(a_sorted.shape[1], t)]
    g = b_sorted[:, _quantile_index(b_sorted.shape[1], t)]
    diff = g - f
    w2 = np.sum(diff**2 * DT, axis=1)
    violation = np.sum(np.where(f >= g, 0.0, diff)[:, 1:] ** 2 * DT, axis=1)
    safe = np.where(w2 == 0, 1.0, w2)
    return np.where(w2 == 0, 0.5, violation / safe)


def aso_eps_min(a: Sequence[float], b: Sequence[float], *, confidence: float, n_boot: int, seed: int) -> float:
    """``eps_min(A > B)``: what ``deepsig.aso(a, b, confidence_level=confidence, num_bootstrap_iterations=n_boot,
    seed=seed)`` returns (see the module docstring), vectorised over the bootstrap iterations."""
    a_sorted = np.sort(np.asarray(a, dtype=np.float64))
    b_sorted = np.sort(np.asarray(b, dtype=np.float64))
    n_a, n_b = a_sorted.size, b_sorted.size
    ratio = _violation_ratios(a_sorted[None], b_sorted[None])[0]
    u_a, u_b = np.empty((n_boot, n_a)), np.empty((n_boot, n_b))
    rng = np.random.RandomState()
    for i in range(n_boot):  # deepsig seeds iteration i with seed + 1 + i, then draws A's then B's uniforms
        rng.seed(seed + 1 + i)
        u_a[i] = rng.uniform(0, 1, n_a)
        u_b[i] = rng.uniform(0, 1, n_b)
    samples = _violation_ratios(np.sort(a_sorted[_quantile_index(n_a, u_a)], axis=1),
                                np.sort(b_sorted[_quantile_index(n_b, u_b)], axis=1))
    const = math.sqrt(n_a * n_b / (n_a + n_b))
    sigma = np.std(const * (samples - ratio))
    return float(np.clip(ratio - sigma / const * _Z(1 - confidence), 0, 1))


def _bootstrap_ci(better: np.ndarray, worse: np.ndarray, level: float, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(better) - mean(worse)``, each side resampled independently."""
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(better, size=(n_boot, better.size)).mean(axis=1)
             - rng.choice(worse, size=(n_boot, worse.size)).mean(axis=1))
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _seeds_needed(better: np.ndarray, worse: np.ndarray, margin: float, z_alpha: float) -> int | None:
    """Seeds per row for ``margin`` (distance of the observed difference from the boundary) to be resolved with
    :data:`POWER` power at ``z_alpha``; :data:`MIN_SEEDS` when no row has a spread yet, ``None`` for margin 0."""
    spread = [(x.size - 1, np.var(x, ddof=1)) for x in (better, worse) if x.size >= MIN_SEEDS]
    if not spread:
        return MIN_SEEDS
    if margin < 1e-9:  # the observed difference is on the boundary (up to rounding)
        return None
    sd = math.sqrt(sum(d * v for d, v in spread) / sum(d for d, _ in spread))
    return max(MIN_SEEDS, math.ceil(2 * ((z_alpha + _Z(POWER)) * sd / margin) ** 2))


def _scores(values: Sequence[float], name: str) -> np.ndarray:
    """Scores as a 1-d float array; ``ValueError`` if empty or not finite."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"compare: {name} needs at least one finite score, got {list(values)!r}")
    return arr


def compare(
    better: Sequence[float],
    worse: Sequence[float],
    *,
    kind: str = "greater",
    alpha: float = ALPHA,
    eps: float = EPS,
    tolerance: float = TOLERANCE,
    n_comparisons: int = 1,
    seed: int = 0,
    n_boot: int = 2000,
) -> Verdict:
    """Verdict on the claim that the row scoring ``better`` (per seed) beats / equals / is not worse than ``worse``.

    ``kind`` is one of :data:`KINDS`; ``n_comparisons`` is the number of claims checked on the table
    (Bonferroni); ``n_boot`` bootstrap iterations serve both the CI and ASO. The rule is :data:`RULE`.
    """
    if kind not in KINDS:
        raise ValueError(f"compare: kind must be one of {KINDS}, got {kind!r}")
    if not 0 < alpha < 1 or not 0 < eps < 1 or tolerance < 0 or n_comparisons < 1 or n_boot < 1:
        raise ValueError(f"compare: need 0 < alpha, eps < 1, tolerance >= 0, n_comparisons >= 1, n_boot >= 1; got "
                         f"{alpha=}, {eps=}, {tolerance=}, {n_comparisons=}, {n_boot=}")
    b, w = _scores(better, "better"), _scores(worse, "worse")
    level = 1 - alpha / n_comparisons
    diff = float(b.mean() - w.mean())
    low, high = _bootstrap_ci(b, w, level, n_boot, seed)
    z_two = _Z(1 - (1 - level) / 2)
    margin, z_alpha = {"greater": (abs(diff), _Z(level)),
                       "equal": (abs(tolerance - abs(diff)), z_two),
                       "not_worse": (abs(diff + tolerance), z_two)}[kind]
    needed = _seeds_needed(b, w, margin, z_alpha)
    where = (f"mean difference {diff:+.2f} ({100 * level:.4g}% CI {low:+.2f} to {high:+.2f}), "
             f"{b.size} vs {w.size} seeds")
    if min(b.size, w.size) < MIN_SEEDS:
        plan = (f"no spread observed: run at least {MIN_SEEDS} seeds per row" if max(b.size, w.size) < MIN_SEEDS
                else f"about {needed} seeds per row needed" if needed is not None
                else "the difference sits on the decision boundary")
        return Verdict(kind, TOO_FEW, diff, low, high, level, math.nan, math.nan, b.size, w.size, needed,
                       f"{TOO_FEW}: fewer than {MIN_SEEDS} on a row; {where}; {plan}")
    forward = aso_eps_min(b, w, confidence=level, n_boot=n_boot, seed=seed)
    reverse = aso_eps_min(w, b, confidence=level, n_boot=n_boot, seed=seed)
    aso = f"eps_min(A > B) = {forward:.2f}, eps_min(B > A) = {reverse:.2f} (eps = {eps})"
    if kind == "greater":
        verdict = HOLDS if forward < eps else REVERSED if reverse < eps else INCONCLUSIVE
    elif kind == "equal":
        within = -tolerance <= low and high <= tolerance
        verdict = HOLDS if within else REVERSED if min(forward, reverse) < eps else INCONCLUSIVE
        aso += f"; CI {'within' if within else 'not within'} +-{tolerance}"
        if verdict == REVERSED:
            aso += "; the rows differ"
    else:
        verdict = HOLDS if low > -tolerance or forward < eps else REVERSED if reverse < eps else INCONCLUSIVE
        aso += f"; CI lower end {'above' if low > -tolerance else 'at or below'} -{tolerance}"
    return Verdict(kind, verdict, diff, low, high, level, forward, reverse, b.size, w.size, needed,
                   f"{verdict}: {aso}; {where}; alpha = {alpha}/{n_comparisons}")
