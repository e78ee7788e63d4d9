"""Hidden-state KD in training (blog 4.3): layer pairs, the student's projection, the loop's loss_fn against
a direct computation on a tiny teacher (width 32, 4 layers) and student (width 16, 2 layers), saving and
loading, the frozen eval-mode teacher, autocast and data parallelism."""

from __future__ import annotations

import copy
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel

from road_repro.config import OptimConfig
from road_repro.distill import HiddenStateKD
from road_repro.errors import ConfigError, TrainingError
from road_repro.models.model import DISTILL_HIDDEN, RoadModel, load_weights, save_weights
from road_repro.train.distributed import cleanup, init_distributed
from road_repro.train.hidden_kd import attach_hidden_kd, make_hidden_kd_loss_fn, teacher_hidden_states
from road_repro.train.loop import Pass, forward, predict, train
from road_repro.train.objectives import Objective
from road_repro.train.optim import build_optimizer

CPU = torch.device("cpu")
VOCAB, LENGTH, CLASSES = 64, 10, 3
CE, KD = Objective(), Objective(distill="kd", temperature=2.0, lam=0.7)
WEIGHT = 0.5
CFG = OptimConfig(lr=1e-2, warmup_ratio=0.0, max_grad_norm=1e9, adam_eps=1.0, layerwise_lr_decay=0.8)


def _model(width: int, layers: int, dropout: float, seed: int) -> RoadModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * width, max_position_embeddings=32, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    return RoadModel(BertModel(config, add_pooling_layer=False), {"nli": CLASSES}, dropout=dropout)


def _pair(student_dropout: float = 0.0, teacher_dropout: float = 0.3) -> tuple[RoadModel, RoadModel]:
    """(student, teacher); the teacher has dropout, so only eval mode makes its states deterministic."""
    return _model(16, 2, student_dropout, seed=1), _model(32, 4, teacher_dropout, seed=0)


