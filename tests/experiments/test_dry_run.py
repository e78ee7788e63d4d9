"""The dry run plans the compute: every stage of the chosen tables with its steps, examples and GPU-hours,
shared stages counted once, without training -- and at the paper scale without the hub or any network."""

from __future__ import annotations

import copy
import json
import math
import re
import socket
import time

import pytest

from road_repro.config import ModelConfig, load_profile
from road_repro.data.features import qa_features
from road_repro.data.registry import get_dataset, load_examples
from road_repro.experiments.__main__ import main
from road_repro.experiments.compute import (
    ELECTRA_BASE,
    ELECTRA_LARGE,
    FORWARD_COST,
    PAPER_MTL_BATCH,
    PAPER_MTL_STEPS,
    PADDING_FACTOR,
    EncoderShape,
    Work,
    examples_processed,
    finetune_steps,
    gpu_hours,
    load_throughput,
    paper_default,
    total_gpu_hours,
    windows_per_example,
    work,
)
from road_repro.experiments.planning import build_plan, plan_text
from road_repro.experiments.tables import _progress, plan_tables
from road_repro.models.encoder import load_tokenizer

#: The Makefile's TABLES, in its order (later tables reuse earlier ones' stages).
ALL = ["table2", "table3", "table4", "table5", "table6", "table7", "blog_passstep", "blog_teacher",
       "blog_distilled_teacher", "blog_hidden_state", "blog_final", "blog_other_tasks"]
#: The V100-hours the paper profile's 12 tables come to at the default throughput (README): ~968 (~1,442 with
#: features.span_padding=window).
PAPER_TOTAL_RANGE = (800.0, 3000.0)


def _stable(plan: dict) -> dict:
    out = copy.deepcopy(plan)
    out.pop("started")
    return out


@pytest.fixture(scope="module")
def smoke_plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("dry")
    first = plan_tables(["table2", "table4"], "smoke", output_dir=out, offline=True)
    second = plan_tables(["table2", "table4"], "smoke", output_dir=out, offline=True)
    return out, first, second


def test_smoke_dry_run_counts_shared_stages_once_and_trains_nothing(smoke_plan):
    out, plan, _ = smoke_plan
    assert not (out / "runs").exists()  # nothing trained: no run folder
    t2, t4 = plan["tables"]["table2"], plan["tables"]["table4"]
    assert t2["shared"] == 0 and t4["shared"] > 0  # Table 4's baseline and + MTL rows are Table 2's ELECTRA runs
    assert set(t2["stages"]) & set(t4["stages"])
    union = set(t2["stages"]) | set(t4["stages"])
    assert plan["run_ids"] == list(dict.fromkeys(t2["stages"] + t4["stages"])) and len(union) == len(plan["run_ids"])
    assert set(plan["stages"]) == union
    # GPU-hours: every stage once in the total; a table's "new" hours leave out what an earlier table computes
    hours = {i: s["gpu_hours"] for i, s in plan["stages"].items()}
    assert plan["gpu_hours"]["total"] == pytest.approx(sum(hours.values()), rel=1e-4)
    assert plan["gpu_hours"]["total"] == pytest.approx(t2["gpu_hours"] + t4["gpu_hours_new"], rel=1e-4)
    assert t4["gpu_hours"] > t4["gpu_hours_new"] > 0
    shared = [i for i in t4["stages"] if i in t2["stages"]]
    assert all(plan["stages"][i]["tables"] == ["table2", "table4"] and plan["stages"][i]["shared"] for i in shared)
    assert not any(s["planned_id"] for s in plan["stages"].values())  # all data and models are on disk
    assert "soft_targets" in plan["kinds"]  # KD during MTL: each teacher's logits are a stage of their own
    assert json.loads((out / "smoke" / "plan.json").read_text())["run_ids"] == plan["run_ids"]
    assert _progress(out, load_profile("smoke")).run_ids == frozenset(plan["run_ids"])  # real ids: progress works


