"""Who writes what under torchrun, checked in one process by making this process a non-zero rank.

The rule (road_repro/io.py): results are written by rank 0 and read by the others after a barrier; a shared
cache built under a file lock (the feature store) is written entirely by whichever process holds the lock,
whatever its rank. The first test failed before the rule was explicit: a non-zero rank that won a feature
folder's lock renamed it into place without ``manifest.json`` (``FileNotFoundError`` on opening it).
"""

from __future__ import annotations

import json

import pytest
import torch

from road_repro import io
from road_repro.data.feature_store import MANIFEST, FeatureSpec, FeatureStore
from road_repro.data.synthetic import synthetic_squad
from road_repro.experiments import runs
from road_repro.experiments.runs import RunStore, runtime_record
from road_repro.train import checkpoint
from tests.helpers import tiny_model

CUDA = torch.device("cuda", 0)  # only inspected (type, capability), never used: these tests run without a GPU


@pytest.fixture
def not_rank_0(monkeypatch):
    """This process answers ``is_main() == False``, as rank 1 of a torchrun job does."""
    monkeypatch.setattr(io, "is_main", lambda: False)
    monkeypatch.setattr(runs, "is_main", lambda: False)


def test_a_non_zero_rank_that_wins_the_lock_builds_a_whole_feature_folder(tmp_path, tokenizer, not_rank_0):
    examples = synthetic_squad(20, seed=1)
    stored = FeatureStore(tmp_path).get(examples, tokenizer, FeatureSpec("span", 64, 16, 16), "qa")
    folder = next(tmp_path.glob("*-train"))
    assert json.loads((folder / MANIFEST).read_text())["rows"] == len(stored) >= 20
    assert FeatureStore(tmp_path).open(folder).batch([0, 1])["input_ids"].shape == (2, 64)  # another process maps it


def test_results_are_written_by_rank_0_only_and_a_lock_holders_files_by_any_rank(tmp_path, not_rank_0):
    io.atomic_write_json(tmp_path / "result.json", {"f1": 1.0})
    io.atomic_write_text(tmp_path / "result.txt", "x")
    assert not list(tmp_path.iterdir())  # a result: rank 0 writes it, this rank waits at the next barrier
    io.atomic_write_json(tmp_path / "own.json", {"a": 1}, all_ranks=True)
    io.atomic_write_text(tmp_path / "own.txt", "y", all_ranks=True)
    assert json.loads((tmp_path / "own.json").read_text()) == {"a": 1} and (tmp_path / "own.txt").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["own.json", "own.txt"]  # no temporary files left


def test_checkpoints_load_onto_the_cpu(tmp_path, monkeypatch):
    """Every rank loads the same state.pt: saved from cuda:0, it must not land on cuda:0 for all of them."""
    model = tiny_model()
    checkpoint.save_checkpoint(tmp_path, 3, model, {"optimizer": {"state": {}, "param_groups": []}})
    seen = []
    real_load = torch.load
    monkeypatch.setattr(checkpoint.torch, "load", lambda *a, **k: seen.append(k) or real_load(*a, **k))
    state = checkpoint.load_latest(tmp_path, model)
    assert state["step"] == 3 and seen == [{"weights_only": True, "map_location": "cpu"}]


def test_only_rank_0_verifies_a_cached_run_the_others_take_its_answer(tmp_path, monkeypatch):
    config = {"seed": 1}
    RunStore(tmp_path).run("finetune", config, lambda path: (path / "w.bin").write_bytes(b"w" * 100) and {"f1": 2.0})
    hashed, answers = [], []
    real_sums = runs._artifact_sums
    monkeypatch.setattr(runs, "_artifact_sums", lambda path: hashed.append(path) or real_sums(path))
    monkeypatch.setattr(runs, "is_main", lambda: False)
    monkeypatch.setattr(runs, "broadcast_object", lambda obj, src=0: answers.append(obj) or True)  # rank 0: cached
    run = RunStore(tmp_path).run("finetune", config, lambda path: pytest.fail("a cached run was computed again"))
    assert run.metrics == {"f1": 2.0} and hashed == [] and answers == [None]  # rank 1 hashed nothing, sent nothing
    monkeypatch.setattr(runs, "is_main", lambda: True)
    monkeypatch.setattr(runs, "broadcast_object", lambda obj, src=0: answers.append(obj) or obj)
    assert RunStore(tmp_path).run("finetune", config, lambda path: pytest.fail("recomputed")).metrics == {"f1": 2.0}
    assert len(hashed) == 1 and answers[-1] is True  # rank 0 verified the checksums and sent its answer


@pytest.mark.parametrize("capability, precision, scaler", [((7, 0), "fp16", True), ((8, 0), "bf16", False)])
def test_config_json_records_what_precision_auto_resolved_to(tmp_path, monkeypatch, capability, precision, scaler):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    store = RunStore(tmp_path)
    store.runtime = lambda: runtime_record("auto", CUDA)
    run = store.run("finetune", {"precision": "auto"}, lambda path: {"f1": 1.0})
    record = json.loads((run.path / "config.json").read_text())["runtime"]
    assert record == {"precision_setting": "auto", "precision": precision, "grad_scaler": scaler, "device": "cuda:0",
                      "compute_capability": f"{capability[0]}.{capability[1]}", "world_size": 1}
    assert runtime_record("auto", torch.device("cpu"))["precision"] == "fp32"
    assert runtime_record("fp16", torch.device("cpu"))["grad_scaler"] is True
