"""Summaries: mean and standard deviation over seeds beside the paper's number and the difference.

The paper's numbers ship with the package (``paper_tables.csv``: every number of paper Tables 2-7 and
of the ROaD-Base blog's tables, one row per number); a test keeps it identical to the reference copy.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from road_repro.config import TableSpec

SUMMARY_COLUMNS = ["table", "row", "method", "dataset", "metric", "n", "mean", "std", "min", "max", "seeds",
                   "paper", "diff", "profile"]


@lru_cache(maxsize=1)
def paper_tables() -> pd.DataFrame:
    """Every paper and blog number (columns: table, source, row, model, method, metric, dataset, split, value)."""
    with resources.files("road_repro.report").joinpath("paper_tables.csv").open() as fh:
        return pd.read_csv(fh)


def paper_values(spec: TableSpec) -> pd.DataFrame:
    """The paper's rows for ``spec`` keyed by (method, dataset, metric); model filter when the table has several."""
    ref = paper_tables()
    ref = ref[ref["table"] == spec.table]
    return ref.rename(columns={"value": "paper"})[["method", "dataset", "metric", "paper"]].drop_duplicates(
        ["method", "dataset", "metric"])


def summarize(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Per (row, metric): n, mean, sample std over seeds, min, max, the seeds, the paper value and mean - paper."""
    keys = ["table", "row", "method", "dataset", "metric", "profile"]
    grouped = frame.groupby(keys, sort=False, dropna=False)
    summary = grouped["value"].agg(n="count", mean="mean", std="std", min="min", max="max").reset_index()
    seeds = grouped["seed"].agg(lambda s: " ".join(str(int(x)) for x in s.dropna()) or "ensemble").reset_index()
    summary = summary.merge(seeds.rename(columns={"seed": "seeds"}), on=keys)
    summary = summary.merge(paper_values(spec), on=["method", "dataset", "metric"], how="left")
    summary["diff"] = summary["mean"] - summary["paper"]
    return summary[SUMMARY_COLUMNS]


def wide_view(summary: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """The printed-table layout: one line per row, ``mean ± std (paper)`` per metric."""
    sub = summary[summary["metric"].isin(metrics)].copy()

    def cell(r: pd.Series) -> str:
        spread = f" ± {r['std']:.2f}" if pd.notna(r["std"]) else ""
        paper = f"{r['paper']:.2f}" if pd.notna(r["paper"]) else "–"
        return f"{r['mean']:.2f}{spread} (n={r['n']}) | paper {paper}"

    sub["cell"] = sub.apply(cell, axis=1)
    wide = sub.pivot_table(index=["row", "method"], columns="metric", values="cell", aggfunc="first")
    return wide[[m for m in metrics if m in wide.columns]].reset_index()