def _batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, LENGTH, dtype=torch.long)
    for row in range(n):
        mask[row, LENGTH - row * 2:] = 0  # rows padded by 0, 2, 4, ... tokens
    return {
        "input_ids": torch.randint(1, VOCAB, (n, LENGTH), generator=gen) * mask,
        "attention_mask": mask,
        "token_type_ids": (torch.arange(LENGTH) >= LENGTH // 2).long().expand(n, LENGTH).clone(),
        "labels": torch.randint(0, CLASSES, (n,), generator=gen),
        "teacher_logits": torch.randn(n, CLASSES, generator=gen),
    }


def _encoder_states(model: RoadModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    return model.encoder(**inputs, output_hidden_states=True).hidden_states


def _direct_loss(student: RoadModel, teacher: RoadModel, batch: dict[str, torch.Tensor], objective: Objective,
                 last_layer_only: bool) -> torch.Tensor:
    """The loss written out: both encoders run, layers mapped by hand, projected, masked MSE, plus CE or KD."""
    with torch.no_grad():
        teacher_states = _encoder_states(teacher.eval(), batch)
    student_states = _encoder_states(student, batch)
    pairs = [(2, 4)] if last_layer_only else [(0, 0), (1, 2), (2, 4)]
    proj = student.distill_projection.projection.proj
    real = batch["attention_mask"].float()
    mse = torch.stack([  # per pair: mean over hidden units, then over each row's real tokens, then over rows
        (((student_states[s] @ proj.weight.T + proj.bias - teacher_states[t]) ** 2).mean(-1) * real).sum(1).div(
            real.sum(1)).mean()
        for s, t in pairs
    ]).mean()
    logits = student.heads["nli"](student_states[-1])["logits"]
    ce = F.cross_entropy(logits, batch["labels"])
    if objective.distill is None:
        return ce + WEIGHT * mse
    temp, lam = objective.temperature, objective.lam
    p_teacher = F.softmax(batch["teacher_logits"] / temp, dim=-1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(logits / temp, dim=-1))).sum(-1).mean()
    return (1 - lam) * ce + lam * temp**2 * kl + WEIGHT * mse


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


# -- layer pairs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("teacher_layers", "student_layers"), [(24, 12), (12, 6), (6, 3), (4, 2)])
def test_pairs_map_embeddings_to_embeddings_then_layers_uniformly(teacher_layers: int, student_layers: int) -> None:
    step = teacher_layers // student_layers
    kd = HiddenStateKD(8, 16, student_layers, teacher_layers)
    assert kd.pairs == ((0, 0), *((j, j * step) for j in range(1, student_layers + 1)))
    assert HiddenStateKD(8, 16, student_layers, teacher_layers, last_layer_only=True).pairs == (
        (student_layers, teacher_layers),)


def test_pairs_24_to_12_written_out() -> None:
    assert HiddenStateKD(768, 1024, 12, 24).pairs == (
        (0, 0), (1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12), (7, 14), (8, 16), (9, 18), (10, 20), (11, 22),
        (12, 24))


def test_pairs_reject_a_non_uniform_depth_ratio_unless_last_layer_only() -> None:
    with pytest.raises(ConfigError, match="multiple"):
        HiddenStateKD(8, 16, 5, 12)
    assert HiddenStateKD(8, 16, 5, 12, last_layer_only=True).pairs == ((5, 12),)


def test_attach_sizes_the_projection_from_the_two_models() -> None:
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    assert student.distill_projection is kd
    assert tuple(kd.projection.proj.weight.shape) == (32, 16) and kd.pairs == ((0, 0), (1, 2), (2, 4))


# -- the loss_fn against the direct computation ---------------------------------------------------------------


@pytest.mark.parametrize("objective", [CE, KD], ids=["hidden", "logits+hidden"])
@pytest.mark.parametrize("last_layer_only", [False, True], ids=["all", "last"])
def test_loss_and_gradients_equal_the_direct_computation(objective: Objective, last_layer_only: bool) -> None:
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only)
    reference_teacher = copy.deepcopy(teacher)
    loss_fn = make_hidden_kd_loss_fn(objective, kd, teacher, WEIGHT)
    batch = _batch()
    student.train()
    teacher.train()  # the loss_fn must switch it to eval: its dropout would change the states
    losses = loss_fn(forward(student, batch, "nli"), Pass("nli", "d", batch), 0.5)
    losses["total"].backward()
    got = _grads(student)
    student.zero_grad()
    expected = _direct_loss(student, reference_teacher, batch, objective, last_layer_only)
    expected.backward()
    want = _grads(student)

    torch.testing.assert_close(losses["total"], expected, rtol=1e-5, atol=1e-6)
    assert set(losses) >= {"total", "logits_loss", "hidden_mse"}
    torch.testing.assert_close(losses["logits_loss"] + WEIGHT * losses["hidden_mse"], losses["total"])
    assert set(got) == set(want) and any(name.startswith("distill_projection.") for name in got)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
    assert kd.projection.proj.weight.grad.abs().sum() > 0
    assert not teacher.training and all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_one_training_step_equals_a_step_on_the_direct_loss() -> None:
    """loop.train's update (projection included) == build_optimizer's AdamW step on the hand-computed loss."""
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    reference, reference_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    initial = {name: p.detach().clone() for name, p in kd.named_parameters()}
    batch = _batch()
    train(student, lambda step: [Pass("nli", "d", batch)], make_hidden_kd_loss_fn(KD, kd, teacher, WEIGHT), 1, CFG,
          num_layers=2, device=CPU, progress=False)

    reference.train()
    _direct_loss(reference, reference_teacher, batch, KD, last_layer_only=False).backward()
    optimizer, _ = build_optimizer(reference, CFG, 2, 1)
    optimizer.step()
    for (name, got), want in zip(student.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    for (name, before), after in zip(reference_teacher.named_parameters(), teacher.parameters()):
        assert torch.equal(before, after), f"teacher parameter {name} changed"
    assert all(not torch.equal(p, initial[name]) for name, p in kd.named_parameters())


def test_teacher_states_are_deterministic_while_the_student_trains_with_dropout() -> None:
    student, teacher = _pair(student_dropout=0.2, teacher_dropout=0.5)
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    loss_fn = make_hidden_kd_loss_fn(CE, kd, teacher, WEIGHT)
    batch = _batch()
    student.train()
    first = loss_fn(forward(student, batch, "nli"), Pass("nli", "d", batch), 0.0)
    second = loss_fn(forward(student, batch, "nli"), Pass("nli", "d", batch), 0.0)
    assert not torch.equal(first["logits_loss"], second["logits_loss"])  # the student's dropout is on
    with torch.no_grad():
        eval_states = _encoder_states(copy.deepcopy(teacher).eval(), batch)
    for a, b in zip(teacher_hidden_states(teacher.train(), batch), eval_states):
        assert torch.equal(a, b)


def test_teacher_runs_under_the_students_autocast() -> None:
    _, teacher = _pair()
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = teacher_hidden_states(teacher, batch)
        with torch.no_grad():
            expected = _encoder_states(teacher, batch)
    full = teacher_hidden_states(teacher, batch)
    for a, b, c in zip(mixed, expected, full):
        assert torch.equal(a, b)
    assert any(not torch.allclose(a.float(), c, atol=1e-4) for a, c in zip(mixed, full))


def test_bf16_training_with_hidden_kd_runs() -> None:
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=True)
    log = train(student, lambda step: [Pass("nli", "d", _batch(seed=step))],
                make_hidden_kd_loss_fn(KD, kd, teacher, 1.0), 2, CFG, num_layers=2, device=CPU, precision="bf16",
                progress=False).log
    assert all(torch.isfinite(torch.tensor(row["hidden_mse"])) and row["hidden_mse"] > 0 for row in log)


