"""Claim verdicts: does a comparison the paper makes hold on these runs?

A claim compares two rows of a table on one metric -- "Weighted KD beats KD on SQuAD 2.0 F1", "KD is about
equal to the ensemble" -- and :func:`compare` turns the per-seed scores of the two rows into a
:class:`Verdict`. The rule is stated once, in :data:`RULE` (:func:`rule_text` fills in the numbers for the
report page); ``tests/report/test_verdict_calibration.py`` proves it by simulation and ``docs/verdicts.md``
gives the measured rates.

Why t-based intervals and not ASO alone: with 2-5 seeds per row the bootstrap of Almost Stochastic Order
(Dror et al. 2019) has almost no spread -- when one row's seeds all sit above the other's, ``eps_min`` is 0
at any confidence -- so "holds" fired at 3-15 times its nominal level when the rows were equal. Student-t
intervals are exact for normal seed noise at any n >= 2, so the false-"holds" rate stays at the nominal
level. ASO is kept as a second, necessary condition for "beats" (dominance, not only a mean shift) and is
shown for every claim.

* **Two rows with seeds**: Welch's t interval of ``mean(A) - mean(B)`` (unequal variances,
  Welch-Satterthwaite degrees of freedom); each seed is a separate training run, so rows are not paired.
* **A row with a single value** (an ensemble: one averaged model, not one run per seed): the other row's
  seeds against that value as a fixed reference -- a one-sample t interval. The reference's own noise is
  not modelled (it has no replicate), which the page says.
* **Intervals** are two-sided at ``1 - 2 alpha/m``, so each end is a one-sided bound at ``1 - alpha/m``:
  "beats" is a one-sided t-test, "about equal" is TOST (two one-sided tests, Schuirmann 1987) and "not
  worse" a non-inferiority test, each at ``alpha/m`` (Bonferroni over a table's m claims).
* **ASO** ``eps_min(A > B)`` is deepsig's estimator (``deepsig.aso``, deepsig 1.2.8, same quantile function,
  integration grid ``dt = 0.005``, bootstrap and per-iteration seeding), vectorised; the test suite checks
  the two agree to 1e-9.
* **Seeds needed**: a power analysis (noncentral t) on the observed spread -- the seeds per row (or on
  the seeded row, against a fixed reference) at which the observed difference is separated from the claim's
  nearest boundary with :data:`POWER` power at ``alpha/m``. Never asked of a row that cannot have seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import stats

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
#: Fewer seeds than this on a row that has seeds and there is no verdict (a t interval needs a spread).
MIN_SEEDS = 2
#: Power targeted by ``seeds_needed``.
POWER = 0.8
#: ``seeds_needed`` looks no further than this.
MAX_SEEDS = 1000
#: Integration step over the quantile functions (``deepsig.aso``'s default).
DT = 0.005
#: Which side of a claim is a single fixed value (an ensemble), if any.
FIXED_SIDES = (None, "better", "worse")

#: Standard normal quantile function.
_Z = NormalDist().inv_cdf

RULE = (
    "Each claim compares the per-seed scores of two rows on one metric: A, the row claimed better (or equal, "
    "or not worse), and B. With m claims on a table each is tested at the Bonferroni-corrected level alpha/m "
    "(alpha = {alpha}). The interval of the mean difference A - B is a Student-t interval at 100(1 - 2 alpha/m)%, "
    "so each end is a one-sided bound at 1 - alpha/m: Welch's t (unequal variances) when both rows have seeds; "
    "a one-sample t of the seeded row against the other row's single value, taken as a fixed reference, when "
    "that row is an ensemble (one averaged model, no seeds). "
    "'A beats B' holds if the interval lies above 0 and A almost stochastically dominates B (ASO, Dror et al. "
    "2019: eps_min(A > B) < eps = {eps} at confidence 1 - alpha/m); it is reversed if the interval lies below 0 "
    "and B dominates A. "
    "'A is about equal to B' (margin d, given per claim in its spec) holds if the interval lies within (-d, d) "
    "(TOST); it is reversed if the interval lies wholly beyond +d or wholly below -d. "
    "'A is not worse than B' holds if the interval's lower end is above -d (non-inferiority); it is reversed "
    "if the whole interval lies below -d. "
    "Anything else is inconclusive. With fewer than {min_seeds} seeds on a row that has seeds the verdict is "
    "'too few seeds' (the mean difference is still shown). When a claim is false -- equal rows for 'beats', a "
    "true difference of exactly the margin for 'about equal' and 'not worse' -- 'holds' comes at most at rate "
    "alpha/m for any number of seeds >= 2 (normal seed noise; checked by simulation, docs/verdicts.md). "
    "'Seeds needed' is the seeds per row (on the seeded row, against an ensemble) at which the observed "
    "difference would be resolved against the claim's nearest boundary with {power:.0%} power (one-sided t "
    "test at alpha/m, pooled spread of the seeded rows)."
)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim; differences are ``better - worse`` in the metric's units (points)."""

    kind: str
    verdict: str
    test: str
    mean_diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    statistic: float
    df: float
    p_value: float
    eps_min: float
    eps_min_reverse: float
    margin: float
    n_better: int
    n_worse: int
    seeds_needed: int | None
    change: str
    explanation: str


