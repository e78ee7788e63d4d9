"""``make gpu-check`` without a GPU: what can be checked on a CPU is, so that the check is right the first time a
GPU machine runs it. Without CUDA the entry point stops at once, saying why; the GPU benchmark's ``gpu.csv``
writer gives the agreed columns from a fake measurement; the capped mini table passes the preflight with the
very settings the check runs it with (nothing trains); a part over its time limit is killed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks import gpu_check, gpu_mfu
from benchmarks.common import BenchSettings, context_columns
from road_repro.config import load_profile
from road_repro.errors import DataError
from road_repro.experiments.preflight import PreflightError
from road_repro.experiments.tables import check_tables

REPO = Path(__file__).resolve().parents[2]


def test_without_cuda_the_check_stops_at_once_saying_why(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == gpu_check.EXIT_NO_CUDA != 0
    assert "no CUDA GPU here: torch.cuda.is_available() is False" in done.stderr
    assert "nothing was run" in done.stderr
    assert not out.exists()


def fake_measurement(gpu: str = "NVIDIA H200") -> pd.DataFrame:
    """A wide row as :func:`gpu_mfu.run` builds it, with made-up figures (300 examples/s at 512 tokens)."""
    examples = 300.0
    row = {
        "encoder": "electra h1024 L24", "params": 334_000_000, "dtype": "bfloat16", "batch_size": 32, "seq_len": 512,
        "examples_per_s": examples, "examples_per_s_median": 299.0, "examples_per_s_min": 298.0,
        "tokens_per_s": examples * 512, "pad_fraction": 0.0, "step_ms": 106.7, "peak_mem_mb": 30000.0,
        "mem_kind": "cuda max_memory_allocated", "steps_timed": 20, "repeats": 5, "spread": 0.01,
        "tflops": gpu_mfu.model_flops_per_s(334_000_000, examples * 512) / 1e12, "peak_tflops_assumed": 989.0,
        "paper_mtl_gpu_hours": gpu_mfu.paper_mtl_gpu_hours(examples),
        "paper_mtl_gpu_hours_reported": gpu_mfu.PAPER_MTL_GPU_HOURS,
    }
    row["mfu"] = row["tflops"] / row["peak_tflops_assumed"]
    return pd.DataFrame([{"gpu": gpu, **row, **context_columns(BenchSettings(device="cpu"), "random tokens"),
                          "measured": "2026-01-01 00:00:00 UTC"}])


def test_gpu_csv_has_the_agreed_columns_one_measure_a_row(tmp_path: Path) -> None:
    gpu_mfu.report(fake_measurement(), BenchSettings(out=tmp_path, device="cpu"))
    wide, long = pd.read_csv(tmp_path / "gpu_mfu.csv"), pd.read_csv(tmp_path / "gpu.csv")
    assert len(wide) == 1
    assert tuple(long.columns[: len(gpu_mfu.GPU_CSV_COLUMNS)]) == gpu_mfu.GPU_CSV_COLUMNS
    assert {"measure", "value", "unit", "gpu", "paper_mtl_gpu_hours"} <= set(long.columns)
    assert long["measure"].tolist() == [m for m, _ in gpu_mfu.GPU_MEASURES]
    assert (long["gpu"] == "NVIDIA H200").all() and long["unit"].notna().all()
    value = long.set_index("measure")["value"]
    assert value["examples_per_s"] == 300.0 and value["tokens_per_s"] == 300.0 * 512
    hours = 50_000 * 512 / 300.0 / 3600  # the paper's MTL at 300 examples/s: 23.7 GPU-hours
    assert value["paper_mtl_gpu_hours"] == pytest.approx(hours)
    assert long["paper_mtl_gpu_hours"].tolist() == pytest.approx([hours] * len(long))  # beside every measure
    assert value["paper_mtl_gpu_hours_reported"] == 96.0
    assert value["mfu"] == pytest.approx(6 * 334e6 * 300 * 512 / 989e12)  # 0.31
    assert {"machine", "torch", "measured"} <= set(long.columns)  # the context travels with every figure
    detail = gpu_check.bench_detail(tmp_path / "gpu.csv")
    assert detail.startswith("NVIDIA H200: 300.0 examples/s") and "MFU 0.311" in detail and "23.7 GPU-hours" in detail


def test_gpu_csv_names_what_a_measurement_lacks() -> None:
    with pytest.raises(DataError, match="mfu"):
        gpu_mfu.gpu_csv_frame(fake_measurement().drop(columns=["mfu"]))


@pytest.mark.shared_data
def test_the_capped_mini_table_passes_the_preflight_as_the_check_runs_it(tmp_path: Path, shared_data: Path) -> None:
    """The profile file the check writes, with its overrides, loads on top of mini (mini's models, features,
    learning rates and KD settings; the caps) and the preflight -- settings, models, every split the table's
    stages read -- passes; on a machine without CUDA the one problem left is ``runtime.device='cuda'``."""
    path = gpu_check.capped_profile(tmp_path)
    overrides = gpu_check.table_overrides(shared_data)  # on cuda, exactly as the check runs it
    capped, mini = load_profile(str(path), overrides), load_profile("mini")
    assert capped.name == gpu_check.PROFILE_NAME and capped.data_dir == str(shared_data.resolve())
    assert (capped.models, capped.features, capped.distill.temperature, capped.distill.lam, capped.distill.w) == (
        mini.models, mini.features, mini.distill.temperature, mini.distill.lam, mini.distill.w)
    assert (capped.finetune.lr, capped.finetune.batch_size, capped.mtl.optim.lr, capped.mtl.pass_step) == (
        mini.finetune.lr, mini.finetune.batch_size, mini.mtl.optim.lr, mini.mtl.pass_step)
    assert capped.seeds == [1] and capped.distill.n_teachers == 1 and capped.runtime.device == "cuda"
    assert capped.finetune.steps == 250 and capped.mtl.optim.steps == 200
    assert set(capped.mtl.datasets) == set(gpu_check.MTL_STANDINS)  # mini's unreadable MTL datasets are gone
    if torch.cuda.is_available():
        check_tables([gpu_check.TABLE], str(path), overrides=overrides)
    else:
        with pytest.raises(PreflightError) as caught:
            check_tables([gpu_check.TABLE], str(path), overrides=overrides)
        assert len(caught.value.problems) == 1 and "runtime.device='cuda'" in caught.value.problems[0]
    command = gpu_check.table_command("python", path, shared_data, tmp_path)
    assert command[:4] == ["python", "-m", "road_repro.experiments", gpu_check.TABLE]
    assert [command[i + 1] for i, c in enumerate(command) if c == "--override"] == overrides


def test_a_part_over_its_limit_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "sleep.log"
    code, seconds = gpu_check.run_limited([sys.executable, "-c", "print('started', flush=True); "
                                           "import time; time.sleep(60)"], 2, log, dict(os.environ))
    assert code is None and seconds < 30
    assert "started" in log.read_text()


@pytest.mark.parametrize(("closing", "code", "status"), [
    ("7 passed, 1 skipped in 41.20s", 0, "passed"),
    ("8 skipped, 855 deselected in 12.35s", 0, "failed"),  # CUDA not seen by pytest: nothing was checked
    ("1 failed, 6 passed, 1 skipped in 50.00s", 1, "failed"),
])
def test_the_tests_part_passes_only_when_gpu_tests_passed(tmp_path: Path, monkeypatch, closing, code, status) -> None:
    def fake_run(command, limit_s, log, env):  # noqa: ANN001
        assert command[1:5] == ["-m", "pytest", "-m", "gpu"] and "tests/train/test_gpu.py" in command
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"....s\n==== {closing} ====\n")
        return code, 1.0

    monkeypatch.setattr(gpu_check, "run_limited", fake_run)
    result = gpu_check.part_tests("python", tmp_path, 100, {})
    assert (result.status, closing in result.detail) == (status, True)


def test_the_check_summarises_and_skips_the_table_without_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_check, "cuda_or_exit", lambda: "Fake GPU")
    code = gpu_check.main(["--out", str(tmp_path), "--parts", "table", "--data-dir", str(tmp_path / "absent")])
    assert code == 0
    summary = pd.read_csv(tmp_path / "gpu_check.csv")
    assert summary[["part", "status", "gpu"]].values.tolist() == [["table", "skipped", "Fake GPU"]]
    assert "does not exist" in summary["detail"].iloc[0]
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == "gpu.csv: not written by this run (bench not run)"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_gpu_check_runs_the_module() -> None:
    dry = subprocess.run(["make", "-n", "gpu-check"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m benchmarks.gpu_check" in dry.stdout and "HF_HUB_OFFLINE=1" in dry.stdout