def test_smoke_dry_run_steps_and_examples_match_the_profile(smoke_plan):
    _, plan, _ = smoke_plan
    p = load_profile("smoke")
    stages = plan["stages"].values()
    by = lambda kind, text: [s for s in stages if s["kind"] == kind and text in s["what"]]  # noqa: E731
    f = p.finetune
    for stage in by("finetune", "mnli on"):
        assert stage["train_examples"] == 600 and stage["eval_examples"] == 300
        assert stage["steps"] == math.ceil(f.epochs * math.ceil(600 / f.batch_size)) == 76
    ex = load_examples("synthetic_squad", "train", limit=800)
    windows = len(qa_features(ex, load_tokenizer(ModelConfig(name_or_path="minilm")), p.features.max_seq_length,
                              p.features.doc_stride, p.features.max_query_length)["input_ids"])
    for stage in by("finetune", "squad_v2 on"):
        assert stage["train_examples"] == windows
        assert stage["steps"] == math.ceil(f.epochs * math.ceil(windows / f.batch_size))
    for stage in by("mtl", "MTL"):
        assert stage["steps"] == p.mtl.optim.steps and stage["examples_trained"] == p.mtl.optim.steps * p.mtl.optim.batch_size
    for stage in by("finetune", "mtl:"):  # the per-dataset teachers of KD during MTL
        assert stage["steps"] == math.ceil(p.mtl.teacher_epochs * math.ceil(stage["train_examples"] / f.batch_size))
    for stage in by("soft_targets", ""):
        assert stage["steps"] is None and stage["forward_examples"] == stage["train_examples"] > 0


def test_warm_start_counts_tokens_by_the_rule_of_the_other_stages(smoke_plan):
    """The warm start's span windows run padded to their shuffled batch's longest (real < computed, by at most the
    shuffled padding factor), its sentence pairs at max_pair_length -- not every token as real; the plan's
    header says how tokens are counted."""
    _, plan, _ = smoke_plan
    p = load_profile("smoke")
    ws, f = p.models["large"].warm_start, p.features
    pair_streams = [s for s in ws.mixture.values() if get_dataset(s.dataset).task != "mrc"]
    pairs = len(pair_streams) * ws.mixture_steps * ws.batch_size * f.max_pair_length
    stages = [s for s in plan["stages"].values() if s["kind"] == "warm_start"]
    assert stages and pair_streams
    for stage in stages:
        span_real, span_padded = stage["real_tokens"] - pairs, stage["padded_tokens"] - pairs
        assert 0 < span_real < span_padded <= span_real * PADDING_FACTOR["shuffled"] * (1 + 1e-6)
        assert span_padded < (ws.steps + ws.mixture_steps) * ws.batch_size * f.max_seq_length  # not all at 64
        assert stage["padding_share"] > 0
    header = plan_text(plan).splitlines()[:4]
    assert any("sentence pairs at max_pair_length" in line and "no part of the padding share" in line
               for line in header)


def test_a_second_plan_after_nothing_changed_is_identical(smoke_plan):
    _, first, second = smoke_plan
    assert _stable(first) == _stable(second)


def test_dry_run_keeps_the_real_run_ids_where_everything_is_on_disk(smoke_plan, tmp_path):
    _, dry, _ = smoke_plan
    full = plan_tables(["table2", "table4"], "smoke", output_dir=tmp_path, offline=False)  # preflight + plan
    assert full["run_ids"] == dry["run_ids"]


def test_a_local_data_error_stops_the_dry_run(tmp_path, capsys):
    data = tmp_path / "data" / "qqp"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t0\t1\tA?\tB?\t7\n")
    rc = main(["table4", "--profile", "smoke", "--output-dir", str(tmp_path / "out"), "--dry-run",
               "--override", f"data_dir={tmp_path / 'data'}", "--override", "tasks.qqp.train={dataset: qqp, split: train}"])
    assert rc == 2 and str(data / "train.tsv") in capsys.readouterr().err


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test; the hub is offline and no data directory is set."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"the dry run tried to reach the network: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.delenv("ROAD_DATA_DIR", raising=False)
    monkeypatch.delenv("NPROC", raising=False)  # the dry run plans for the profile's GPUs


