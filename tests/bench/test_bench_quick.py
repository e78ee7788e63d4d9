"""The benchmarks cannot rot: a ``--quick`` CPU run of all of them writes every CSV with positive numbers, and
the pieces they are built from (length-grouped batches, padding trimming, timing, MFU arithmetic) are checked.
Speed itself is never asserted."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import ElectraConfig

from benchmarks import gpu_mfu, run_all
from benchmarks.common import (
    BatchStats,
    BenchSettings,
    LengthGroupedBatches,
    PeakMemory,
    qa_examples,
    summarize,
    trim_padding,
)
from benchmarks.finetune_vs_trainer import TrainerModel
from road_repro.errors import ConfigError, DataError
from road_repro.train.loop import EpochBatches
from road_repro.train.objectives import Objective, pass_losses
from tests.helpers import span_batch, tiny_model

EXPECTED_COLUMNS = {
    "finetune_vs_trainer": {"task", "config", "examples_per_s", "tokens_per_s", "pad_fraction", "step_ms",
                            "peak_mem_mb", "vs_trainer_default", "vs_trainer_best", "machine", "model", "data"},
    "kd_cost": {"config", "examples_per_s", "step_ms", "cost_vs_ce", "peak_mem_mb", "machine"},
    "mtl_passstep": {"pass_step", "pass_size", "global_batch", "examples_per_s", "step_ms", "vs_pass_step_1",
                     "machine"},
    "summary": {"measure", "value", "goal", "meets_goal"},
    "data_path": {"measure", "value", "unit", "baseline", "ratio", "goal", "meets_goal"},
}
POSITIVE = ("examples_per_s", "tokens_per_s", "step_ms", "vs_trainer_default", "vs_trainer_best", "cost_vs_ce",
            "vs_pass_step_1", "value")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One ``--quick`` run of every benchmark on CPU with synthetic data: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("bench")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_all.main(["--quick", "--device", "cpu", "--data", "synthetic", "--out", str(out)])
    return out, printed.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_COLUMNS))
def test_quick_run_writes_csv_with_positive_numbers(quick_run: tuple[Path, str], name: str) -> None:
    frame = pd.read_csv(quick_run[0] / f"{name}.csv")
    assert not frame.empty
    assert EXPECTED_COLUMNS[name] <= set(frame.columns)
    for column in set(POSITIVE) & set(frame.columns) - ({"value"} if name == "summary" else set()):
        assert (frame[column] > 0).all(), f"{name}.{column} has a non-positive value"
    if "peak_mem_mb" in frame:
        assert (frame["peak_mem_mb"] >= 0).all()


@pytest.mark.slow
def test_quick_run_counts_every_example_of_every_step(quick_run: tuple[Path, str]) -> None:
    """examples/s x s/step = the batch each step trained on, for our loop and the Trainer alike: the clocks and
    the batch records of both line up step for step."""
    out = quick_run[0]
    batch_columns = {"finetune_vs_trainer": "batch_size", "kd_cost": "batch_size", "mtl_passstep": "global_batch"}
    for name, batch in batch_columns.items():
        frame = pd.read_csv(out / f"{name}.csv")
        per_step = frame["examples_per_s"] * frame["step_ms"] / 1000
        assert per_step.round(6).tolist() == frame[batch].astype(float).tolist(), name


@pytest.mark.slow
def test_quick_run_configurations_and_gpu_skip(quick_run: tuple[Path, str]) -> None:
    out, printed = quick_run
    finetune = pd.read_csv(out / "finetune_vs_trainer.csv")
    assert set(finetune["task"]) == {"mnli_pairs", "squad_qa"}
    assert set(finetune["config"]) == {"ours_stage", "ours_padded", "ours_dynamic", "trainer_default", "trainer_dynamic"}
    for task, group in finetune.groupby("task"):
        pad = group.set_index("config")["pad_fraction"]
        assert pad["ours_dynamic"] <= pad["ours_padded"], task
        assert pad["ours_stage"] <= pad["ours_padded"], task  # the stage pads per batch (span_padding: batch)
        assert pad["trainer_dynamic"] <= pad["trainer_default"], task
    assert pd.read_csv(out / "mtl_passstep.csv")["pass_step"].tolist() == [1, 2, 4, 8]
    assert not (out / "gpu_mfu.csv").exists()
    assert "gpu_mfu: skipped" in printed


# -- the pieces ----------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), min_size=1, max_size=120), batch_size=st.integers(1, 16),
       seed=st.integers(0, 2**16))
def test_length_grouped_batches_visit_every_row_once_per_epoch(lengths: list[int], batch_size: int, seed: int) -> None:
    batches = LengthGroupedBatches(lengths, batch_size, seed)
    steps = batches.steps_per_epoch
    for epoch in range(2):
        seen = torch.cat([batches(epoch * steps + k) for k in range(steps)])
        assert sorted(seen.tolist()) == list(range(len(lengths)))
    step = steps + steps // 2  # a fresh instance asked straight for a step of epoch 1 agrees: resume-safe
    assert torch.equal(LengthGroupedBatches(lengths, batch_size, seed)(step), batches(step))


def test_length_grouping_cuts_padding() -> None:
    lengths = [(7 * i) % 64 + 1 for i in range(256)]

    def padded_slots(batches) -> int:  # noqa: ANN001
        return sum(len(idx) * max(lengths[i] for i in idx.tolist()) for idx in map(batches, range(256 // 16)))

    grouped, shuffled = LengthGroupedBatches(lengths, 16, 0), EpochBatches(len(lengths), 16, 0)
    assert padded_slots(grouped) < 0.7 * padded_slots(shuffled)


def test_trim_padding_is_exact_for_the_model() -> None:
    model = tiny_model().eval()
    batch = span_batch(3, length=12)
    batch["attention_mask"][:, 7:] = 0  # every row padded after 7 tokens
    batch["attention_mask"][0, 7:9] = 1  # the longest row has 9
    trimmed = trim_padding(batch)
    assert trimmed["input_ids"].shape == (3, 9) and torch.equal(trimmed["start_positions"], batch["start_positions"])
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], head="mrc")
        cut = model(input_ids=trimmed["input_ids"], attention_mask=trimmed["attention_mask"], head="mrc")
    torch.testing.assert_close(cut["start_logits"], full["start_logits"][:, :9])


def test_trim_padding_rejects_left_padding() -> None:
    batch = span_batch(2, length=6)
    batch["attention_mask"][:, :2] = 0
    with pytest.raises(DataError, match="right-padded"):
        trim_padding(batch)


def test_summarize_rates_over_the_steps_after_warmup() -> None:
    marks = {1: 10.0, 2: 10.5, 3: 11.0}  # steps 1 and 2 took 0.5 s each
    stats = {1: BatchStats(8, 60, 80), 2: BatchStats(8, 20, 80)}
    m = summarize(marks, stats, warmup=1, total=3, peak_mem_mb=1.0, mem_kind="x")
    assert (m.examples_per_s, m.tokens_per_s, m.pad_fraction, m.step_ms, m.steps) == (16.0, 80.0, 0.5, 500.0, 2)
    with pytest.raises(ConfigError, match="warmup"):
        summarize(marks, stats, warmup=0, total=3, peak_mem_mb=1.0, mem_kind="x")
    with pytest.raises(DataError, match="missing"):
        summarize({1: 10.0}, stats, warmup=1, total=3, peak_mem_mb=1.0, mem_kind="x")


def test_peak_memory_sees_an_allocation() -> None:
    with PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(16 * 2**20)  # 64 MiB, touched
    del block
    if mem.kind == "cpu peak RSS (VmHWM)":
        assert mem.mb > 48
    else:  # ru_maxrss only rises: at least not negative
        assert mem.mb >= 0


def test_trainer_model_trains_our_loss() -> None:
    model = tiny_model()
    batch = span_batch(4, length=10)
    torch.manual_seed(0)
    theirs = TrainerModel(model, "mrc").eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                               start_positions=batch["start_positions"],
                                               end_positions=batch["end_positions"])["loss"]
    ours = pass_losses(Objective(), model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                          head="mrc"), batch, 0.0)["total"]
    torch.testing.assert_close(theirs, ours)


def test_settings_are_checked_before_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="data="):
        BenchSettings(data="hub")
    with pytest.raises(ConfigError, match="repeats"):
        BenchSettings(repeats=0)
    monkeypatch.setattr("benchmarks.common.shared_data_dir", lambda: None)
    with pytest.raises(ConfigError, match="no real data"):
        qa_examples(BenchSettings(data="shared"), 4)


def test_gpu_arithmetic() -> None:
    assert gpu_mfu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_mfu.peak_tflops("NVIDIA A10G") == 70.0 and gpu_mfu.peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert gpu_mfu.peak_tflops("Some Future GPU") is None
    rate = 50_000 * 512 / (96 * 3600)  # the paper's pace: 96 GPU-hours
    assert gpu_mfu.paper_mtl_gpu_hours(rate) == pytest.approx(96.0)
    assert gpu_mfu.model_flops_per_s(params=10, tokens_per_s=2.0) == 120.0


def test_gpu_benchmark_measures_a_tiny_electra_on_cpu() -> None:
    """The GPU benchmark's measuring code, on a tiny config, so it runs (and cannot rot) without a GPU."""
    config = ElectraConfig(vocab_size=64, embedding_size=16, hidden_size=16, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    row = gpu_mfu.measure(config, BenchSettings(device="cpu", repeats=1), gpu_mfu.Sizes(2, 16, 1, 2), peak=1.0)
    assert row["params"] > 0 and row["tokens_per_s"] == pytest.approx(16 * row["examples_per_s"])
    assert row["mfu"] > 0 and row["paper_mtl_gpu_hours"] > 0 and row["dtype"] == "float32"


def test_gpu_benchmark_skips_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_mfu.run(BenchSettings(device="cpu")) is None
    assert "skipped" in capsys.readouterr().out
