"""``road-repro export`` checks every input before writing and writes the folder whole: a missing or broken
``metrics.json``, a run record without a key it reads, a failed upload -- each is one error line naming the
file (or repo), and no half-written folder is left. Built from a hand-made finished run (a tiny preset with
an untrained head), no training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from road_repro import cli
from road_repro.config import REPO_ROOT, ModelConfig
from road_repro.errors import ConfigError, DataError
from road_repro.export import export_run, write_folder

RUN_ID = "finetune-0123abcd"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A finished classification run as the suite leaves it: DONE, config.json, model.safetensors, metrics.json."""
    from road_repro.models.encoder import load_tokenizer
    from road_repro.models.model import build_model, save_weights

    model_cfg = ModelConfig(preset="tiny")
    folder = tmp_path_factory.mktemp("template") / RUN_ID
    folder.mkdir()
    save_weights(build_model(model_cfg, len(load_tokenizer(model_cfg)), {"mnli": 3}), folder / "model.safetensors")
    data = {"train": {"dataset": "synthetic_nli", "split": "train"}, "dev": {"dataset": "synthetic_nli", "split": "dev"}}
    config = {"kind": "finetune", "config": {"model": asdict(model_cfg), "data": data, "features": {}, "task": "mnli",
                                             "stage": "finetune", "seed": 1}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"acc": 40.0, "steps": 2}))
    (folder / "DONE").write_text("{}")
    return folder


@pytest.fixture
def run(template, tmp_path) -> Path:
    """A fresh copy of the finished run, under ``tmp_path/runs``."""
    return Path(shutil.copytree(template, tmp_path / "runs" / RUN_ID))


def _edit_config(run: Path, edit) -> None:
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))


def _left_behind(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "export").iterdir()) if (tmp_path / "export").exists() else []


def test_a_finished_run_exports_whole(run, tmp_path):
    out = export_run(run, tmp_path / "export" / "cls")
    assert {"config.json", "model.safetensors", "README.md", "road_repro_run.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    assert _left_behind(tmp_path) == ["cls"]  # no hidden partial folder beside it
    assert json.loads((out / "road_repro_run.json").read_text())["metrics"]["acc"] == 40.0


@pytest.mark.parametrize("metrics, why", [(None, "metrics.json: missing"), ("{", "metrics.json: not valid JSON"),
                                          ("[40.0]", "metrics.json: not a JSON object")])
def test_a_bad_metrics_file_stops_before_anything_is_written(run, tmp_path, metrics, why):
    if metrics is None:
        (run / "metrics.json").unlink()
    else:
        (run / "metrics.json").write_text(metrics)
    with pytest.raises(DataError, match=why):
        export_run(run, tmp_path / "export" / "cls")
    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize("path", ["config.model", "config.data.train.dataset", "config.data.dev.dataset", "config"])
def test_a_missing_key_names_the_run_and_the_key(run, tmp_path, path):
    def drop(config):
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[last]

    _edit_config(run, drop)
    with pytest.raises(DataError, match=rf"{RUN_ID}/config.json: no '{path}' \(missing key '{path.split('.')[-1]}'\)"):
        export_run(run, tmp_path / "export" / "cls")
    assert _left_behind(tmp_path) == []


def test_an_unknown_model_field_names_the_run(run, tmp_path):
    _edit_config(run, lambda c: c["config"]["model"].update(hidden_sizes=3))
    with pytest.raises(DataError, match=rf"{RUN_ID}/config.json: config.model is not a model config .*hidden_sizes"):
        export_run(run, tmp_path / "export" / "cls")


def test_a_failed_write_leaves_no_folder_and_an_earlier_export_intact(tmp_path):
    out = tmp_path / "export" / "cls"

    def fails(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_folder(out, fails)
    assert _left_behind(tmp_path) == []
    write_folder(out, lambda folder: (folder / "road_repro_run.json").write_text("1"))
    with pytest.raises(OSError, match="disk full"):
        write_folder(out, fails)
    assert _left_behind(tmp_path) == ["cls"] and (out / "road_repro_run.json").read_text() == "1"
    write_folder(out, lambda folder: (folder / "road_repro_run.json").write_text("2"))  # an earlier export: replaced
    assert _left_behind(tmp_path) == ["cls"] and (out / "road_repro_run.json").read_text() == "2"


def test_a_folder_that_is_not_an_export_is_never_replaced(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="export: exists and is not an earlier export"):
        write_folder(tmp_path / "export", lambda folder: None)
    assert (tmp_path / "export" / "notes.txt").read_text() == "mine"


def test_a_failed_upload_is_one_line_naming_the_repo(run, tmp_path):
    """Offline (HF_HUB_OFFLINE=1, nothing leaves the machine) the upload fails: one line, status 2, the export
    itself kept."""
    done = subprocess.run([sys.executable, "-m", "road_repro", "export", RUN_ID, "--out", str(tmp_path / "export" / "cls"),
                           "--runs-dir", str(run.parent), "--push-to-hub", "someone/road-test"],
                          capture_output=True, text=True, cwd=REPO_ROOT, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.count("error:") == 1
    assert done.stderr.splitlines()[-1].startswith(
        "error: upload to the Hugging Face Hub repo 'someone/road-test' failed (OfflineModeIsEnabled")
    assert f"exported {RUN_ID}" in done.stdout and (tmp_path / "export" / "cls" / "README.md").is_file()


def test_export_takes_no_profile():
    """The run's config.json holds its settings; a --profile that nothing read is gone, not silently ignored."""
    assert cli.parser().parse_args(["export", RUN_ID, "--out", "x"]).output_dir == "results"
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["export", RUN_ID, "--out", "x", "--profile", "paper"])
