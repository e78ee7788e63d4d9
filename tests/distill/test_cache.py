"""The soft-target cache: round trip, atomic write, torn and stale files, stacking teachers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from road_repro.distill import load_soft_targets, save_soft_targets, stack_teachers
from road_repro.errors import DataError

META = {"teacher": "run-abc", "train_fingerprint": "f00d", "features": "4", "heads": "start_logits,end_logits"}


def _targets(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"start_logits": torch.randn(4, 6, generator=gen), "end_logits": torch.randn(4, 6, generator=gen)}


def test_round_trip_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "soft_targets.safetensors"
    tensors = _targets()
    save_soft_targets(path, tensors, META)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    loaded, meta = load_soft_targets(path, expect={"teacher": "run-abc", "train_fingerprint": "f00d"})
    assert meta == META
    assert loaded.keys() == tensors.keys()
    for name in tensors:
        assert loaded[name].dtype == torch.float32
        torch.testing.assert_close(loaded[name], tensors[name], rtol=0, atol=0)


def test_float16_storage_loads_as_float32(tmp_path: Path) -> None:
    path = tmp_path / "half.safetensors"
    tensors = _targets()
    save_soft_targets(path, tensors, META, dtype=torch.float16)
    loaded, _ = load_soft_targets(path)
    assert loaded["start_logits"].dtype == torch.float32
    torch.testing.assert_close(loaded["start_logits"], tensors["start_logits"].half().float(), rtol=0, atol=0)


def test_overwrite_replaces_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "st.safetensors"
    save_soft_targets(path, _targets(0), META)
    save_soft_targets(path, _targets(1), {**META, "teacher": "run-def"})
    loaded, meta = load_soft_targets(path)
    assert meta["teacher"] == "run-def"
    torch.testing.assert_close(loaded["end_logits"], _targets(1)["end_logits"])


@pytest.mark.parametrize("keep", [0, 5, 40, -3])
def test_torn_file_is_a_data_error_naming_the_file(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "torn.safetensors"
    save_soft_targets(path, _targets(), META)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(DataError, match="torn.safetensors"):
        load_soft_targets(path)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.safetensors.*missing"):
        load_soft_targets(tmp_path / "nothere.safetensors")


def test_metadata_mismatch_is_a_stale_cache(tmp_path: Path) -> None:
    path = tmp_path / "st.safetensors"
    save_soft_targets(path, _targets(), META)
    with pytest.raises(DataError, match=r"st.safetensors.*train_fingerprint='f00d'.*'beef'"):
        load_soft_targets(path, expect={"train_fingerprint": "beef"})
    with pytest.raises(DataError, match="seed=None"):
        load_soft_targets(path, expect={"seed": "1"})


def test_non_string_metadata_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="features"):
        save_soft_targets(tmp_path / "x.safetensors", _targets(), {"features": 4})  # type: ignore[dict-item]
    assert not list(tmp_path.iterdir())


def test_stack_teachers() -> None:
    caches = [_targets(i) for i in range(3)]
    stacked = stack_teachers(caches)
    assert stacked["start_logits"].shape == (3, 4, 6)
    torch.testing.assert_close(stacked["end_logits"][2], caches[2]["end_logits"])


def test_stack_teachers_disagreeing_raise() -> None:
    with pytest.raises(DataError, match="teacher 1 holds tensors"):
        stack_teachers([_targets(0), {"start_logits": torch.zeros(4, 6)}])
    with pytest.raises(DataError, match=r"teacher 1 'end_logits' has shape \(5, 6\)"):
        stack_teachers([_targets(0), {"start_logits": torch.zeros(4, 6), "end_logits": torch.zeros(5, 6)}])
    with pytest.raises(DataError, match="at least one"):
        stack_teachers([])
