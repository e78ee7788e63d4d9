"""``road-repro status`` on a fake results folder: states per table, the running stage, elapsed and ETA."""

import json
import os
import subprocess
import sys
import time

import pytest

from road_repro.config import REPO_ROOT
from road_repro.errors import ConfigError
from road_repro.status import status_text
from road_repro.train.train_log import COLUMNS

NOW = float(int(time.time()))  # whole seconds, as config.json's started
PLAN_STARTED = NOW - 3600


def _stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def _touch_tree(folder, t):
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (t, t))


@pytest.fixture
def results(tmp_path):
    """Plan: table_a = {warm, ft1}, table_b = {ft1, ft2, ft3}. warm done in 600 s (1 planned GPU-h), ft1 running
    at step 30 of 100, ft2 stopped 2 h ago, ft3 to do."""
    stages = {"warm_start-1": {"kind": "warm_start", "what": "warm start", "steps": 50, "gpu_hours": 1.0},
              "finetune-1": {"kind": "finetune", "what": "squad_v2 seed 1", "steps": 100, "gpu_hours": 2.0},
              "finetune-2": {"kind": "finetune", "what": "squad_v2 seed 2", "steps": 100, "gpu_hours": 2.0},
              "finetune-3": {"kind": "finetune", "what": "squad_v2 seed 3", "steps": 100, "gpu_hours": 2.0}}
    plan = {"profile": "smoke", "mode": "plan", "started": PLAN_STARTED, "order": ["table_a", "table_b"],
            "tables": {"table_a": {"stages": ["warm_start-1", "finetune-1"]},
                       "table_b": {"stages": ["finetune-1", "finetune-2", "finetune-3"]}},
            "run_ids": list(stages), "stages": stages, "throughput": {"unit": "V100-h"}}
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "plan.json").write_text(json.dumps(plan))
    runs = tmp_path / "runs"
    warm = runs / "warm_start-1"
    warm.mkdir(parents=True)
    (warm / "config.json").write_text(json.dumps({"started": _stamp(PLAN_STARTED + 60)}))
    (warm / "DONE").write_text("{}")
    _touch_tree(warm, PLAN_STARTED + 660)
    running = runs / "finetune-1"
    running.mkdir()
    (running / "config.json").write_text(json.dumps({"started": _stamp(NOW - 100)}))
    rows = [",".join([str(s), "squad_v2", f"{3 - s / 20:.4f}", "", "", "", "0.001", "1.0", "1.0", "8", "80.5",
                      str(s)]) for s in range(1, 31)]
    (running / "train_log.csv").write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n31,squad")  # half a row
    stopped = runs / "finetune-2"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "step-40").write_text("x")
    _touch_tree(stopped, NOW - 7200)
    return tmp_path


def test_states_per_table_running_stage_and_eta(results):
    text = status_text(results, "smoke", now=NOW)
    lines = text.splitlines()
    assert "4 stages of 2 tables" in lines[0] and "1 done, 1 running, 1 stopped, 1 to do" in lines[0]
    table_a = next(line.split() for line in lines if line.startswith("table_a"))
    table_b = next(line.split() for line in lines if line.startswith("table_b"))
    assert table_a[1:] == ["1", "1", "0", "0"] and table_b[1:] == ["0", "1", "1", "1"]
    running = next(line for line in lines if line.startswith("running: finetune finetune-1"))
    assert "step 30/100" in running and "loss 1.5000" in running and "80.5 examples/s" in running
    assert any(line.startswith("stopped: finetune finetune-2") and "no training step" in line for line in lines)
    # left: 2 x (1 - 0.3) + 2 + 2 = 5.4 planned GPU-h; measured 600 s per planned GPU-h -> 3240 s = 54m00s
    assert "elapsed 60m00s" in lines[-1] or "elapsed 1h00m" in lines[-1]
    assert "left: 5.4 V100-h" in lines[-1] and "ETA 54m00s" in lines[-1] and "rate measured on the 1 stage(s)" in lines[-1]


def test_reads_only(results):
    before = {p: p.stat().st_mtime_ns for p in results.rglob("*")}
    status_text(results, "smoke", now=NOW)
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*")} == before


def test_a_copied_folder_with_nothing_running_says_so(results):
    text = status_text(results, "smoke", now=NOW + 86400)  # a day later: nothing changed recently
    assert "0 running" in text.splitlines()[0] and "not running" in text.splitlines()[-1]


def test_no_plan_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="plan.json: no plan"):
        status_text(tmp_path, "paper")
    done = subprocess.run([sys.executable, "-m", "road_repro", "status", "--profile", "paper", "--output-dir",
                           str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")


def test_the_cli_prints_the_status(results):
    done = subprocess.run([sys.executable, "-m", "road_repro", "status", "--output-dir", str(results)],
                          capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "table_b" in done.stdout and "ETA" in done.stdout


def test_a_dry_runs_planned_ids_are_pointed_out(results):
    plan_path = results / "smoke" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["stages"]["finetune-3"]["planned_id"] = True
    plan_path.write_text(json.dumps(plan))
    assert "1 stages have planned ids" in status_text(results, "smoke", now=NOW)


@pytest.mark.parametrize("plan, why", [
    ([], "a JSON list, not an object"),
    ({"stages": [], "tables": {}}, "'stages' must map run ids to objects"),
    ({"stages": {"a": 1}, "tables": {}}, "'stages' must map run ids to objects"),
    ({"stages": {}}, "'tables' .* is missing"),
    ({"stages": {}, "tables": {"t": ["a"]}}, "tables.t has no 'stages' list"),
    ({"stages": {}, "tables": {"t": {"stages": [["a"]]}}}, "tables.t has no 'stages' list"),
    ({"stages": {}, "tables": {}, "order": ["t"]}, "'order' must list tables"),
    ({"stages": {}, "tables": {}, "throughput": "V100-h"}, "'throughput' must be an object"),
    ({"stages": {}, "tables": {}, "started": "today"}, "'started' must be a time"),
])
def test_a_plan_of_the_wrong_shape_is_one_error_naming_the_file(tmp_path, plan, why):
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match=rf"smoke/plan.json: not a plan as `road-repro plan` writes it: {why}"):
        status_text(tmp_path, "smoke")
    done = subprocess.run([sys.executable, "-m", "road_repro", "status", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "plan.json: not a plan" in done.stderr
