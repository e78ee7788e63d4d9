"""The run cache: reuse finished runs, redo killed/torn/changed ones, never mix configs."""

import json

import pytest

from road_repro.experiments.runs import RunStore, config_hash


def test_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_finished_run_is_reused(tmp_path):
    store, calls = RunStore(tmp_path), []

    def fn(path):
        calls.append(1)
        (path / "artifact.txt").write_text("x")
        return {"f1": 50.0}

    first = store.run("finetune", {"seed": 1}, fn)
    second = store.run("finetune", {"seed": 1}, fn)
    assert calls == [1] and first == second and second.metrics == {"f1": 50.0}
    assert json.loads((first.path / "config.json").read_text())["config"] == {"seed": 1}
    store.run("finetune", {"seed": 2}, fn)
    assert len(calls) == 2


def test_killed_run_restarts_cleanly(tmp_path):
    store = RunStore(tmp_path)

    def crash(path):
        (path / "partial.txt").write_text("half")
        raise KeyboardInterrupt  # a kill mid-run

    with pytest.raises(KeyboardInterrupt):
        store.run("finetune", {"seed": 1}, crash)
    assert store.finished("finetune", {"seed": 1}) is None

    def ok(path):
        assert not (path / "partial.txt").exists()  # started from a clean folder
        return {"f1": 1.0}

    assert store.run("finetune", {"seed": 1}, ok).metrics == {"f1": 1.0}


def test_tampered_artifact_forces_a_rerun(tmp_path):
    store, calls = RunStore(tmp_path), []

    def fn(path):
        calls.append(1)
        (path / "artifact.txt").write_text("good")
        return {"f1": 1.0}

    run = store.run("finetune", {"seed": 1}, fn)
    (run.path / "artifact.txt").write_text("bad")
    RunStore(tmp_path).run("finetune", {"seed": 1}, fn)  # a later process verifies checksums again
    assert len(calls) == 2


def test_one_console_line_per_stage_says_cached_computing_and_why(tmp_path, caplog):
    caplog.set_level("INFO", logger="road_repro")

    def fn(path):
        (path / "artifact.txt").write_text("x")
        return {"f1": 50.0}

    store = RunStore(tmp_path)
    store.context = "table5 smoke"
    run = store.run("finetune", {"seed": 1}, fn)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == f"[table5 smoke] finetune {run.run_id}: computing"
    assert lines[1].startswith(f"[table5 smoke] finetune {run.run_id}: done in ") and lines[1].endswith(" s")
    caplog.clear()
    RunStore(tmp_path).run("finetune", {"seed": 1}, fn)  # another process: reuses it
    assert [r.getMessage() for r in caplog.records] == [f"finetune {run.run_id}: cached"]
    for damage, why in [(lambda: (run.path / "artifact.txt").write_text("y"), "its files fail their checksums"),
                        (lambda: (run.path / "DONE").unlink(), "it has no valid DONE marker (killed or torn)")]:
        damage()
        caplog.clear()
        RunStore(tmp_path).run("finetune", {"seed": 1}, fn)
        assert caplog.records[0].getMessage() == f"finetune {run.run_id}: computing again: {why}"


def test_data_sources_are_recorded_beside_the_config_not_hashed(tmp_path):
    def fn(path):
        return {"f1": 1.0}

    first = RunStore(tmp_path).run("finetune", {"seed": 1}, fn, {"squad_v2.train": "squad_v2:train from /a/train.json"})
    again = RunStore(tmp_path).run("finetune", {"seed": 1}, fn, {"squad_v2.train": "squad_v2:train from /b/train.json"})
    assert first.run_id == again.run_id  # a moved data directory does not invalidate the run
    saved = json.loads((first.path / "config.json").read_text())
    assert saved["data_sources"] == {"squad_v2.train": "squad_v2:train from /a/train.json"}


def test_data_source_names_the_file_read(tmp_path):
    from road_repro.data.registry import data_source

    (tmp_path / "squad2").mkdir()
    (tmp_path / "squad2" / "dev-v2.0.json").write_text("{}")
    assert data_source("squad_v2", "dev", tmp_path) == str((tmp_path / "squad2" / "dev-v2.0.json").resolve())
    assert data_source("squad_v2", "train", None).startswith("hub:rajpurkar/squad_v2")
    assert data_source("synthetic_nli", "train", None) == "generated (synthetic_nli)"
