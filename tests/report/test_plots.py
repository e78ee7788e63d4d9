"""The table figures: one stable, distinct colour per method in every table; laptop-sized and labelled."""

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from road_repro.config import ABLATIONS_DIR, load_profile, load_table_spec
from road_repro.report import plots
from road_repro.report.plots import (
    METHOD_COLORS, MIN_DELTA_E, PAPER_COLOR, RECURRING, color_distance, method_color, method_palette)


def test_recurring_methods_have_fixed_pairwise_distinct_colours():
    colors = {m: method_color(m) for m in RECURRING}
    assert colors == {m: METHOD_COLORS[m] for m in RECURRING}
    assert set(colors.values()) == set(METHOD_COLORS.values())  # every fixed colour is one recurring method's
    for a, b in itertools.combinations(RECURRING, 2):
        assert color_distance(colors[a], colors[b]) >= MIN_DELTA_E, (a, b)
    for method, color in colors.items():
        assert color_distance(color, PAPER_COLOR) >= MIN_DELTA_E, method
    # one method, one colour, whatever a table calls it
    assert method_color("+ MTL") == method_color("ROaD MTL")
    assert method_color("finetune without KD (baseline)") == method_color("baseline")
    assert method_color("ensemble of 3 models") == method_color("teachers ensemble of 3 models")


def test_other_methods_hash_to_the_same_colour_on_every_run_and_machine():
    label = "KD from 3 x ELECTRA-large (ensemble)"
    assert method_color(label) == method_color(label) == "#0fd9c7"  # md5, not Python's salted hash()
    code = f"from road_repro.report.plots import method_color; print(method_color({label!r}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip()
    assert other == method_color(label)
    assert color_distance(method_color(label), PAPER_COLOR) >= MIN_DELTA_E


@pytest.mark.parametrize("table", sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml")))
def test_each_table_tells_its_methods_apart(table):
    methods = [row.method for row in load_table_spec(table).rows]
    palette = method_palette(methods)
    assert palette == method_palette(methods)
    for a, b in itertools.combinations(dict.fromkeys(methods), 2):
        if METHOD_COLORS.get(a) is not None and METHOD_COLORS.get(a) == METHOD_COLORS.get(b):
            continue  # two names of one method (e.g. "published" and "published (ELECTRA paper)")
        assert color_distance(palette[a], palette[b]) >= MIN_DELTA_E, (table, a, b)
        assert color_distance(palette[a], PAPER_COLOR) >= MIN_DELTA_E, (table, a)


def _frame(spec) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([
        {"table": spec.table, "row": i, "method": row.method, "paper_model": row.paper_model or "", "seed": s,
         "metric": metric, "value": float(rng.normal(70, 5)), "dataset": task, "split": "dev", "data_source": "x",
         "profile": "smoke", "run_id": f"r{i}{s}"}
        for i, row in enumerate(spec.rows, start=1) if row.recipe != "published"
        for s in ([None] if row.recipe == "ensemble" else [1, 2, 3])
        for task, metrics in spec.evaluate.items() for metric in metrics
    ])


@pytest.mark.parametrize("table", ["table4", "table5", "blog_final"])  # six panels; an ensemble; long labels
def test_the_figure_fits_a_laptop_and_marks_the_paper(table, tmp_path, monkeypatch):
    figures = []
    close = plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    spec = load_table_spec(table)
    path = plots.plot_table(_frame(spec), spec, load_profile("smoke"), tmp_path / "t.png")
    (fig,) = figures
    assert fig.get_size_inches()[0] <= plots.MAX_WIDTH_IN
    width = int.from_bytes(path.read_bytes()[16:20], "big")  # the PNG's IHDR width
    assert width <= plots.MAX_WIDTH_IN * plots.DPI
    assert "pipeline check, not a reproduction" in fig._suptitle.get_text().replace("\n", " ")
    (legend,) = fig.legends
    assert "the paper's value" in [t.get_text() for t in legend.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        assert any(isinstance(c, PathCollection) and len(c.get_offsets()) and len(c.get_facecolor())
                   and tuple(c.get_facecolor()[0][:3]) == pytest.approx((220 / 255, 20 / 255, 60 / 255))
                   for c in ax.collections), "no paper diamond"
        for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            assert label.get_fontsize() >= 8
    lines = [line for t in fig.axes[0].get_yticklabels() for line in t.get_text().split("\n")]
    assert len(lines) >= len(spec.rows) - 3 and max(map(len, lines)) <= plots.LABEL_WRAP + 12  # wrapped labels