def test_loss_fn_requires_the_projection_in_training_mode_and_a_positive_weight() -> None:
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    loss_fn = make_hidden_kd_loss_fn(CE, kd, teacher, WEIGHT)
    batch = _batch()
    with pytest.raises(TrainingError, match="attach the projection"):
        loss_fn(forward(student.eval(), batch, "nli"), Pass("nli", "d", batch), 0.0)
    with pytest.raises(ConfigError, match="hidden_weight"):
        make_hidden_kd_loss_fn(CE, kd, teacher, 0.0)


# -- saving, evaluation and loading -------------------------------------------------------------------------


def test_projection_is_trained_saved_and_left_out_of_evaluation(tmp_path: Path) -> None:
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    initial = {name: p.detach().clone() for name, p in kd.named_parameters()}
    log = train(student, lambda step: [Pass("nli", "d", _batch(seed=step))],
                make_hidden_kd_loss_fn(CE, kd, teacher, WEIGHT), 3, CFG, num_layers=2, device=CPU,
                checkpoint_dir=tmp_path / "ckpt", progress=False).log
    assert {"hidden_mse", "logits_loss", "total"} <= set(log[-1])
    assert all(not torch.equal(p, initial[name]) for name, p in kd.named_parameters())

    save_weights(student, tmp_path / "model.safetensors")
    saved = load_file(tmp_path / "model.safetensors")
    checkpointed = load_file(tmp_path / "ckpt" / "step-00000003" / "model.safetensors")
    for name, p in kd.named_parameters():
        assert torch.equal(saved[f"distill_projection.{name}"], p)
        assert torch.equal(checkpointed[f"distill_projection.{name}"], p)

    batch = _batch(seed=7)
    assert len(forward(student.train(), batch, "nli")[DISTILL_HIDDEN]) == 3  # embeddings + 2 layers, projected
    assert set(forward(student.eval(), batch, "nli")) == {"logits"}
    predicted = predict(student, batch, "nli", 2, CPU)
    assert set(predicted) == {"logits"}

    for_prediction = _model(16, 2, 0.0, seed=5)  # no projection: its saved weights are skipped
    load_weights(for_prediction, tmp_path / "model.safetensors")
    torch.testing.assert_close(predict(for_prediction, batch, "nli", 2, CPU)["logits"], predicted["logits"])

    resumed = _model(16, 2, 0.0, seed=5)
    attach_hidden_kd(resumed, teacher, last_layer_only=False)
    load_weights(resumed, tmp_path / "model.safetensors")
    for (name, a), b in zip(resumed.distill_projection.named_parameters(), kd.parameters()):
        assert torch.equal(a, b), name


def test_loading_stays_strict_outside_the_projection(tmp_path: Path) -> None:
    student, teacher = _pair()
    save_weights(student, tmp_path / "plain.safetensors")
    with_projection = _model(16, 2, 0.0, seed=5)
    attach_hidden_kd(with_projection, teacher, last_layer_only=False)
    with pytest.raises(RuntimeError, match="missing keys.*distill_projection"):
        load_weights(with_projection, tmp_path / "plain.safetensors")
    extra = {**load_file(tmp_path / "plain.safetensors"), "heads.other.weight": torch.zeros(2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(RuntimeError, match="unexpected keys.*heads.other.weight"):
        load_weights(_model(16, 2, 0.0, seed=5), tmp_path / "extra.safetensors")


# -- data parallelism -----------------------------------------------------------------------------------------

WORLD = 2


def _ddp_worker(rank: int, port: int, out_dir: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    info = init_distributed("cpu", timeout=timedelta(seconds=60))
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    train(student, lambda step: [Pass("nli", "d", _batch(n=5, seed=step))],
          make_hidden_kd_loss_fn(KD, kd, teacher, WEIGHT), 2, CFG, num_layers=2, device=info.device, progress=False)
    cleanup()
    torch.save({k: v.detach().clone() for k, v in student.state_dict().items()}, out_dir / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_the_projection_as_one_process_does(tmp_path: Path) -> None:
    """The projection runs inside the student's forward, so DDP (gloo, 2 ranks) reduces its gradient too."""
    mp.start_processes(_ddp_worker, args=(_free_port(), tmp_path), nprocs=WORLD, join=True, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    student, teacher = _pair()
    kd = attach_hidden_kd(student, teacher, last_layer_only=False)
    train(student, lambda step: [Pass("nli", "d", _batch(n=5, seed=step))],
          make_hidden_kd_loss_fn(KD, kd, teacher, WEIGHT), 2, CFG, num_layers=2, device=CPU, progress=False)
    for name, value in student.state_dict().items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"ranks differ on {name}"
        torch.testing.assert_close(ranks[0][name], value, rtol=0, atol=1e-5, msg=name)
