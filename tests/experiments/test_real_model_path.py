"""The real-model path end to end: every table spec under ``ablations/`` with a real pretrained encoder
on real data files, as the ``mini`` and ``paper`` scales run them.

The smoke scale (tiny random-init encoders, synthetic data) hides whatever only real checkpoints,
real tokenizers and real file formats exercise. Here every ``ablations/*.yaml`` (found by glob, so a new
spec is covered without touching this file) runs with ``tests/profiles/mini_ci.yaml``: the packaged
MiniLM-L6 as "large", its first three layers as "base", on capped files of the shared real data folder
(``../shared/data`` or ``$ROAD_SHARED_DATA``; the tests skip without it). All tables share one run
folder, computed once per session by a module fixture (with pytest-xdist, by the first worker under a
file lock; the others reuse its runs); the small tests below check its outputs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import traceback
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock

from road_repro.config import ABLATIONS_DIR, PROFILES_DIR, load_profile, load_table_spec
from road_repro.errors import TrainingInterrupted

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "mini_ci.yaml"
TABLES = sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml"))

#: Tokenizer files of the packaged MiniLM (the weights are not needed for a tokenizer).
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

#: Stages whose config must name a model checkpoint and the data it read.
MODEL_AND_DATA_STAGES = ("finetune", "predict", "ensemble", "mtl")


def make_data_dir(shared: Path, root: Path) -> Path:
    """A data directory of symlinks into ``shared`` with the names the registry looks for.

    The registry finds most shared files under their own names (its local candidates include the shared
    layout, e.g. ``squad2/train-v2.0.first10articles.json``), so each top-level folder is linked as is.
    The exception is NewsQA: the shared folder has only the MRQA baseline's 17-question sample
    (``mrqa/samples/NewsQA_sample.jsonl``), which the registry deliberately does not treat as a dev set;
    this test uses it as one, so it is linked as ``mrqa/dev/NewsQA.jsonl`` (an MRQA dev candidate).
    Symlinks, not copies: nothing of the data lands in the repository or the temporary folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    for entry in sorted(shared.iterdir()):
        if entry.is_dir() and entry.name != "mrqa":
            (root / entry.name).symlink_to(entry, target_is_directory=True)
    (root / "mrqa" / "dev").mkdir(parents=True)
    (root / "mrqa" / "dev" / "NewsQA.jsonl").symlink_to(shared / "mrqa" / "samples" / "NewsQA_sample.jsonl")
    return root


def copy_tokenizer(dest: Path) -> Path:
    """The packaged MiniLM tokenizer under another name (same vocabulary, different ``name_or_path``)."""
    from road_repro.models.encoder import packaged_minilm_path

    src = packaged_minilm_path()
    dest.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    return dest


def base_models() -> list[str]:
    """The profile's base stand-ins (MiniLM cut to its first layers): they read with the tokenizer copy, so
    every large -> base distillation crosses two tokenizer names over one vocabulary."""
    return sorted(k for k, m in load_profile(str(PROFILE)).models.items() if m.num_layers is not None)


def _compute(root: Path, shared: Path) -> dict:
    """Run every table into ``root`` (one runs folder for all); record per-table errors, don't stop.

    Torch runs on one thread here (``$ROAD_TEST_THREADS`` to change): on the project's two shared CPU
    cores a MiniLM training step took 1.4 s on one thread and 5.4 s on two (OpenMP threads fighting the
    other processes for the cores).
    """
    import torch

    from road_repro.experiments.tables import run_table

    data_dir = make_data_dir(shared, root / "data")
    tokenizer = copy_tokenizer(root / "minilm-copy")
    overrides = [f"data_dir={data_dir}"] + [f"models.{key}.tokenizer={tokenizer}" for key in base_models()]
    out, runs = root / "results", root / "results" / "runs"
    status: dict = {"overrides": overrides, "tables": {}}
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("ROAD_TEST_THREADS", "1")))
    try:
        _run_all(run_table, out, runs, overrides, status)
    finally:
        torch.set_num_threads(threads)
    return status


def _run_all(run_table, out: Path, runs: Path, overrides: list[str], status: dict) -> None:
    for table in TABLES:
        started = time.time()
        try:
            run_table(table, profile=str(PROFILE), output_dir=out, runs_dir=runs, overrides=overrides, progress=False)
            error = None
        except TrainingInterrupted:  # SIGTERM: stop, do not carry on with the next table
            raise
        except Exception as exc:  # noqa: BLE001  (a crashing table is a finding; the others still run)
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        status["tables"][table] = {"seconds": round(time.time() - started, 1), "error": error}