def test_paper_dry_run_of_every_table_needs_no_hub(tmp_path, no_network, capsys):
    started = time.time()
    rc = main([*ALL, "--profile", "paper", "--output-dir", str(tmp_path), "--dry-run"])
    seconds = time.time() - started
    out = capsys.readouterr().out
    assert rc == 0, out
    assert seconds < 90, f"the paper dry run took {seconds:.0f} s"
    plan = json.loads((tmp_path / "paper" / "plan.json").read_text())
    assert plan["order"] == ALL and set(plan["tables"]) == set(ALL) and not (tmp_path / "runs").exists()
    stages = plan["stages"]
    assert stages and all(s["planned_id"] and s["status"] == "new" for s in stages.values())  # data is hub-only
    assert all(s["gpu_hours"] > 0 for s in stages.values() if s["kind"] != "ensemble")
    # the ROaD MTL of ELECTRA-large: 50,000 steps x 512; 96 V100-h at 512 tokens an example, 64 at max_pair_length
    # 128, less with span windows padded per batch (span_padding: batch): priced by the tokens it computes
    (road,) = [s for s in stages.values() if s["what"] == "road MTL on large, pass_step 4, 9 datasets"]
    assert road["steps"] == 50_000 and road["examples_trained"] == 50_000 * 512
    assert road["gpu_hours"] == pytest.approx(96 * road["padded_tokens"] / (50_000 * 512 * 512), rel=1e-3)
    assert road["gpu_hours"] < 96 * (5 * 512 + 4 * 128) / 9 / 512
    assert set(road["tables"]) >= {"table2", "table4", "table5"}
    # memory on the paper's 8 x V100-32GB with automatic rows per GPU: every stage fits, MT-DNN in micro-batches
    assert (plan["memory"]["gpu"], plan["memory"]["nproc"], plan["memory"]["warnings"]) == ("V100-32GB", 8, [])
    assert road["memory"]["rows_per_gpu"] == 16 and "memory per GPU on 8 x V100-32GB" in out
    mtdnn = [s for s in stages.values() if s["what"].startswith("mtdnn MTL on large,")]
    assert mtdnn and all(s["memory"]["rows_per_gpu"] == 64 and s["memory"]["micro_batches"] > 1 for s in mtdnn)
    squad = [s for s in stages.values() if s["kind"] == "finetune" and s["what"].startswith("squad_v2 on large, seed 1")]
    assert squad and all(s["train_examples"] >= 130_319 and s["eval_examples"] >= 11_873 for s in squad)
    total = plan["gpu_hours"]["total"]
    assert PAPER_TOTAL_RANGE[0] < total < PAPER_TOTAL_RANGE[1]
    assert total == pytest.approx(sum(t["gpu_hours_new"] for t in plan["tables"].values()), rel=1e-4)
    assert "V100-h" in out and "default from the paper" in out
    assert "new mtl" in out and "[12/12] blog_other_tasks" in out
    if "models.large:" in out:  # unless ELECTRA-large is in this machine's Hugging Face cache
        assert "models.large: google/electra-large-discriminator is not on this machine" in out
    assert "squad_v2:train comes from the hub" in out
    assert _progress(tmp_path, load_profile("paper")) is None  # planned ids never finish: no progress from them


def test_paper_mtl_is_the_papers_96_v100_hours_at_512_token_pairs(tmp_path, no_network):
    # every example padded to 512, as the reference code runs it (span windows: span_padding=window)
    plan = build_plan(["table4"], "paper", overrides=["features.max_pair_length=512", "features.span_padding=window"],
                      output_dir=tmp_path)
    (road,) = [s for s in plan["stages"].values() if s["what"] == "road MTL on large, pass_step 4, 9 datasets"]
    assert road["gpu_hours"] == pytest.approx(96.0, rel=1e-6)
    assert road["padded_tokens"] == pytest.approx(50_000 * 512 * 512, rel=1e-6)


def test_per_batch_span_padding_prices_stages_by_the_tokens_they_run(tmp_path, no_network):
    plans = {mode: build_plan(["table5"], "paper", overrides=[f"features.span_padding={mode}"],
                              output_dir=tmp_path / mode) for mode in ("window", "batch")}
    window, batch = (plans[m]["stages"] for m in ("window", "batch"))
    assert window.keys() != batch.keys()  # span_padding is in every run config: other run ids
    by_what = {mode: {re.sub(r"-[0-9a-f]{16}", "", s["what"]): s for s in plans[mode]["stages"].values()}
               for mode in plans}  # (without the run ids a stage's description names)
    squad = [w for w, s in by_what["window"].items() if w.startswith("squad_v2 on large") and s["kind"] == "finetune"]
    assert squad
    for what in squad:
        old, new = by_what["window"][what], by_what["batch"][what]
        assert new["real_tokens"] == pytest.approx(old["real_tokens"])  # the same real tokens ...
        assert new["padded_tokens"] < 0.5 * old["padded_tokens"]  # ... less than half the computed ones
        # priced by computed tokens (within 1 %: dev scoring is forward-only work, at another padding factor)
        assert new["gpu_hours"] / old["gpu_hours"] == pytest.approx(new["padded_tokens"] / old["padded_tokens"], rel=0.01)
        assert new["padding_share"] < 0.05 < 0.5 < old["padding_share"]
    assert plans["batch"]["gpu_hours"]["total"] < plans["window"]["gpu_hours"]["total"]
    assert plans["batch"]["tokens"]["padding_share"] < plans["window"]["tokens"]["padding_share"]


def test_a_settings_error_exits_2_naming_the_setting(tmp_path, no_network, capsys):
    rc = main([*ALL, "--profile", "paper", "--output-dir", str(tmp_path), "--dry-run", "--override", "finetune.lr=-1"])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line for line in err.splitlines() if "finetune.lr" in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "must lie in" in lines[0]
    assert not (tmp_path / "paper" / "plan.json").exists()


