"""``make gpu-check`` launches its capped table through torchrun over every visible GPU when there are several.

Checked without a GPU: the command the check builds, with the GPU count mocked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmarks import gpu_check

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def test_the_capped_table_has_an_mtl_stage_and_tables_without_one_are_told_apart() -> None:
    assert gpu_check.has_mtl_stage(gpu_check.TABLE)  # table5: every row starts from ROaD MTL
    assert gpu_check.has_mtl_stage("blog_teacher")    # only a teacher starts from MTL
    assert not gpu_check.has_mtl_stage("table3")


def test_launcher_is_torchrun_over_every_gpu_only_with_several_gpus_and_an_mtl_stage() -> None:
    assert gpu_check.launcher(sys.executable, 8) == [*TORCHRUN, "--nproc_per_node=8", "-m", "road_repro.experiments"]
    assert gpu_check.launcher(sys.executable, 1) == [sys.executable, "-m", "road_repro.experiments"]
    assert gpu_check.launcher(sys.executable, 4, "table3") == [sys.executable, "-m", "road_repro.experiments"]


def test_the_table_part_counts_the_visible_gpus_and_launches_accordingly(tmp_path: Path, monkeypatch) -> None:
    commands: list[list[str]] = []

    def run_limited(command, limit_s, log, env):
        commands.append(list(command))
        return 1, 0.0  # not run: only the command is checked

    monkeypatch.setattr(gpu_check, "run_limited", run_limited)
    for gpus in (4, 1):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        result = gpu_check.part_table(sys.executable, tmp_path, tmp_path / "logs", 60, {}, tmp_path, "")
        assert ("torchrun over 4 GPUs" if gpus == 4 else "on 1 GPU") in result.detail
    multi, single = commands
    assert multi[:len(TORCHRUN) + 4] == [*TORCHRUN, "--nproc_per_node=4", "-m", "road_repro.experiments",
                                         gpu_check.TABLE]
    assert single[:4] == [sys.executable, "-m", "road_repro.experiments", gpu_check.TABLE]
    assert multi[len(TORCHRUN) + 3:] == single[3:]  # the same table, profile, overrides and folders
