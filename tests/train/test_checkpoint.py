"""Checkpoints are atomic and verified; a torn one is skipped in favour of the previous one."""

import torch

from road_repro.train.checkpoint import complete_checkpoints, load_latest, save_checkpoint
from tests.helpers import tiny_model


def test_round_trip_and_keep_last_two(tmp_path):
    model = tiny_model(seed=0)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, {"extra": torch.tensor([step])})
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    other = tiny_model(seed=5)
    state = load_latest(tmp_path, other)
    assert state["step"] == 3 and state["extra"].item() == 3
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob(".step-*"))  # no temporary folders left behind


def test_torn_checkpoint_falls_back_to_previous(tmp_path):
    model = tiny_model(seed=0)
    save_checkpoint(tmp_path, 1, model, {})
    save_checkpoint(tmp_path, 2, model, {})
    weights = tmp_path / "step-00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])  # torn write
    assert load_latest(tmp_path, tiny_model())["step"] == 1