def test_the_estimate_of_a_hand_made_stage_list_is_the_direct_computation():
    t = paper_default()
    assert t.examples_per_s == pytest.approx(PAPER_MTL_STEPS * PAPER_MTL_BATCH / (8 * 12 * 3600))
    large, base = ELECTRA_LARGE.compute_params, ELECTRA_BASE.compute_params
    assert large == 24 * (4 * 1024**2 + 2 * 1024 * 4096) and base == 12 * (4 * 768**2 + 2 * 768 * 3072)
    stages = [
        work(3 * 130_000, 512, ELECTRA_LARGE) + work(12_000, 512, ELECTRA_LARGE, forward_only=True),  # finetune
        work(400_000, 128, ELECTRA_BASE),  # a base model on sentence pairs
        work(130_000, 512, ELECTRA_LARGE, forward_only=True),  # soft targets
        Work(),  # an ensemble: averages stored logits
    ]
    rate = t.examples_per_s * 512 * large  # parameter-tokens per second
    direct = [(3 * 130_000 * 512 * large + FORWARD_COST * 12_000 * 512 * large) / rate / 3600,
              400_000 * 128 * base / rate / 3600, FORWARD_COST * 130_000 * 512 * large / rate / 3600, 0.0]
    assert [gpu_hours(s, t) for s in stages] == pytest.approx(direct)
    assert total_gpu_hours(stages, t) == pytest.approx(sum(direct))
    # the paper's own MTL comes out at its 96 V100-hours; a base model costs 1/3.56 of it
    assert gpu_hours(work(50_000 * 512, 512, ELECTRA_LARGE), t) == pytest.approx(96.0)
    assert gpu_hours(work(50_000 * 512, 512, ELECTRA_BASE), t) == pytest.approx(96.0 * base / large)
    assert EncoderShape(24, 1024, 4096).first(12).compute_params == large // 2


def test_steps_examples_and_windows():
    assert finetune_steps(600, 32, 4) == 76 and finetune_steps(600, 32, 4, steps=10) == 10
    assert finetune_steps(130_319, 32, 3) == 3 * 4073
    assert examples_processed(600, 32, 76) == 4 * 600 and examples_processed(600, 32, 20) == 600 + 32
    assert windows_per_example(137, 512, 128, 64) == 1.0  # SQuAD: one window (measured 1.008)
    news = windows_per_example(599, 512, 128, 64)  # NewsQA: 599 x 1.2 pieces, 493 per window, 128 overlap
    assert news == pytest.approx(1 + (599 * 1.2 - (512 - 16 - 3)) / (512 - 16 - 3 - 128))
    assert windows_per_example(None, 512, 128, 64) == 1.0


GPU_CSV = """measure,value,unit,gpu,paper_mtl_gpu_hours,encoder,params,dtype,batch_size,seq_len,peak_tflops_assumed
examples_per_s,200.0,examples/s,NVIDIA H200,35.6,electra h1024 L24,334000000,bfloat16,32,512,989.0
tokens_per_s,102400.0,tokens/s,NVIDIA H200,35.6,electra h1024 L24,334000000,bfloat16,32,512,989.0
"""


def test_a_measured_gpu_csv_overrides_the_default(tmp_path, no_network):
    assert load_throughput(tmp_path / "bench").source.startswith("default from the paper")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "gpu.csv").write_text(GPU_CSV)
    measured = load_throughput(tmp_path / "bench")
    assert measured.examples_per_s == 200.0 and measured.device == "H200" and measured.shape == ELECTRA_LARGE
    assert "measured" in measured.source and "gpu.csv" in measured.source
    plan = build_plan(["table4"], "paper", overrides=["features.span_padding=window"], output_dir=tmp_path)
    assert plan["throughput"]["unit"] == "H200-h" and "measured" in plan["throughput"]["source"]
    (road,) = [s for s in plan["stages"].values() if s["what"] == "road MTL on large, pass_step 4, 9 datasets"]
    default_hours = 96 * (5 * 512 + 4 * 128) / 9 / 512
    assert road["gpu_hours"] == pytest.approx(default_hours * paper_default().examples_per_s / 200.0, rel=1e-3)


def test_the_wide_gpu_mfu_csv_is_read_too(tmp_path):
    (tmp_path / "gpu_mfu.csv").write_text("gpu,encoder,examples_per_s,seq_len,dtype\nNVIDIA A100-SXM4-80GB,electra h1024 L24,"
                                          "120.5,512,bfloat16\n")
    measured = load_throughput(tmp_path)
    assert measured.examples_per_s == 120.5 and measured.device == "A100"
    assert "gpu_mfu.csv" in measured.source
