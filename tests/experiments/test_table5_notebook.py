"""End to end: the Table 5 notebook through papermill at the smoke scale, then its files and report."""

import base64
import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from road_repro.config import REPO_ROOT

pytestmark = pytest.mark.slow

#: Fewer seeds and one teacher pair keep the test short; the rows and code path are the full table's.
FAST = ["seeds=[1,2]", "distill.n_teachers=2", "tasks.squad_v2.train.limit=600", "tasks.squad_v2.dev.limit=200",
        "finetune.epochs=2"]


@pytest.fixture(scope="module")
def executed(tmp_path_factory, smoke_experiment):
    out = tmp_path_factory.mktemp("results")
    warm = smoke_experiment.warm_start("large")  # the session's warm start (tests/experiments/conftest.py)
    shutil.copytree(warm.path, out / "runs" / warm.path.name)  # the notebook finds it cached
    nb_out = out / "table5.out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(REPO_ROOT / "notebooks" / "table5.ipynb"), str(nb_out),
           "-k", "python3", "-p", "profile", "smoke", "-p", "output_dir", str(out),
           "-p", "progress", "False", "-y", json.dumps({"overrides": FAST})]
    subprocess.run(cmd, check=True, cwd=out, capture_output=True, text=True)
    return out


def test_tidy_csv_has_every_row_seed_and_metric(executed):
    frame = pd.read_csv(executed / "smoke" / "table5.csv")
    assert {"table", "row", "method", "seed", "metric", "value", "run_id"} <= set(frame.columns)
    assert set(frame["method"]) == {"single model average without distillation", "teachers ensemble of 3 models",
                                    "KD", "annealing KD", "weighted KD"}
    for method, sub in frame[frame["metric"] == "f1"].groupby("method"):
        expected = 1 if method.startswith("teachers ensemble") else 2
        assert len(sub) == expected, method
    assert frame["profile"].eq("smoke").all()
    assert frame["value"].between(0, 100).all()
    # every number traces back to a run folder with its config
    for run_id in frame["run_id"].unique():
        assert (executed / "runs" / run_id / "config.json").is_file()


def test_the_synthetic_task_is_learned(executed):
    """Single models clearly beat answering "no answer" everywhere (the floor a reader must clear)."""
    meta = json.loads((executed / "smoke" / "table5.json").read_text())
    baseline = meta["no_answer_baseline_f1"]["squad_v2"]
    frame = pd.read_csv(executed / "smoke" / "table5.csv")
    single = frame[(frame["row"] == 1) & (frame["metric"] == "f1")]["value"]
    assert single.min() > baseline + 5, (single.tolist(), baseline)


def test_summary_sits_beside_the_paper(executed):
    summary = pd.read_csv(executed / "smoke" / "table5_summary.csv")
    row = summary[(summary["method"] == "weighted KD") & (summary["metric"] == "f1")].iloc[0]
    assert row["paper"] == 91.52
    assert row["diff"] == pytest.approx(row["mean"] - 91.52)
    assert row["n"] == 2 and row["seeds"] == "1 2"


def test_report_is_labelled_as_a_pipeline_check(executed):
    index = (executed / "smoke" / "report" / "index.html").read_text()
    assert "SMOKE SCALE" in index and "not a reproduction" in index and 'href="table5.html"' in index
    html = (executed / "smoke" / "report" / "table5.html").read_text()
    assert "SMOKE SCALE" in html and "not a reproduction" in html
    assert "weighted KD" in html and "Weighted KD beats KD" in html  # the table and its claims
    assert "pipeline check" in html
    assert "KL term × T² (t2_scale: true)" in html  # which KD scaling was used, on the page
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]*)"', html)
    assert match and base64.b64decode(match.group(1)) == (executed / "smoke" / "table5.png").read_bytes()
    assert (executed / "smoke" / "table5.png").stat().st_size > 1000


def test_rerun_reuses_every_finished_stage(executed, tmp_path):
    from road_repro.experiments.tables import run_table

    before = {p.parent.name: p.stat().st_mtime_ns for p in (executed / "runs").glob("*/DONE")}
    run_table("table5", "smoke", output_dir=executed, overrides=FAST, progress=False)
    after = {p.parent.name: p.stat().st_mtime_ns for p in (executed / "runs").glob("*/DONE")}
    assert before == after and len(before) >= 9  # 2 singles, 1 ensemble, 6 students, 2 soft targets


def _config(executed, run_id: str) -> dict:
    return json.loads((executed / "runs" / run_id / "config.json").read_text())["config"]


def test_every_row_starts_from_the_road_mtl_encoder(executed):
    """Paper 3.3: the single models, the teachers (ensemble) and the students all finetune ROaD MTL encoders."""
    frame = pd.read_csv(executed / "smoke" / "table5.csv")
    inits = set()
    for run_id in frame["run_id"].unique():
        cfg = _config(executed, run_id)
        finetunes = [_config(executed, t) for t in cfg["teachers"]] if cfg["stage"] == "ensemble" else [cfg]
        for ft in finetunes:
            assert ft["stage"] == "finetune" and ft["init"], run_id
            inits.add(ft["init"])
            for teacher in ft["teachers"]:
                assert _config(executed, teacher)["init"] == ft["init"]
    assert len(inits) == 1  # one cached ROaD MTL stage, shared by every row (and by Tables 2 and 4)
    mtl = _config(executed, inits.pop())
    assert mtl["stage"] == "mtl" and mtl["mode"] == "road" and mtl["kd"] is False
    # the single models are the teachers: the ensemble averages the first n_teachers single-model runs
    ensemble = _config(executed, frame[frame["row"] == 2]["run_id"].iloc[0])
    singles = frame[(frame["row"] == 1) & (frame["metric"] == "f1")].sort_values("seed")["run_id"].tolist()
    assert ensemble["teachers"] == singles[: len(ensemble["teachers"])]
