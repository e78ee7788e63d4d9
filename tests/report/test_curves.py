"""Training curves on a table page: one panel per row whose runs trained, one line per seed."""

import io

import matplotlib.image as mpimg
import pandas as pd

from road_repro.report import plots
from road_repro.report.plots import plot_curves


def _run(runs, run_id, losses):
    (runs / run_id).mkdir(parents=True)
    pd.DataFrame({"step": range(1, len(losses) + 1), "datasets": "d", "total": losses}).to_csv(
        runs / run_id / "train_log.csv", index=False)


def test_rows_with_training_logs_get_a_panel_each_with_a_line_per_seed(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    _run(runs, "finetune-a1", [3.0, 2.0, 1.0])
    _run(runs, "finetune-a2", [3.1, 2.2, 1.1])
    _run(runs, "finetune-b1", [3.0, 3.0, 3.0])
    (runs / "ensemble-e").mkdir()  # an ensemble trains nothing: no train_log.csv, no panel
    frame = pd.DataFrame({
        "row": [0, 0, 0, 1, 2], "method": ["KD", "KD", "KD", "baseline", "ensemble"], "seed": [1, 2, 2, 1, None],
        "dataset": "squad_v2", "metric": ["f1", "f1", "exact", "f1", "f1"],
        "run_id": ["finetune-a1", "finetune-a2", "finetune-a2", "finetune-b1", "ensemble-e"], "value": 50.0})
    drawn = {}
    real_subplots = plots.plt.subplots

    def spy(*args, **kwargs):
        fig, axes = real_subplots(*args, **kwargs)
        drawn["axes"] = axes
        return fig, axes

    monkeypatch.setattr(plots.plt, "subplots", spy)
    png = plot_curves(frame, runs, "table5")
    assert mpimg.imread(io.BytesIO(png)).shape[1] <= plots.MAX_WIDTH_IN * plots.DPI
    visible = [ax for ax in drawn["axes"].flat if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["KD", "baseline"]
    assert [len(ax.get_lines()) for ax in visible] == [2, 1]  # KD: seeds 1 and 2 (exact and f1 share a run)
    assert list(visible[1].get_lines()[0].get_ydata()) == [3.0, 3.0, 3.0]


def test_no_curves_without_training_logs(tmp_path):
    frame = pd.DataFrame({"row": [0], "method": ["ensemble"], "seed": [1], "run_id": ["ensemble-e"], "value": [1.0]})
    assert plot_curves(frame, tmp_path, "table5") is None