@pytest.fixture(scope="module")
def results(tmp_path_factory, shared_data, worker_id):
    """Every table computed once: ``{"root", "out", "runs", "profile", "status"}``.

    Under pytest-xdist every worker that runs a test of this module asks for the fixture; the first one
    computes under a file lock in the session's shared temporary root and the others read its status.
    Afterwards the weights are deleted (about 120 stages of ~120 MB each; pytest keeps its last three
    temporary roots): configs, metrics, predictions and the tables stay for inspection.
    """
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if worker_id != "master" else base) / "real_model_path"
    with FileLock(str(root) + ".lock"):
        status_file = root / "status.json"
        if not status_file.is_file():
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            status_file.write_text(json.dumps(_compute(root, shared_data), indent=1))
        status = json.loads(status_file.read_text())
    profile = load_profile(str(PROFILE), status["overrides"])
    yield {"root": root, "out": root / "results" / profile.name, "runs": root / "results" / "runs",
           "profile": profile, "status": status}
    for weights in (root / "results" / "runs").glob("*/*.safetensors"):
        weights.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    """pytest-xdist's worker id, or "master" without xdist (its own fixture overrides this one)."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


def _config(runs: Path, run_id: str) -> dict:
    return json.loads((runs / run_id / "config.json").read_text())


def _table_frame(results: dict, table: str) -> pd.DataFrame:
    error = results["status"]["tables"][table]["error"]
    if error:
        pytest.fail(f"table {table} crashed on the real-model path:\n{error}")
    return pd.read_csv(results["out"] / f"{table}.csv")


# -- every table -------------------------------------------------------------------------------------------


def test_there_are_table_specs():
    assert {"table2", "table4", "table5", "blog_passstep"} <= set(TABLES)


def test_the_test_profile_mirrors_mini():
    """mini_ci has mini's models (same checkpoints and depths) and tasks (same evaluation data), so every table
    that runs at the mini scale runs here; a model or task added to mini must be added to mini_ci too."""
    mini, ci = load_profile(str(PROFILES_DIR / "mini.yaml")), load_profile(str(PROFILE))
    assert sorted(ci.models) == sorted(mini.models)
    for key, model in mini.models.items():
        assert (ci.models[key].name_or_path, ci.models[key].num_layers) == (model.name_or_path, model.num_layers), key
    assert sorted(ci.tasks) == sorted(mini.tasks)
    for key, task in mini.tasks.items():
        assert ci.tasks[key].dev.dataset == task.dev.dataset and ci.tasks[key].predict_with == task.predict_with, key
        assert (ci.tasks[key].train is None) == (task.train is None), key
        assert all(s.limit for s in (ci.tasks[key].train, ci.tasks[key].dev) if s is not None), key
    assert base_models() and "base" in base_models()


@pytest.mark.parametrize("table", TABLES)
def test_table_runs_on_the_real_model_path(results, table):
    error = results["status"]["tables"][table]["error"]
    assert error is None, f"table {table} crashed on the real-model path:\n{error}"
    for suffix in (".csv", "_summary.csv", ".json", ".png"):
        assert (results["out"] / f"{table}{suffix}").is_file(), suffix


@pytest.mark.parametrize("table", TABLES)
def test_every_row_task_and_metric_has_a_finite_value(results, table):
    spec, frame = load_table_spec(table), _table_frame(results, table)
    assert {"table", "row", "method", "seed", "metric", "value", "dataset", "run_id"} <= set(frame.columns)
    assert (frame["profile"] == "mini_ci").all() and (frame["table"] == spec.table).all()
    seeds = results["profile"].seeds
    missing, not_finite = [], []
    for row_no, row in enumerate(spec.rows, start=1):
        if row.recipe == "published":  # a number quoted from another paper: nothing to run
            assert not (frame["row"] == row_no).any(), row.method
            continue
        for task, metrics in spec.evaluate.items():
            for metric in metrics:
                cell = frame[(frame["row"] == row_no) & (frame["dataset"] == task) & (frame["metric"] == metric)]
                expected = 1 if row.recipe == "ensemble" else len(seeds)
                if len(cell) != expected:
                    missing.append((row_no, row.method, task, metric, len(cell), expected))
                not_finite += [(row_no, task, metric, v) for v in cell["value"] if not math.isfinite(v)]
                assert (cell["method"] == row.method).all()
    assert not missing, f"(row, method, task, metric, found, expected): {missing}"
    assert not not_finite
    assert frame["value"].between(0, 100).all()


# -- what the real-model path must have exercised ------------------------------------------------------------


def test_cross_model_kd_distils_base_from_a_large_teacher(results):
    """Blog 5.1: every row's students are "base" (3 layers) distilled from a ROaD "large" (6-layer) teacher,
    and the base model reads with a differently named copy of the same tokenizer."""
    frame, runs = _table_frame(results, "blog_passstep"), results["runs"]
    tokenizer_copy = results["profile"].models["base"].tokenizer
    assert tokenizer_copy.endswith("minilm-copy")
    for run_id in frame["run_id"].unique():
        student = _config(runs, run_id)["config"]
        assert student["stage"] == "finetune" and student["objective"]["distill"] == "kd"
        assert student["model"]["num_layers"] == 3 and student["model"]["tokenizer"] == tokenizer_copy
        assert student["teachers"], run_id
        for teacher_id in student["teachers"]:
            teacher = _config(runs, teacher_id)["config"]
            assert teacher["stage"] == "finetune" and teacher["task"] == student["task"]
            assert teacher["model"] != student["model"] and teacher["model"]["num_layers"] is None
            assert teacher["init"] is not None and _config(runs, teacher["init"])["config"]["stage"] == "mtl"


def test_newsqa_is_predicted_by_a_squad_v2_model(results):
    frame, runs = _table_frame(results, "table4"), results["runs"]
    newsqa = frame[frame["dataset"] == "newsqa"]
    assert len(newsqa) and newsqa["value"].map(math.isfinite).all()
    for run_id in newsqa["run_id"].unique():
        cfg = _config(runs, run_id)
        assert cfg["kind"] == "predict" and cfg["config"]["task"] == "newsqa"
        assert cfg["config"]["data"]["dev"]["dataset"] == "newsqa"
        source = _config(runs, cfg["config"]["model_run"])["config"]
        assert source["stage"] == "finetune" and source["task"] == "squad_v2"
        assert source["data"]["train"]["dataset"] == "squad_v2"
        metrics = json.loads((runs / run_id / "metrics.json").read_text())
        assert metrics["total"] == min(17, results["profile"].tasks["newsqa"].dev.limit)  # of the MRQA sample


def _finished_runs(results) -> list[tuple[str, dict]]:
    if all(t["error"] for t in results["status"]["tables"].values()):
        pytest.fail("no table finished")
    runs = sorted(p.parent for p in results["runs"].glob("*/DONE"))
    assert runs
    return [(p.name, json.loads((p / "config.json").read_text())) for p in runs]


def test_every_run_records_versions(results):
    for run_id, cfg in _finished_runs(results):
        prov = cfg["provenance"]
        for key in ("torch", "transformers", "git"):
            assert prov.get(key) and prov[key] != "unknown", (run_id, key, prov)


def test_every_model_run_names_its_checkpoint_and_data(results):
    seen = set()
    for run_id, cfg in _finished_runs(results):
        config = cfg["config"]
        if config["stage"] not in MODEL_AND_DATA_STAGES:
            continue
        seen.add(config["stage"])
        assert config["model"]["name_or_path"] == "minilm", run_id
        splits = config["data"].values() if config["stage"] == "mtl" else (
            s for k, s in config["data"].items() if k in ("train", "dev") and s is not None)
        splits = list(splits)
        assert splits, run_id
        for split in splits:
            assert split["dataset"] and split["split"] and split["limit"], (run_id, split)
    assert seen == set(MODEL_AND_DATA_STAGES)


def test_every_model_run_names_where_its_data_files_came_from(results, shared_data):
    """dataset/split/limit alone do not say which files were read: the data directory or the files (as
    linked here, or resolved into the shared folder) must be in the run's config.json too."""
    data_dir = str(results["profile"].data_dir)
    lacking = []
    for run_id, cfg in _finished_runs(results):
        text = json.dumps(cfg)
        if cfg["config"]["stage"] in MODEL_AND_DATA_STAGES and data_dir not in text \
                and not any(str(p) in text for p in (shared_data, shared_data.resolve())):
            lacking.append(run_id)
    assert not lacking, f"{len(lacking)} run configs name neither the data directory {data_dir} nor files: {lacking[:5]}"


def test_the_caps_hold(results):
    """Every finetuning run took the profile's 2 steps and every MTL run at most 3 (the caps that keep this
    module at a few minutes); per-table seconds are printed (pytest -rA)."""
    seconds = {t: s["seconds"] for t, s in results["status"]["tables"].items()}
    print("seconds per table:", seconds, "total:", round(sum(seconds.values()), 1))
    for run_id, cfg in _finished_runs(results):
        stage = cfg["config"]["stage"]
        if stage in ("finetune", "mtl"):
            steps = json.loads((results["runs"] / run_id / "metrics.json").read_text())["steps"]
            assert (steps == 2) if stage == "finetune" else (1 <= steps <= 3), (run_id, steps)