def rule_text(*, alpha: float = ALPHA, eps: float = EPS) -> str:
    """The verdict rule as one paragraph for the report page, with the thresholds in use."""
    return RULE.format(alpha=alpha, eps=eps, min_seeds=MIN_SEEDS, power=POWER)


def describe_test(kind: str, fixed: str | None) -> str:
    """The test a claim of ``kind`` uses, in words (the page's 'test' column)."""
    base = "one-sample t vs the ensemble's single value (fixed reference)" if fixed else "Welch t"
    return {"greater": f"one-sided {base} + ASO", "equal": f"TOST, {base}",
            "not_worse": f"non-inferiority, {base}"}[kind]


# --- the t intervals (vectorised over leading axes, for the calibration simulation) -------------------------

def t_interval(better: np.ndarray, worse: np.ndarray, *, fixed: str | None = None,
               level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(diff, se, df, low, high)`` of ``mean(better) - mean(worse)`` over the last axis of ``[..., n]`` arrays.

    ``fixed``: which side is one fixed value (its last axis has length 1), or ``None`` for Welch's interval.
    ``low``/``high`` are the ends of the two-sided ``1 - 2 (1 - level)`` interval, i.e. one-sided bounds at
    ``level``. A zero spread (every seed the same, e.g. a collapsed model) estimates no noise at all: its
    interval is unbounded (``-inf, inf``), so such a claim is inconclusive rather than decided at p = 0."""
    diff = better.mean(axis=-1) - worse.mean(axis=-1)
    if fixed is None:
        va, vb = better.var(axis=-1, ddof=1) / better.shape[-1], worse.var(axis=-1, ddof=1) / worse.shape[-1]
        se = np.sqrt(va + vb)
        denom = va**2 / (better.shape[-1] - 1) + vb**2 / (worse.shape[-1] - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            df = np.where(denom > 0, (va + vb) ** 2 / np.where(denom > 0, denom, 1.0),
                          better.shape[-1] + worse.shape[-1] - 2.0)
    else:
        seeded = worse if fixed == "better" else better
        se = seeded.std(axis=-1, ddof=1) / math.sqrt(seeded.shape[-1])
        df = np.full(np.shape(diff), seeded.shape[-1] - 1.0)
    q = stats.t.ppf(level, df)
    bounded = se > 0
    return diff, se, df, np.where(bounded, diff - q * se, -np.inf), np.where(bounded, diff + q * se, np.inf)


def decide(kind: str, low: np.ndarray, high: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``(holds, reversed)`` by the interval alone (before ASO), for a claim of ``kind`` with ``margin``."""
    if kind == "greater":
        return low > 0, high < 0
    if kind == "equal":
        return (low > -margin) & (high < margin), (low > margin) | (high < -margin)
    return low > -margin, high < -margin


def verdicts(better: np.ndarray, worse: np.ndarray, *, kind: str = "greater", margin: float = 0.0,
             fixed: str | None = None, alpha: float = ALPHA, eps: float = EPS, n_comparisons: int = 1,
             n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """The rule's verdict for each row of ``[R, n]`` score arrays (the same rule as :func:`compare`, for
    simulation): the t interval decides, and for "beats" ASO is computed where the interval already says holds
    or reversed (ASO can only turn those into inconclusive)."""
    level = 1 - alpha / n_comparisons
    _, _, _, low, high = t_interval(better, worse, fixed=fixed, level=level)
    holds, rev = decide(kind, low, high, margin)
    out = np.full(low.shape, INCONCLUSIVE, dtype=object)
    if kind == "greater":
        for i in np.flatnonzero(holds | rev):
            a, b = (better[i], worse[i]) if holds[i] else (worse[i], better[i])
            if aso_eps_min(a, b, confidence=level, n_boot=n_boot, seed=seed) >= eps:
                holds[i] = rev[i] = False
    out[holds], out[rev] = HOLDS, REVERSED
    return out


# --- ASO -------------------------------------------------------------------------------------------------

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
    seed=seed)`` returns, vectorised over the bootstrap iterations (``deepsig.aso`` loops in Python through
    joblib, ~9 s per call at 1000 iterations, and imports torch)."""
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


# --- one claim ---------------------------------------------------------------------------------------------

def _boundaries(kind: str, margin: float) -> tuple[float, float]:
    """The differences the interval must clear: ``(lower end above, upper end below)`` for "holds"."""
    return {"greater": (0.0, math.inf), "equal": (-margin, margin), "not_worse": (-margin, math.inf)}[kind]


def _seeds_needed(better: np.ndarray, worse: np.ndarray, fixed: str | None, distance: float,
                  level: float) -> int | None:
    """Seeds per row (on the seeded row, against a fixed value) at which a true difference ``distance`` from the
    nearest boundary is resolved with :data:`POWER` power by the one-sided t test at ``level`` (noncentral t,
    pooled spread of the seeded rows); :data:`MIN_SEEDS` while no spread is observed, ``None`` when the observed
    difference sits on the boundary or more than :data:`MAX_SEEDS` would be needed."""
    rows = [x for side, x in (("better", better), ("worse", worse)) if side != fixed]
    spread = [(x.size - 1, np.var(x, ddof=1)) for x in rows if x.size >= MIN_SEEDS]
    if not spread:
        return MIN_SEEDS
    sd = math.sqrt(sum(d * v for d, v in spread) / sum(d for d, _ in spread))
    if distance < 1e-9:
        return None
    if sd == 0:
        return MIN_SEEDS
    k = np.arange(MIN_SEEDS, MAX_SEEDS + 1)
    df = k - 1.0 if fixed else 2.0 * k - 2
    ncp = distance / (sd * np.sqrt((1 if fixed else 2) / k))
    power = stats.nct.sf(stats.t.ppf(level, df), df, ncp)
    enough = np.flatnonzero(power >= POWER)
    return int(k[enough[0]]) if enough.size else None


def _scores(values: Sequence[float], name: str) -> np.ndarray:
    """Scores as a 1-d float array; ``ValueError`` if empty or not finite."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"compare: {name} needs at least one finite score, got {list(values)!r}")
    return arr


def _t(distance: float, se: float) -> float:
    """The t statistic of ``distance`` above a boundary; +-inf (or 0 on the boundary) when the spread is 0."""
    if se > 0:
        return distance / se
    return math.copysign(math.inf, distance) if distance else 0.0


def _change(kind: str, margin: float, half: float, needed: int | None, on: str) -> str:
    """One line: what would change the verdict (at this spread and n, or with more seeds)."""
    more = f"; about {needed} seeds {on} would resolve the observed difference" if needed else ""
    if kind == "greater":
        return f"at this spread and n: holds above +{half:.2f} (with ASO), reversed below -{half:.2f}{more}"
    if kind == "not_worse":
        return f"at this spread and n: holds above {-margin + half:+.2f}, reversed below {-margin - half:+.2f}{more}"
    if half >= margin:
        return (f"at this spread and n: cannot hold (interval half-width {half:.2f} >= margin {margin}), reversed if "
                f"|difference| > {margin + half:.2f}{more}")
    return (f"at this spread and n: holds if |difference| < {margin - half:.2f}, reversed if > {margin + half:.2f}"
            f"{more}")


def compare(
    better: Sequence[float],
    worse: Sequence[float],
    *,
    kind: str = "greater",
    margin: float | None = None,
    fixed: str | None = None,
    alpha: float = ALPHA,
    eps: float = EPS,
    n_comparisons: int = 1,
    seed: int = 0,
    n_boot: int = 2000,
) -> Verdict:
    """Verdict on the claim that the row scoring ``better`` (per seed) beats / equals / is not worse than ``worse``.

    ``kind`` is one of :data:`KINDS`; ``margin`` (points) is required for "equal" and "not_worse";
    ``fixed`` names the side that is one fixed value (an ensemble); ``n_comparisons`` is the number of claims
    checked on the table (Bonferroni); ``n_boot`` bootstrap iterations serve ASO. The rule is :data:`RULE`.
    """
    if kind not in KINDS:
        raise ValueError(f"compare: kind must be one of {KINDS}, got {kind!r}")
    if fixed not in FIXED_SIDES:
        raise ValueError(f"compare: fixed must be one of {FIXED_SIDES}, got {fixed!r}")
    if kind != "greater" and (margin is None or margin <= 0):
        raise ValueError(f"compare: a {kind!r} claim needs a margin > 0 (points), got {margin!r}")
    if not 0 < alpha < 1 or not 0 < eps < 1 or n_comparisons < 1 or n_boot < 1:
        raise ValueError(f"compare: need 0 < alpha, eps < 1, n_comparisons >= 1, n_boot >= 1; got "
                         f"{alpha=}, {eps=}, {n_comparisons=}, {n_boot=}")
    b, w = _scores(better, "better"), _scores(worse, "worse")
    if fixed is not None and (b if fixed == "better" else w).size != 1:
        raise ValueError(f"compare: the fixed side ({fixed}) must be one value")
    margin = 0.0 if kind == "greater" else float(margin)
    level = 1 - alpha / n_comparisons
    test = describe_test(kind, fixed)
    seeded = [x for side, x in (("better", b), ("worse", w)) if side != fixed]
    on = "on the seeded row" if fixed else "per row"
    diff = float(b.mean() - w.mean())
    lower, upper = _boundaries(kind, margin)
    distance = min(abs(diff - lower), abs(diff - upper)) if kind == "equal" else abs(diff - lower)
    needed = _seeds_needed(b, w, fixed, distance, level)
    sizes = f"{'1 (fixed)' if fixed == 'better' else b.size} vs {'1 (fixed)' if fixed == 'worse' else w.size}"
    if min(x.size for x in seeded) < MIN_SEEDS:
        if fixed is None and max(b.size, w.size) < MIN_SEEDS:
            plan = f"no spread observed: run at least {MIN_SEEDS} seeds per row"
        elif needed is not None:
            plan = f"about {needed} seeds {on} needed"
        else:
            plan = "the difference sits on the decision boundary"
        nan = math.nan
        return Verdict(kind, TOO_FEW, test, diff, nan, nan, nan, nan, nan, nan, nan, nan, margin, b.size, w.size,
                       needed, plan,
                       f"{TOO_FEW}: fewer than {MIN_SEEDS} seeds {on}; mean difference {diff:+.2f}, {sizes} seeds")
    d, se, df, low, high = (float(x[0]) for x in t_interval(b[None], w[None], fixed=fixed, level=level))
    holds, rev = (bool(x[0]) for x in decide(kind, np.array([low]), np.array([high]), margin))
    forward = aso_eps_min(b, w, confidence=level, n_boot=n_boot, seed=seed)
    reverse = aso_eps_min(w, b, confidence=level, n_boot=n_boot, seed=seed)
    if kind == "equal":  # TOST: the smaller of the two one-sided statistics (the larger p-value)
        statistic = min(_t(d + margin, se), _t(margin - d, se))
    else:
        statistic = _t(d - lower, se)
    # zero spread: no noise estimate, so no test (the interval is unbounded, see t_interval)
    statistic, p_value = (statistic, float(stats.t.sf(statistic, df))) if se > 0 else (math.nan, math.nan)
    aso_note = f"eps_min(A > B) = {forward:.2f}, eps_min(B > A) = {reverse:.2f} (eps = {eps})"
    if kind == "greater":
        holds, rev = holds and forward < eps, rev and reverse < eps
    verdict = HOLDS if holds else REVERSED if rev else INCONCLUSIVE
    half = (high - low) / 2
    interval = f"{100 * (1 - 2 * (1 - level)):.4g}% interval {low:+.2f} to {high:+.2f}"
    bound = "" if kind == "greater" else f", margin {margin}"
    return Verdict(kind, verdict, test, diff, low, high, 1 - 2 * (1 - level), statistic, df, p_value, forward,
                   reverse, margin, b.size, w.size, needed, _change(kind, margin, half, needed, on),
                   f"{verdict}: {test}: mean difference {diff:+.2f}, {interval}{bound}; t = {statistic:.2f}, "
                   f"df = {df:.1f}, p = {p_value:.3g}; {aso_note}; {sizes} seeds; alpha = {alpha}/{n_comparisons}")
