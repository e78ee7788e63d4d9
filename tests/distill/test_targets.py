"""Per-batch teacher targets from float16 memory-mapped caches equal the whole-dataset ensemble to fp16 tolerance.

The reference is what the stages computed before: every teacher's fp32 logits stacked ``[M, N, C]`` and
combined for all ``N`` rows at once (mean, Weighted KD, span Weighted KD with start and end weighted
separately). Tolerance: a float16 value rounds to nearest with relative error at most ``2^-11`` (11
significant bits), so each stored logit is off by at most ``2^-11 * |x|``; the mean and Weighted KD are
combinations with non-negative weights summing to 1 (Weighted KD's weights sum to ``M`` and are divided by
``M``), so a target is off by at most ``2^-11 * max|x|`` (``atol``; plus 1e-5 for fp32 arithmetic).
That holds as long as no teacher's argmax flips under rounding (Weighted KD's weights depend on it), which
the hand-made logits guarantee with a margin of 1 between a row's top two logits.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from road_repro.distill import (
    TeacherTargets,
    mean_teacher_logits,
    open_soft_targets,
    save_soft_targets,
    weighted_span_teacher_logits,
    weighted_teacher_logits,
)
from road_repro.errors import ConfigError, DataError
from road_repro.train.distributed import shard_bounds, shard_rows

M, W = 3, 0.75


def _with_margin(logits: torch.Tensor) -> torch.Tensor:
    """Raise each row's top logit by 1, so float16 rounding cannot change any argmax."""
    top = logits.argmax(-1, keepdim=True)
    return logits.scatter_add(-1, top, torch.ones_like(top, dtype=logits.dtype))


def _teachers(n: int, c: int, scale: float, seed: int, names: tuple[str, ...]) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [{name: _with_margin(torch.randn(n, c, generator=gen) * scale) for name in names} for _ in range(M)]


def _gold(teacher0: torch.Tensor, seed: int) -> torch.Tensor:
    """Gold classes that some teachers get right and some wrong: teacher 0's argmax on even rows, random on odd."""
    gen = torch.Generator().manual_seed(seed)
    gold = torch.randint(teacher0.shape[1], (teacher0.shape[0],), generator=gen)
    gold[::2] = teacher0.argmax(-1)[::2]
    return gold


def _open(tmp_path: Path, teachers: list[dict[str, torch.Tensor]]):
    files = []
    for i, tensors in enumerate(teachers):
        path = tmp_path / f"teacher{i}.safetensors"
        save_soft_targets(path, tensors, {"teacher": f"run-{i}", "train_fingerprint": "f00d"})
        files.append(open_soft_targets(path, expect={"teacher": f"run-{i}", "train_fingerprint": "f00d"}))
    return files


def _fp16_atol(*logits: torch.Tensor) -> float:
    return 2.0**-11 * max(float(t.abs().max()) for t in logits) + 1e-5


def _batches(n: int, seed: int) -> list[torch.Tensor]:
    """Shuffled batches of 7 rows (as EpochBatches draws them) plus one batch with repeated rows."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [*perm.split(7), torch.tensor([5, 0, 5, n - 1])]


def _per_batch(targets: TeacherTargets, n: int, seed: int) -> torch.Tensor:
    """Every row's targets, assembled from shuffled batches back into row order."""
    out = torch.full(targets.shape, float("nan"))
    for rows in _batches(n, seed):
        got = targets[rows]
        assert got.dtype == torch.float32 and got.shape == (len(rows), *targets.shape[1:])
        out[rows] = got
    return out


