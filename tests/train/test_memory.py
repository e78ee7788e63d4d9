"""The peak-memory estimate: hand-computed shapes, a measured CPU check, automatic rows, the dry run's warning."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertModel

from road_repro.config import load_profile
from road_repro.errors import ConfigError
from road_repro.experiments.__main__ import main
from road_repro.experiments.compute import stage_memory
from road_repro.train.memory import (
    GPU_MEMORY_MIB,
    USABLE_FRACTION,
    Shape,
    activation_bytes,
    embedding_bytes,
    estimate_memory,
    gpu_bytes,
    max_rows,
    measured_saved_bytes,
    rows_that_fit,
    shape_of,
)

SMALL = Shape(layers=2, hidden=8, intermediate=16, heads=2, vocab=10)
LARGE = Shape(24, 1024, 4096, 16)  # ELECTRA-large


def test_parameters_of_a_hand_made_shape():
    # per layer 4h^2 + 2hi + 9h + i = 256 + 256 + 72 + 16 = 600; embeddings (10 + 514) x 8 + 2 x 8 = 4208
    assert SMALL.params == 2 * 600 + 4208
    assert SMALL.linear_params == 2 * (256 + 256)
    albert = Shape(4, 8, 16, 2, vocab=10, embedding=4, shared_layers=True)  # one layer's weights, 4-wide embeddings
    assert albert.params == 600 + 524 * 4 + 4 * 8 + 16
    assert 330e6 < LARGE.params < 340e6  # ELECTRA-large: 335M


def test_activations_of_a_hand_made_shape():
    # fused, fp16 (e=2), CUDA masks (m=1), s=5: 2*2*5*16 + 8*5*8 + 2*5*8 + 2*7*5*8 + 4*2*5 = 1320 per row
    assert activation_bytes(SMALL, 3, 5, 2) == 3 * 1320
    # eager, fp32, CPU masks (m=4): 4*2*80 + 320 + 2*4*40 + 4*6*40 + (8 + 4)*2*25 = 2840 per row
    eager = Shape(2, 8, 16, 2, vocab=10, attention="eager")
    assert activation_bytes(eager, 3, 5, 4, mask_bytes=4) == 3 * 2840
    assert embedding_bytes(SMALL, 3, 5) == 3 * 5 * 8 * 5


def test_estimate_by_part_of_a_hand_made_shape():
    p, lin, layer, emb = 5408, 1024, 3 * 1320, 600
    est = estimate_memory(SMALL, 3, 5, 2)
    assert (est.weights, est.gradients, est.optimizer) == (4 * p + 2 * lin, 4 * p, 8 * p)
    assert est.activations == emb + 2 * layer + layer  # every layer's saved tensors + a backward workspace
    assert est.teacher == 0 and est.total == 4 * p + 2 * lin + 12 * p + emb + 3 * layer
    ckpt = estimate_memory(SMALL, 3, 5, 2, checkpointing=True)  # layer inputs (fp32) + one recomputed layer
    assert ckpt.activations == emb + 2 * 4 * 5 * 8 * 3 + layer + layer
    forward = estimate_memory(SMALL, 3, 5, 2, train=False)
    assert (forward.gradients, forward.optimizer, forward.activations) == (0, 0, 2 * layer)
    teacher = Shape(3, 16, 32, 2, vocab=10)  # 3 x (1024 + 1024 + 144 + 32) + 524 x 16 + 32 = 15088 parameters
    with_teacher = estimate_memory(SMALL, 3, 5, 2, teacher=teacher)
    # teacher layer, fused, e=2, s=5: 2*2*5*32 + 8*5*16 + 2*5*16 + 2*7*5*16 + 4*2*5 = 2600 per row
    weights, forward, hidden = 4 * 15088 + 2 * 6144, 2 * 3 * 2600, 4 * (3 + 1) * 5 * 16 * 3
    pairs = (2 + 1) * (2 * 8 + (2 + 4) * 16) * 5 * 3  # student copy, projection, fp32 difference per layer pair
    assert with_teacher.teacher == weights + forward + hidden + pairs
    assert with_teacher.total == est.total + with_teacher.teacher
    assert estimate_memory(SMALL, 3, 5, 4).weights == 4 * p  # no half copies in fp32


@pytest.mark.parametrize("layers", [1, 3])
def test_activation_term_matches_the_tensors_a_cpu_bert_saves(layers):
    """On CPU (fp32, dropout masks stored as fp32, math attention) the estimate of the saved tensors is
    within 2 % of what autograd really keeps (the rest: token ids, LayerNorm statistics)."""
    cfg = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=256, max_position_embeddings=128, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1, attn_implementation="eager")
    model = BertModel(cfg, add_pooling_layer=False).train()
    ids = torch.randint(0, 100, (3, 96))
    measured = measured_saved_bytes(lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state)
    shape = shape_of(model.config)
    assert shape.attention == "eager" and (shape.layers, shape.hidden, shape.heads) == (layers, 64, 4)
    estimate = layers * activation_bytes(shape, 3, 96, 4, mask_bytes=4) + embedding_bytes(shape, 3, 96, mask_bytes=4)
    assert estimate == pytest.approx(measured, rel=0.02)


def test_max_rows_is_the_largest_that_fits():
    cost = lambda r: 100 + 7 * r  # noqa: E731
    for budget in (0, 99, 100, 106, 107, 170, 10_000):
        brute = max([r for r in range(0, 51) if cost(r) <= budget], default=0)
        assert max_rows(budget, cost, 50) == brute


def test_paper_batches_split_to_fit_a_v100_32gb():
    # MT-DNN: 512 windows of 512 tokens on 8 GPUs = 64 rows per GPU: too many at once for 32 GB
    whole = stage_memory(LARGE, 512, 512, nproc=8, gpu="V100-32GB", precision="auto", max_rows_per_device=64)
    assert (whole.rows_per_gpu, whole.micro_batches) == (64, 1) and not whole.fits
    auto = stage_memory(LARGE, 512, 512, nproc=8, gpu="V100-32GB", precision="auto")
    assert auto.rows_per_gpu == 64 and auto.micro_batches > 1 and auto.fits
    assert auto.micro_batches * auto.micro_rows >= 64
    fewer = -(-64 // (auto.micro_batches - 1))  # rows of a micro-batch with one micro-batch less
    assert estimate_memory(LARGE, fewer, 512, 2).total > whole.budget  # the fewest micro-batches that fit
    on_one = stage_memory(LARGE, 128, 512, nproc=1, gpu="A100-80GB", precision="auto")  # a ROaD pass on 1 GPU
    assert on_one.fits and on_one.micro_batches * on_one.micro_rows >= 128
    ckpt = stage_memory(LARGE, 512, 512, nproc=8, gpu="V100-32GB", precision="auto", checkpointing=True)
    assert ckpt.micro_batches == 1 and ckpt.fits  # checkpointing keeps only layer inputs: 64 rows fit at once
    assert gpu_bytes("H200-141GB") > gpu_bytes("A100-80GB") > gpu_bytes("V100-32GB")
    with pytest.raises(ConfigError, match="runtime.gpu='T4'"):
        gpu_bytes("T4")


def test_hidden_state_kd_teacher_leaves_fewer_rows_in_the_loop_and_the_dry_run(monkeypatch):
    """ELECTRA-large student with an ELECTRA-large in-step teacher on a V100-32GB (fp16, 512 tokens): the estimate
    is larger, and the automatic rows per micro-batch fewer, than without the teacher -- alike in the training
    loop (:func:`device_row_limit`, given train()'s ``in_step_teacher``) and in the dry run."""
    from types import SimpleNamespace

    from transformers import ElectraConfig

    from road_repro.train.memory import device_row_limit

    budget = int(gpu_bytes("V100-32GB") * USABLE_FRACTION)
    alone, taught = rows_that_fit(LARGE, 512, 2, budget), rows_that_fit(LARGE, 512, 2, budget, teacher=LARGE)
    assert 1 <= taught < alone
    assert estimate_memory(LARGE, taught, 512, 2, teacher=LARGE).total <= budget
    assert estimate_memory(LARGE, taught + 1, 512, 2, teacher=LARGE).total > budget
    assert estimate_memory(LARGE, alone, 512, 2, teacher=LARGE).total > estimate_memory(LARGE, alone, 512, 2).total

    dry = stage_memory(LARGE, 32, 512, nproc=1, gpu="V100-32GB", precision="auto", teacher=LARGE)
    assert dry.micro_rows <= taught and dry.fits  # the dry run splits by the same rule
    assert stage_memory(LARGE, 32, 512, nproc=1, gpu="V100-32GB", precision="auto").micro_rows > dry.micro_rows

    large = ElectraConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                          attn_implementation="sdpa")
    student = SimpleNamespace(encoder=SimpleNamespace(config=large))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(total_memory=gpu_bytes("V100-32GB")))
    teacher = torch.nn.Module()
    teacher.encoder = SimpleNamespace(config=large)
    gpu = torch.device("cuda", 0)
    assert device_row_limit(0, student, gpu, 2, False)(512) == alone
    assert device_row_limit(0, student, gpu, 2, False, teacher)(512) == taught  # train()'s in_step_teacher


