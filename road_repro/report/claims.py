"""A table's claims, checked on the runs: each claim of the spec (``claims:``) becomes one verdict.

For a claim "row A beats row B on (task, metric)" the per-seed values of both rows come from the table's
tidy CSV, the paper's own difference from ``paper_tables.csv``, and the verdict from
:func:`road_repro.report.verdicts.compare`, Bonferroni-corrected over the table's claims, with the claim's
own margin. An ensemble row (``recipe: ensemble``) is one averaged model, not one run per seed: it enters as
a fixed reference (a one-sample test of the other row's seeds). At the smoke scale the verdicts are pipeline
checks of the statistics, not evidence about the paper (every page says so).
"""

from __future__ import annotations

import pandas as pd

from road_repro.config import TableSpec
from road_repro.report.summary import paper_values
from road_repro.report.verdicts import compare, describe_test

CLAIM_COLUMNS = ["table", "claim", "kind", "better", "worse", "paper_model", "worse_paper_model", "dataset", "metric",
                 "paper_diff", "n_better", "n_worse", "mean_better", "mean_worse", "mean_diff", "ci_low", "ci_high",
                 "ci_level",
                 "eps_min", "eps_min_reverse", "verdict", "seeds_needed", "explanation", "runs_better", "runs_worse",
                 "profile", "test", "statistic", "df", "p_value", "margin", "margin_source", "conflict", "change"]


def _values(frame: pd.DataFrame, method: str, paper_model: str | None, dataset: str, metric: str) -> pd.DataFrame:
    rows = frame[(frame["method"] == method) & (frame["dataset"] == dataset) & (frame["metric"] == metric)]
    if paper_model is not None:
        rows = rows[rows["paper_model"].fillna("") == paper_model]
    return rows


def _paper(ref: pd.DataFrame, method: str, paper_model: str | None, dataset: str, metric: str) -> float | None:
    rows = ref[(ref["method"] == method) & (ref["dataset"] == dataset) & (ref["metric"] == metric)]
    if paper_model is not None:
        rows = rows[rows["paper_model"] == paper_model]
    return float(rows["paper"].iloc[0]) if len(rows) else None


def fixed_side(spec: TableSpec, better: tuple[str, str | None], worse: tuple[str, str | None]) -> str | None:
    """Which side of a claim, each ``(method, paper_model)``, is an ensemble row (one value, a fixed
    reference), if either."""
    ensembles = {(r.method, r.paper_model) for r in spec.rows if r.recipe == "ensemble"}
    return "worse" if worse in ensembles else "better" if better in ensembles else None


def evaluate_claims(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """One line per claim of ``spec``: the paper's difference, ours with its CI, ASO and the verdict."""
    ref = paper_values(spec)
    profile = frame["profile"].iloc[0] if len(frame) else ""
    records = []
    for claim in spec.claims:
        keys = (claim.paper_model, claim.dataset, claim.metric)
        worse_keys = (claim.worse_paper_model or claim.paper_model, claim.dataset, claim.metric)
        a, b = _values(frame, claim.better, *keys), _values(frame, claim.worse, *worse_keys)
        pa, pb = _paper(ref, claim.better, *keys), _paper(ref, claim.worse, *worse_keys)
        record = {"table": spec.table, "claim": claim.claim, "kind": claim.kind, "better": claim.better,
                  "worse": claim.worse, "paper_model": claim.paper_model or "",
                  "worse_paper_model": claim.worse_paper_model or "", "dataset": claim.dataset,
                  "metric": claim.metric, "paper_diff": None if pa is None or pb is None else round(pa - pb, 4),
                  "n_better": len(a), "n_worse": len(b), "runs_better": " ".join(a["run_id"]),
                  "runs_worse": " ".join(b["run_id"]), "profile": profile, "margin": claim.margin,
                  "margin_source": claim.margin_source, "conflict": claim.conflict}
        fixed = fixed_side(spec, (claim.better, claim.paper_model), (claim.worse, worse_keys[0]))
        record["test"] = describe_test(claim.kind, fixed)
        if len(a) and len(b):
            v = compare(a["value"].tolist(), b["value"].tolist(), kind=claim.kind, margin=claim.margin, fixed=fixed,
                        n_comparisons=len(spec.claims))
            record.update(mean_better=a["value"].mean(), mean_worse=b["value"].mean(), mean_diff=v.mean_diff,
                          ci_low=v.ci_low, ci_high=v.ci_high, ci_level=v.ci_level, eps_min=v.eps_min,
                          eps_min_reverse=v.eps_min_reverse, verdict=v.verdict, seeds_needed=v.seeds_needed,
                          explanation=v.explanation, statistic=v.statistic, df=v.df, p_value=v.p_value,
                          change=v.change)
        else:
            record.update(verdict="not run", explanation="one of the two rows has no runs at this scale")
        records.append(record)
    return pd.DataFrame.from_records(records, columns=CLAIM_COLUMNS)