def test_classification_mean_and_weighted_kd_equal_the_whole_dataset_computation(tmp_path: Path) -> None:
    n, c = 61, 3
    teachers = _teachers(n, c, scale=4.0, seed=0, names=("logits",))
    gold = _gold(teachers[0]["logits"], seed=1)
    files = _open(tmp_path, teachers)
    stacked = torch.stack([t["logits"] for t in teachers])  # the old [M, N, C] whole-dataset stack
    rounded = stacked.half().float()
    assert torch.equal(rounded.argmax(-1), stacked.argmax(-1))  # the margin keeps Weighted KD's weights
    atol = _fp16_atol(stacked)

    mean = _per_batch(TeacherTargets(files, "logits", "mean", gold), n, seed=2)
    torch.testing.assert_close(mean, mean_teacher_logits(stacked), rtol=0, atol=atol)
    torch.testing.assert_close(mean, mean_teacher_logits(rounded), rtol=1e-6, atol=1e-6)  # only rounding differs

    weighted = _per_batch(TeacherTargets(files, "logits", "weighted", gold, W), n, seed=3)
    expected = weighted_teacher_logits(stacked, gold, W)
    assert (expected - mean_teacher_logits(stacked)).abs().max() > 0.1  # the weighting matters in this data
    torch.testing.assert_close(weighted, expected, rtol=0, atol=atol)
    torch.testing.assert_close(weighted, weighted_teacher_logits(rounded, gold, W), rtol=1e-6, atol=1e-6)


def test_span_mean_and_weighted_kd_weight_start_and_end_separately(tmp_path: Path) -> None:
    n, length = 40, 24
    teachers = _teachers(n, length, scale=8.0, seed=4, names=("start_logits", "end_logits"))
    start_pos, end_pos = _gold(teachers[0]["start_logits"], 5), _gold(teachers[0]["end_logits"], 6)
    files = _open(tmp_path, teachers)
    start = torch.stack([t["start_logits"] for t in teachers])
    end = torch.stack([t["end_logits"] for t in teachers])
    atol = _fp16_atol(start, end)
    assert atol > 2.0**-11 * 20  # span-sized logits (|x| above 20), where float16's relative error shows

    exp_start, exp_end = weighted_span_teacher_logits(start, end, start_pos, end_pos, W)
    got_start = _per_batch(TeacherTargets(files, "start_logits", "weighted", start_pos, W), n, seed=7)
    got_end = _per_batch(TeacherTargets(files, "end_logits", "weighted", end_pos, W), n, seed=8)
    torch.testing.assert_close(got_start, exp_start, rtol=0, atol=atol)
    torch.testing.assert_close(got_end, exp_end, rtol=0, atol=atol)
    # weighting the end with the start positions would be another target: the sides really are separate
    assert (weighted_teacher_logits(end, start_pos, W) - exp_end).abs().max() > 0.1

    for name, stacked in (("start_logits", start), ("end_logits", end)):
        got = _per_batch(TeacherTargets(files, name, "mean"), n, seed=9)
        torch.testing.assert_close(got, mean_teacher_logits(stacked), rtol=0, atol=atol)


def test_single_teacher_kd_is_the_teachers_rounded_logits(tmp_path: Path) -> None:
    teachers = _teachers(10, 5, scale=3.0, seed=10, names=("logits",))[:1]
    targets = TeacherTargets(_open(tmp_path, teachers), "logits")
    rows = torch.tensor([9, 2, 2, 0])
    torch.testing.assert_close(targets[rows], teachers[0]["logits"][rows].half().float(), rtol=0, atol=0)


def test_rows_in_any_form_and_torchrun_shards(tmp_path: Path) -> None:
    teachers = _teachers(20, 4, scale=2.0, seed=11, names=("logits",))
    targets = TeacherTargets(_open(tmp_path, teachers), "logits", "weighted", _gold(teachers[0]["logits"], 12), W)
    rows = torch.tensor([13, 2, 19, 2, 7, 0, 11])
    whole = targets[rows]
    torch.testing.assert_close(targets[rows.numpy()], whole, rtol=0, atol=0)
    torch.testing.assert_close(targets[rows.tolist()], whole, rtol=0, atol=0)
    assert targets[torch.tensor([], dtype=torch.long)].shape == (0, 4)
    # under torchrun every rank builds the global batch, then keeps its contiguous shard (train/loop.py)
    for rank in range(3):
        lo, hi = shard_bounds(len(rows), rank, 3)
        shard = shard_rows({"teacher_logits": whole, "labels": rows}, rank, 3)["teacher_logits"]
        torch.testing.assert_close(shard, targets[rows[lo:hi]], rtol=0, atol=0)
    with pytest.raises(IndexError, match=r"rows \[0, 20\] outside \[0, 20\)"):
        targets[torch.tensor([0, 20])]
    with pytest.raises(IndexError, match="outside"):
        targets[torch.tensor([-1])]
    with pytest.raises(IndexError, match="1-D integer"):
        targets[torch.zeros(2, 2, dtype=torch.long)]
    with pytest.raises(IndexError, match="1-D integer"):
        targets[torch.tensor([0.0, 1.0])]


