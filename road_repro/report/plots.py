"""Plots: each table row's per-seed values with mean and spread, the paper's number marked.

Figures are meant to be read on a laptop: at most :data:`MAX_WIDTH_IN` inches wide at 100 dpi, row labels
wrapped, tick labels of at least 9 points, one legend for the whole figure that covers no data. Every
method has one colour in every table (:func:`method_color`): a fixed colour for the paper's recurring
methods (:data:`METHOD_COLORS`), otherwise one derived from a hash of the label, so a method keeps its
colour from one table, run and machine to the next.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from road_repro.config import ProfileConfig, TableSpec  # noqa: E402
from road_repro.io import atomic_write  # noqa: E402
from road_repro.report.summary import _with_paper_model, paper_values, row_label  # noqa: E402

#: The paper's value: a crimson diamond on every panel (no method colour is close to it).
PAPER_COLOR = "#dc143c"
#: Widest figure, in inches at :data:`DPI` (about 1100 pixels: a laptop's browser window without scrolling).
MAX_WIDTH_IN = 11.0
DPI = 100
#: Smallest font size anywhere on a table's figure (points).
MIN_FONT = 9
#: Row labels are wrapped at this many characters.
LABEL_WRAP = 28

_BASELINE, _PUBLISHED, _MTL, _MTDNN = "#7f7f7f", "#8c564b", "#1f77b4", "#ff7f0e"
_KD, _WEIGHTED, _ANNEALING, _ENSEMBLE = "#2ca02c", "#9467bd", "#bcbd22", "#e377c2"
_KD_MTL, _ROAD, _HIDDEN = "#17becf", "#0b1f66", "#00a087"
_SMOOTHING, _NEGATIVES = "#637939", "#5c3a00"

#: Fixed colours of the paper's and the blog's recurring methods, keyed by the rows' ``method`` labels.
#: Labels that name the same method share its colour: Table 4's "+ MTL" is ROaD MTL, the blog's "logits"
#: is KD on logits, and each table's own baseline row is grey.
METHOD_COLORS: dict[str, str] = {
    "baseline": _BASELINE,
    "finetune without KD (baseline)": _BASELINE,
    "single model average without distillation": _BASELINE,
    "no MTL; KD from ROaD-large (baseline)": _BASELINE,
    "published": _PUBLISHED,
    "published (ELECTRA paper)": _PUBLISHED,
    "Retro-Reader (published)": _PUBLISHED,
    "ROaD MTL": _MTL,
    "+ MTL": _MTL,
    "MT-DNN": _MTDNN,
    "+ KD during MTL": _KD_MTL,
    "KD": _KD,
    "+ KD": _KD,
    "logits": _KD,
    "weighted KD": _WEIGHTED,
    "annealing KD": _ANNEALING,
    "teachers ensemble of 3 models": _ENSEMBLE,
    "ensemble of 3 models": _ENSEMBLE,
    "ROaD": _ROAD,
    "hidden-state (all layers)": _HIDDEN,
    "label smoothing": _SMOOTHING,
    "negative-question augmentation": _NEGATIVES,
}

#: One label per distinct recurring method (the colours these get are pairwise distinct; tested).
RECURRING = ["baseline", "published", "ROaD MTL", "MT-DNN", "+ KD during MTL", "KD", "weighted KD",
             "annealing KD", "teachers ensemble of 3 models", "ROaD", "hidden-state (all layers)",
             "label smoothing", "negative-question augmentation"]

#: Two colours closer than this (CIE76 ΔE in L*a*b*) count as the same colour on a figure.
MIN_DELTA_E = 25.0

_METRIC_NAMES = {"f1": "F1", "em": "EM", "acc": "accuracy", "best_f1": "best F1", "best_em": "best EM"}
_TASK_NAMES = {"squad_v2": "SQuAD 2.0", "newsqa": "NewsQA", "mnli": "MNLI-m", "qqp": "QQP", "amazon": "Amazon"}


def _lab(color: str) -> np.ndarray:
    """CIE L*a*b* (D65) of a ``#rrggbb`` colour."""
    rgb = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ lin
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def color_distance(a: str, b: str) -> float:
    """CIE76 ΔE between two ``#rrggbb`` colours (about 2.3 is the smallest difference a person sees)."""
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def _hashed_color(label: str, attempt: int = 0) -> str:
    """A colour from a stable hash of ``label`` (md5: the same on every machine and run, unlike ``hash``);
    hues near the paper's crimson are left out, lightness and saturation stay readable on white."""
    digest = hashlib.md5(f"{label}\0{attempt}".encode()).digest()
    hue = (25 + digest[0] / 255 * 300) / 360  # 25°-325°: never the paper's crimson
    lightness = 0.32 + digest[1] / 255 * 0.22
    saturation = 0.55 + digest[2] / 255 * 0.35
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in (r, g, b)))