def test_profile_rejects_an_unknown_gpu_and_a_negative_row_limit():
    with pytest.raises(ConfigError) as err:
        load_profile("smoke", overrides=["runtime.gpu=T4", "runtime.max_rows_per_device=-1", "runtime.nproc=0"])
    text = str(err.value)
    assert "runtime.gpu='T4'" in text and "runtime.max_rows_per_device=-1" in text and "runtime.nproc=0" in text
    assert set(GPU_MEMORY_MIB) == {"V100-16GB", "V100-32GB", "A100-40GB", "A100-80GB", "H100-80GB", "H200-141GB"}
    assert load_profile("paper").runtime.gpu == "V100-32GB" and load_profile("paper").runtime.nproc == 8


@pytest.fixture
def offline(monkeypatch):
    """The paper dry run as a user without the hub runs it: offline, no data directory, no NPROC."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    for name in ("ROAD_DATA_DIR", "NPROC"):
        monkeypatch.delenv(name, raising=False)


def test_dry_run_prints_memory_per_gpu_and_warns_where_it_does_not_fit(tmp_path, offline, capsys):
    rc = main(["table5", "--profile", "paper", "--output-dir", str(tmp_path), "--dry-run", "--gpu", "V100-16GB",
               "--nproc", "1", "--override", "runtime.max_rows_per_device=64"])
    out = capsys.readouterr().out
    assert rc == 0
    plan = json.loads((tmp_path / "paper" / "plan.json").read_text())
    mem = plan["memory"]
    assert (mem["gpu"], mem["nproc"], mem["max_rows_per_device"]) == ("V100-16GB", 1, 64)
    assert mem["usable_gib"] == pytest.approx(16_160 / 1024 * USABLE_FRACTION, abs=0.01)
    mtl_id, mtl = next((i, s) for i, s in plan["stages"].items() if s["kind"] == "mtl")
    assert mtl["memory"]["rows_per_gpu"] == 128 and mtl["memory"]["micro_batches"] == 2  # 512 / pass_step 4
    assert not mtl["memory"]["fits"]
    assert any(w.startswith(mtl_id) for w in mem["warnings"])
    assert "memory per GPU on 1 x V100-16GB" in out and "WARNING:" in out and "max_rows_per_device" in out
    rc = main(["table5", "--profile", "paper", "--output-dir", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    plan = json.loads((tmp_path / "paper" / "plan.json").read_text())
    assert rc == 0 and plan["memory"]["warnings"] == [] and "WARNING" not in out
    assert "memory per GPU on 8 x V100-32GB" in out and "16 rows/GPU per pass = 1 micro-batch of 16 x 512 tokens" in out


def test_docs_what_fits_where_is_the_estimators_table():
    """docs/distributed.md's table is regenerated from the estimator (python -m road_repro.experiments.compute)."""
    from pathlib import Path

    from road_repro.experiments.compute import fits_table

    table = fits_table()
    doc = (Path(__file__).resolve().parents[2] / "docs" / "distributed.md").read_text()
    assert table in doc.split("## What fits where", 1)[1]
    assert "(too big)" not in table.split("\n")[-2]  # MT-DNN fits in micro-batches everywhere