def test_a_batch_reads_only_its_rows(tmp_path: Path) -> None:
    """The object holds memory maps (and a reference to the gold labels), never an [M, N, ...] tensor; reading
    a batch allocates in proportion to M x B, not M x N (numpy reports its allocations to tracemalloc)."""
    n, length, b = 20_000, 64, 32
    gen = torch.Generator().manual_seed(13)
    teachers = [{"start_logits": torch.randn(n, length, generator=gen) * 5} for _ in range(M)]
    files = _open(tmp_path, teachers)
    gold = torch.randint(length, (n,), generator=gen)
    targets = TeacherTargets(files, "start_logits", "weighted", gold, W)
    assert targets.gold is gold  # a reference, not a copy
    for f in targets.teachers:
        (array,) = f.arrays.values()
        assert isinstance(array, np.memmap) and Path(array.filename) == f.path and array.shape == (n, length)
    held = [v for v in vars(targets).values() if isinstance(v, (torch.Tensor, np.ndarray))]
    assert all(v.numel() <= n if isinstance(v, torch.Tensor) else isinstance(v, np.memmap) for v in held)

    one_teacher = n * length * 2  # bytes of one teacher's float16 logits
    rows = torch.randperm(n, generator=gen)[:b]
    targets[rows]  # warm up (first-call allocations of numpy / torch)
    tracemalloc.start()
    try:
        got = targets[rows]
        _, batch_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = np.array(files[0].arrays["start_logits"])  # check the measurement: a whole-teacher read shows
        _, whole_peak = tracemalloc.get_traced_memory()
        del whole
    finally:
        tracemalloc.stop()
    assert got.shape == (b, length)
    assert whole_peak >= one_teacher
    assert batch_peak < 64 * 1024 < one_teacher // 20  # a few M x B x L reads, not a whole teacher


def test_teachers_must_agree_and_settings_are_checked(tmp_path: Path) -> None:
    base = _teachers(6, 4, scale=1.0, seed=14, names=("start_logits", "end_logits"))
    files = _open(tmp_path / "a", base)
    other = open_soft_targets(save_soft_targets(tmp_path / "short.safetensors",
                                                {"start_logits": torch.zeros(5, 4), "end_logits": torch.zeros(5, 4)}, {}))
    with pytest.raises(DataError, match=r"teacher 1 \(.*short.safetensors\) 'start_logits' has shape \(5, 4\)"):
        TeacherTargets([files[0], other], "start_logits")
    with pytest.raises(DataError, match=r"teacher0.safetensors: soft-target cache has no 'logits'"):
        TeacherTargets(files, "logits")
    with pytest.raises(DataError, match="at least one"):
        TeacherTargets([], "logits")
    with pytest.raises(DataError, match=r"teacher0.safetensors: 'start_logits' caches 6 rows but .* \(7,\) gold"):
        TeacherTargets(files, "start_logits", "weighted", torch.zeros(7, dtype=torch.long))
    with pytest.raises(ConfigError, match="need the gold labels"):
        TeacherTargets(files, "start_logits", "weighted")
    with pytest.raises(ConfigError, match="w=1.5"):
        TeacherTargets(files, "start_logits", "weighted", torch.zeros(6, dtype=torch.long), 1.5)
    with pytest.raises(ConfigError, match="mode='median'"):
        TeacherTargets(files, "start_logits", "median")
    assert "3 teachers" in repr(TeacherTargets(files, "end_logits")) and len(TeacherTargets(files, "end_logits")) == 6
