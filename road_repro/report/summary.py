"""Summaries: mean and standard deviation over seeds beside the paper's number and the difference.

The paper's numbers ship with the package (``paper_tables.csv``: every number of paper Tables 2-7 and
of the ROaD-Base blog's tables, one row per number); a test keeps it identical to the reference copy.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd

from road_repro.config import TableSpec

KEYS = ["table", "row", "method", "paper_model", "dataset", "metric", "profile"]
SUMMARY_COLUMNS = [*KEYS[:6], "n", "mean", "std", "min", "max", "seeds", "paper", "diff", "profile", "note"]

#: Notes on rows whose paper number was quoted from another publication.
PUBLISHED_NOT_RUN = "published, not run"
PUBLISHED_AND_RUN = "published number; our run of the public encoder"


@lru_cache(maxsize=1)
def paper_tables() -> pd.DataFrame:
    """Every paper and blog number (columns: table, source, row, model, method, metric, dataset, split, value)."""
    with resources.files("road_repro.report").joinpath("paper_tables.csv").open() as fh:
        return pd.read_csv(fh)


def paper_values(spec: TableSpec) -> pd.DataFrame:
    """The paper's numbers for ``spec``: columns method, paper_model, dataset, metric, paper."""
    ref = paper_tables()
    ref = ref[ref["table"] == spec.table]
    return ref.rename(columns={"value": "paper", "model": "paper_model"})[
        ["method", "paper_model", "dataset", "metric", "paper"]]


def _with_paper_model(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Fill an empty ``paper_model`` with the paper's model when the printed method has exactly one."""
    ref = paper_values(spec)
    unique = ref.groupby("method")["paper_model"].agg(lambda s: s.iloc[0] if s.nunique() == 1 else "")
    frame = frame.copy()
    frame["paper_model"] = frame["paper_model"].astype(object)  # all-empty columns read back as float NaN
    empty = frame["paper_model"].fillna("").eq("")
    found = [unique.get(m, "") for m in frame.loc[empty, "method"]]
    frame.loc[empty, "paper_model"] = [m if isinstance(m, str) else "" for m in found]
    return frame


def summarize(frame: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Per (row, task, metric): n, mean, sample std over seeds, min, max, the seeds, the paper value, mean - paper."""
    frame = _with_paper_model(frame, spec)
    grouped = frame.groupby(KEYS, sort=False, dropna=False)
    summary = grouped["value"].agg(n="count", mean="mean", std="std", min="min", max="max").reset_index()
    seeds = grouped["seed"].agg(lambda s: " ".join(str(int(x)) for x in s.dropna()) or "ensemble").reset_index()
    summary = summary.merge(seeds.rename(columns={"seed": "seeds"}), on=KEYS)
    summary = summary.merge(paper_values(spec), on=["method", "paper_model", "dataset", "metric"], how="left")
    summary["diff"] = summary["mean"] - summary["paper"]
    summary["note"] = ""
    published = [(i, row) for i, row in enumerate(spec.rows, start=1) if row.published or row.recipe == "published"]
    for i, row in published:
        summary.loc[summary["row"] == i, "note"] = PUBLISHED_AND_RUN
    quoted = [_published_rows(spec, i, row, frame) for i, row in published if row.recipe == "published"]
    if quoted:
        summary = pd.concat([summary, *quoted], ignore_index=True).sort_values("row", kind="stable")
    return summary[SUMMARY_COLUMNS].reset_index(drop=True)


def _published_rows(spec: TableSpec, row_no: int, row, frame: pd.DataFrame) -> pd.DataFrame:
    """Summary lines of a row the paper quotes from another publication: its numbers, nothing run."""
    ref = paper_values(spec)
    ref = ref[(ref["method"] == row.method) & ((ref["paper_model"] == row.paper_model) if row.paper_model else True)]
    return pd.DataFrame({
        "table": spec.table, "row": row_no, "method": row.method, "paper_model": ref["paper_model"].values,
        "dataset": ref["dataset"].values, "metric": ref["metric"].values, "n": 0, "seeds": "",
        "paper": ref["paper"].values, "profile": frame["profile"].iloc[0] if len(frame) else "",
        "note": PUBLISHED_NOT_RUN,
    })


def row_label(method: str, paper_model: str, several_models: bool) -> str:
    """A row's display label; prefixed by the model where a table compares several."""
    return f"{paper_model}: {method}" if several_models and paper_model else method


def wide_view(summary: pd.DataFrame, evaluate: dict[str, list[str]]) -> pd.DataFrame:
    """The printed-table layout: one line per row, ``mean ± std (n) | paper`` per (task, metric)."""
    wanted = [(task, metric) for task, metrics in evaluate.items() for metric in metrics]
    sub = summary[[(d, m) in wanted for d, m in zip(summary["dataset"], summary["metric"])]].copy()
    several = sub["paper_model"].astype(object).fillna("").nunique() > 1

    def cell(r: pd.Series) -> str:
        paper = f"{r['paper']:.2f}" if pd.notna(r["paper"]) else "–"
        if r["n"] == 0:
            return f"{PUBLISHED_NOT_RUN} | paper {paper}"
        spread = f" ± {r['std']:.2f}" if pd.notna(r["std"]) else ""
        return f"{r['mean']:.2f}{spread} (n={r['n']}) | paper {paper}"

    sub["cell"] = sub.apply(cell, axis=1)
    sub["column"] = sub["dataset"] + " " + sub["metric"]
    sub["label"] = [row_label(m, pm if isinstance(pm, str) else "", several) for m, pm in zip(sub["method"], sub["paper_model"])]
    wide = sub.pivot_table(index=["row", "label"], columns="column", values="cell", aggfunc="first")
    columns = [f"{d} {m}" for d, m in wanted if f"{d} {m}" in wide.columns]
    wide = wide[columns].reset_index().rename(columns={"label": "method"})
    wide.columns.name = None  # no stray "column" header cell
    return wide
