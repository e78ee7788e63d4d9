"""Plots (seaborn): each table row's per-seed values with mean and spread, the paper's number marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from road_repro.config import ProfileConfig, TableSpec  # noqa: E402
from road_repro.io import atomic_write  # noqa: E402
from road_repro.report.summary import paper_values  # noqa: E402


def plot_table(frame: pd.DataFrame, spec: TableSpec, profile: ProfileConfig, path: Path) -> Path:
    """One panel per metric: seeds as dots, mean ± sd as a bar, the paper's value as a red diamond."""
    metrics = [m for m in spec.metrics if m in set(frame["metric"])]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 0.6 * len(spec.rows) + 2.2), squeeze=False)
    paper = paper_values(spec)
    order = [r.method for r in spec.rows]
    for ax, metric in zip(axes[0], metrics):
        sub = frame[frame["metric"] == metric]
        sns.pointplot(data=sub, x="value", y="method", order=order, errorbar="sd", linestyle="none",
                      capsize=0.2, color="black", ax=ax)
        sns.stripplot(data=sub, x="value", y="method", order=order, hue="seed", palette="viridis",
                      size=6, alpha=0.8, ax=ax, legend=False)
        ref = paper[paper["metric"] == metric]
        ref = ref[ref["method"].isin(order)]
        ax.scatter(ref["paper"], [order.index(m) for m in ref["method"]], marker="D", color="crimson",
                   label="paper", zorder=5)
        ax.set_xlabel(f"{metric} ({profile.name} scale)")
        ax.set_ylabel("")
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{spec.title} — {profile.name} scale" + (" (pipeline check, not a reproduction)" if profile.name == "smoke" else ""))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path