def method_color(method: str) -> str:
    """The colour of a method in every table: the fixed one of a recurring method, otherwise the label's hash."""
    return METHOD_COLORS.get(method) or _hashed_color(method)


def method_palette(methods: Iterable[str]) -> dict[str, str]:
    """Colours of the methods of one figure. Recurring methods get their fixed colour; another method gets
    its hashed colour unless that is within :data:`MIN_DELTA_E` of a colour already on the figure (or of
    the paper's crimson), in which case the next hash attempt is taken -- deterministic for a given set of
    labels, so a table's figure looks the same on every run."""
    methods = list(dict.fromkeys(methods))
    palette = {m: METHOD_COLORS[m] for m in methods if m in METHOD_COLORS}
    for method in methods:
        if method in palette:
            continue
        taken = [*palette.values(), PAPER_COLOR]
        for attempt in range(64):
            color = _hashed_color(method, attempt)
            if all(color_distance(color, other) >= MIN_DELTA_E for other in taken):
                break
        palette[method] = color
    return palette


def _panel_title(task: str, metric: str) -> str:
    return f"{_TASK_NAMES.get(task, task)} {_METRIC_NAMES.get(metric, metric)}"


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text


def plot_table(frame: pd.DataFrame, spec: TableSpec, profile: ProfileConfig, path: Path) -> Path:
    """One panel per (task, metric), rows top to bottom in the table's order: each seed a dot in the
    method's colour, the mean ± sample sd over seeds as a black-edged dot with whiskers, the paper's value
    as a crimson diamond. At most :data:`MAX_WIDTH_IN` inches wide; the smoke note is in the title."""
    frame = _with_paper_model(frame, spec)
    several = frame["paper_model"].fillna("").nunique() > 1
    frame["label"] = [row_label(m, pm, several) for m, pm in zip(frame["method"], frame["paper_model"])]
    rows = frame.sort_values("row", kind="stable").drop_duplicates("label")
    order = rows["label"].tolist()
    palette = method_palette(rows["method"])
    colors = {label: palette[method] for label, method in zip(rows["label"], rows["method"])}
    paper = paper_values(spec)
    paper["label"] = [row_label(m, pm, several) for m, pm in zip(paper["method"], paper["paper_model"])]

    panels = [(t, m) for t, ms in spec.evaluate.items() for m in ms]
    n_cols = 1 if len(panels) == 1 else 2 if len(panels) in (2, 4) else 3
    n_rows = math.ceil(len(panels) / n_cols)
    wrapped = [_wrap(label, LABEL_WRAP) for label in order]
    lines = sum(w.count("\n") + 1 for w in wrapped)
    label_in = 0.085 * max((len(line) for w in wrapped for line in w.split("\n")), default=10) + 0.3
    panel_in = {1: 5.5, 2: 3.6, 3: 2.7}[n_cols]
    width = min(MAX_WIDTH_IN, label_in + n_cols * panel_in)
    height = n_rows * (0.2 * lines + 0.22 * len(order) + 1.1) + 1.3
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False, sharey=True,
                             layout="constrained")
    y = {label: i for i, label in enumerate(order)}
    for ax, (task, metric) in zip(axes.flat, panels):
        sub = frame[(frame["dataset"] == task) & (frame["metric"] == metric)].dropna(subset=["value"])
        for label, values in sub.groupby("label", sort=False)["value"]:
            values = values.to_numpy(dtype=float)
            color = colors[label]
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(values, y[label] + jitter, s=22, color=color, alpha=0.75, linewidths=0, zorder=3)
            sd = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(values.mean(), y[label], xerr=sd, fmt="o", markersize=8, color=color,
                        markeredgecolor="black", ecolor="black", elinewidth=1.4, capsize=4, zorder=4)
        ref = paper[(paper["dataset"] == task) & (paper["metric"] == metric) & paper["label"].isin(order)]
        ax.scatter(ref["paper"], [y[label] for label in ref["label"]], marker="D", s=46, color=PAPER_COLOR,
                   edgecolors="white", linewidths=0.8, zorder=5)
        ax.set_title(_panel_title(task, metric), fontsize=MIN_FONT + 2)
        ax.set_xlabel(f"{_METRIC_NAMES.get(metric, metric)} ({profile.name} scale)", fontsize=MIN_FONT + 1)
        ax.grid(axis="x", color="#e6e6e6", linewidth=0.8, zorder=0)
        ax.set_axisbelow(True)
        ax.tick_params(axis="both", labelsize=MIN_FONT)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(order)), wrapped)
        ax.set_ylim(len(order) - 0.5, -0.5)  # the table's first row on top
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], marker="o", linestyle="none", markersize=5, color="#666666", alpha=0.75, label="one seed"),
        Line2D([], [], marker="o", linestyle="-", markersize=8, color="black", markerfacecolor="#bbbbbb",
               label="mean ± sd over seeds"),
        Line2D([], [], marker="D", linestyle="none", markersize=7, color=PAPER_COLOR, markeredgecolor="white",
               label="the paper's value"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=MIN_FONT, frameon=False)
    note = " (pipeline check, not a reproduction)" if profile.name == "smoke" else ""
    title = f"{spec.table}: {spec.title} — {profile.name} scale{note}"
    fig.suptitle(_wrap(title, int(width * 8)), fontsize=MIN_FONT + 3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
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
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


#: Most panels in a table's training-curve figure (one per row; the rest are named in the caption).
MAX_CURVE_PANELS = 24


def _curve(run_dir: Path) -> pd.DataFrame | None:
    """A run's ``train_log.csv`` as (step, total), or None where the run did not train (ensemble, predict)."""
    path = run_dir / "train_log.csv"
    if not path.is_file():
        return None
    try:  # a live writer may leave a cut last line; a log from another version may lack a column
        log = pd.read_csv(path, on_bad_lines="skip")[["step", "total"]].apply(pd.to_numeric, errors="coerce").dropna()
    except (KeyError, ValueError, pd.errors.ParserError):
        return None
    return log if len(log) else None


def plot_curves(frame: pd.DataFrame, runs_dir: Path, title: str) -> bytes | None:
    """PNG bytes: the training loss of each table row's runs, one panel per row, one line per seed.

    A row's runs are the ones its numbers came from (``run_id`` of the table's CSV); a row whose runs did not
    train (an ensemble averages stored logits, a prediction reuses another model) has no panel. The loss is
    a moving average over 2 % of the steps, so a diverging or flat run stands out from the noise of a step.
    None when no row has a training log.
    """
    runs = frame.dropna(subset=["run_id"]).sort_values("row", kind="stable").drop_duplicates(["row", "run_id"])
    models = runs["paper_model"] if "paper_model" in runs else pd.Series([None] * len(runs), index=runs.index)
    panels: dict[str, list[tuple[str, pd.DataFrame]]] = {}  # one per table row: method (and paper model)
    for method, model, seed, run_id in zip(runs["method"], models, runs["seed"], runs["run_id"]):
        curve = _curve(Path(runs_dir) / str(run_id))
        if curve is not None:
            name = str(method) if pd.isna(model) or not model else f"{method} ({model})"
            panels.setdefault(name, []).append(("" if pd.isna(seed) else f"seed {int(seed)}", curve))
    if not panels:
        return None
    shown = list(panels)[:MAX_CURVE_PANELS]
    n_cols = min(3, len(shown))
    n_rows = math.ceil(len(shown) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(min(MAX_WIDTH_IN, 3.6 * n_cols), 2.6 * n_rows + 0.8),
                             squeeze=False, layout="constrained")
    for ax, method in zip(axes.flat, shown):
        color = method_color(method.split(" (")[0])  # the method's colour in every table
        for i, (label, curve) in enumerate(panels[method]):
            window = max(1, len(curve) // 50)
            smooth = curve["total"].rolling(window, min_periods=1).mean()
            ax.plot(curve["step"], smooth, color=color, alpha=1.0 - 0.5 * i / max(1, len(panels[method])),
                    linewidth=1.2, label=label)
        ax.set_title(_wrap(method, 40), fontsize=MIN_FONT + 1)
        ax.set_xlabel("step", fontsize=MIN_FONT)
        ax.set_ylabel("training loss", fontsize=MIN_FONT)
        ax.tick_params(axis="both", labelsize=MIN_FONT)
        ax.grid(color="#e6e6e6", linewidth=0.8)
        if len(panels[method]) > 1:
            ax.legend(fontsize=MIN_FONT - 1, frameon=False)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    more = f" (first {len(shown)} of {len(panels)} rows)" if len(panels) > len(shown) else ""
    fig.suptitle(_wrap(f"{title}: training loss per row{more}", 100), fontsize=MIN_FONT + 2)
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()
