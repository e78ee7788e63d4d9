"""Plots (seaborn): each table row's per-seed values with mean and spread, the paper's number marked."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from road_repro.config import ProfileConfig, TableSpec  # noqa: E402
from road_repro.io import atomic_write  # noqa: E402
from road_repro.report.summary import _with_paper_model, paper_values, row_label  # noqa: E402


def plot_table(frame: pd.DataFrame, spec: TableSpec, profile: ProfileConfig, path: Path) -> Path:
    """One panel per (task, metric): seeds as dots, mean ± sd in black, the paper's value as a red diamond."""
    frame = _with_paper_model(frame, spec)
    several = frame["paper_model"].fillna("").nunique() > 1
    frame["label"] = [row_label(m, pm, several) for m, pm in zip(frame["method"], frame["paper_model"])]
    order = list(dict.fromkeys(frame.sort_values("row")["label"]))
    panels = [(t, m) for t, ms in spec.evaluate.items() for m in ms]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, rows * (0.45 * len(order) + 1.8)), squeeze=False)
    paper = paper_values(spec)
    paper["label"] = [row_label(m, pm, several) for m, pm in zip(paper["method"], paper["paper_model"])]
    for ax, (task, metric) in zip(axes.flat, panels):
        sub = frame[(frame["dataset"] == task) & (frame["metric"] == metric)]
        sns.pointplot(data=sub, x="value", y="label", order=order, errorbar="sd", linestyle="none",
                      capsize=0.2, color="black", ax=ax)
        sns.stripplot(data=sub, x="value", y="label", order=order, hue="seed", palette="viridis",
                      size=6, alpha=0.8, ax=ax, legend=False)
        ref = paper[(paper["dataset"] == task) & (paper["metric"] == metric) & paper["label"].isin(order)]
        ax.scatter(ref["paper"], [order.index(label) for label in ref["label"]], marker="D", color="crimson",
                   label="paper", zorder=5)
        ax.set_title(f"{task} {metric}")
        ax.set_xlabel(f"{metric} ({profile.name} scale)")
        ax.set_ylabel("")
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    note = " (pipeline check, not a reproduction)" if profile.name == "smoke" else ""
    fig.suptitle(f"{spec.table}: {spec.title} — {profile.name} scale{note}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def plot_drift(summary: pd.DataFrame, profile: str) -> bytes:
    """PNG bytes: ours − paper for every (table, row, task, metric) that has both, one bar each."""
    import io

    sub = summary[summary["diff"].notna()].copy()
    sub["label"] = [f"{t} · {row_label(m, pm if isinstance(pm, str) else '', bool(pm))} · {d} {k}"
                    for t, m, pm, d, k in zip(sub["table"], sub["method"], sub["paper_model"], sub["dataset"], sub["metric"])]
    fig, ax = plt.subplots(figsize=(9, 0.22 * max(len(sub), 4) + 1.2))
    ax.barh(sub["label"], sub["diff"], color=["#1e7b34" if d >= 0 else "#b02a2a" for d in sub["diff"]])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(f"ours − paper (points, {profile} scale)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
