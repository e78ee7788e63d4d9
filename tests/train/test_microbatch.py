"""Micro-batches (gradient accumulation) give the big batch's gradient, for every stage kind; checkpointing too.

Each case builds one step's global passes, runs :func:`road_repro.train.loop._run_passes` once on the whole
batch and again split into micro-batches (and over simulated ranks with uneven shards), and compares the
accumulated parameter gradients and logged losses (fp32, dropout off unless stated).
"""

from __future__ import annotations

import copy

import pytest
import torch

from road_repro.config import OptimConfig
from road_repro.distill import mean_teacher_logits, weighted_span_teacher_logits, weighted_teacher_logits
from road_repro.models.model import set_activation_checkpointing
from road_repro.train.distributed import DistInfo
from road_repro.train.hidden_kd import attach_hidden_kd, make_hidden_kd_loss_fn
from road_repro.train.loop import Pass, _run_passes, train
from road_repro.train.memory import micro_bounds
from road_repro.train.objectives import Objective, pass_losses
from tests.helpers import VOCAB, span_batch, tiny_model

CPU = torch.device("cpu")
SCALER = torch.amp.GradScaler("cpu", enabled=False)


def pair_batch(n: int, classes: int = 3, length: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Sentence pairs padded to ``length`` (row ``k`` has ``k % 4`` padding tokens) with class labels."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, length, dtype=torch.long)
    for k in range(n):
        mask[k, length - k % 4:] = 0
    return {
        "input_ids": torch.randint(1, VOCAB, (n, length), generator=gen) * mask,
        "attention_mask": mask,
        "token_type_ids": (torch.arange(length) >= length // 2).long().expand(n, length).contiguous(),
        "labels": torch.randint(0, classes, (n,), generator=gen),
    }


def with_teacher(batch: dict[str, torch.Tensor], teachers: int = 1, weighted: bool = False, seed: int = 1):
    """``batch`` plus cached soft targets: one teacher's logits, or the (weighted) ensemble of several."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(batch)
    if "labels" in batch:
        logits = torch.randn(teachers, len(batch["labels"]), 3, generator=gen)
        out["teacher_logits"] = (weighted_teacher_logits(logits, batch["labels"]) if weighted
                                 else mean_teacher_logits(logits))
    else:
        n, length = batch["input_ids"].shape
        start, end = torch.randn(2, teachers, n, length, generator=gen)
        if weighted:
            start, end = weighted_span_teacher_logits(start, end, batch["start_positions"], batch["end_positions"])
        else:
            start, end = mean_teacher_logits(start), mean_teacher_logits(end)
        out["teacher_start_logits"], out["teacher_end_logits"] = start, end
    return out


def objective_fn(objective: Objective):
    return lambda out, p, progress: pass_losses(objective, out, p.batch, progress)


def gradients(model, passes, loss_fn, limit: int | None, world: int = 1, progress: float = 0.3):
    """Parameter gradients and logged losses of one step: every simulated rank's micro-batches accumulated,
    then averaged over ranks (what DDP's all-reduce does); losses summed over ranks (as the loop does)."""
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    totals, keys = None, {}
    for rank in range(world):
        local = _run_passes(model, None, passes, loss_fn, progress, DistInfo(rank, rank, world, CPU), None, SCALER,
                            lambda seq_len: limit)
        t = torch.stack(local.pass_totals)
        totals = t if totals is None else totals + t
        for k, v in local.by_key.items():
            keys[k] = keys.get(k, 0.0) + v
    grads = {n: p.grad / world for n, p in model.named_parameters() if p.grad is not None}
    return grads, totals, keys


def assert_same_step(model, passes, loss_fn, splits=((3, 1), (2, 3))):
    """The whole batch on one process == micro-batches at limit ``l`` on ``w`` simulated ranks, for each (l, w)."""
    ref_grads, ref_totals, ref_keys = gradients(model, passes, loss_fn, None)
    assert ref_grads and all(g.abs().sum() > 0 for g in ref_grads.values() if g.ndim > 1)
    for limit, world in splits:
        grads, totals, keys = gradients(model, passes, loss_fn, limit, world)
        assert grads.keys() == ref_grads.keys()
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-6, msg=f"{name} at limit {limit} x {world}")
        torch.testing.assert_close(totals, ref_totals, rtol=1e-5, atol=1e-6)
        for k in ref_keys:
            torch.testing.assert_close(keys[k], ref_keys[k], rtol=1e-5, atol=1e-6)


def test_micro_bounds_split_evenly_and_in_order():
    assert micro_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert micro_bounds(7, None) == micro_bounds(7, 7) == micro_bounds(7, 100) == [(0, 7)]
    assert micro_bounds(8, 2) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    for rows in range(1, 30):
        for limit in range(1, 12):
            parts = micro_bounds(rows, limit)
            sizes = [hi - lo for lo, hi in parts]
            assert parts[0][0] == 0 and parts[-1][1] == rows and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(sizes) <= limit and max(sizes) - min(sizes) <= 1 and len(parts) == -(-rows // limit)


def test_finetune_span_qa_cross_entropy_of_7_rows_at_limit_3():
    assert_same_step(tiny_model(), [Pass("mrc", "squad_v2", span_batch(7))], objective_fn(Objective()))


def test_finetune_pair_classification_with_padding_and_label_smoothing():
    model = tiny_model(heads={"mnli": 3})
    assert_same_step(model, [Pass("mnli", "mnli", pair_batch(7))], objective_fn(Objective(label_smoothing=0.1)))


@pytest.mark.parametrize("distill", ["kd", "annealing"])
def test_kd_from_cached_soft_targets(distill):
    objective = objective_fn(Objective(distill, temperature=5.0, lam=0.9))
    assert_same_step(tiny_model(), [Pass("mrc", "squad_v2", with_teacher(span_batch(7)))], objective)
    model = tiny_model(heads={"mnli": 3})
    assert_same_step(model, [Pass("mnli", "mnli", with_teacher(pair_batch(7)))], objective)


def test_weighted_kd_from_an_ensemble_of_three_teachers():
    objective = objective_fn(Objective("weighted", temperature=5.0, lam=0.9))
    assert_same_step(tiny_model(), [Pass("mrc", "squad_v2", with_teacher(span_batch(7), 3, weighted=True))], objective)
    model = tiny_model(heads={"qqp": 3})
    assert_same_step(model, [Pass("qqp", "qqp", with_teacher(pair_batch(7), 3, weighted=True))], objective)


def test_hidden_state_kd_with_the_teacher_in_the_step():
    student, teacher = tiny_model(seed=0), tiny_model(seed=5)
    loss_fn = make_hidden_kd_loss_fn(Objective("kd"), attach_hidden_kd(student, teacher, last_layer_only=False),
                                     teacher, hidden_weight=2.0)
    batch = with_teacher(span_batch(7))
    batch["attention_mask"][:, 9:] = 0  # padding that the hidden-state MSE must leave out
    student.train()
    assert_same_step(student, [Pass("mrc", "squad_v2", batch)], loss_fn)


def test_road_mtl_step_of_four_passes_over_two_task_heads():
    model = tiny_model(heads={"mrc": "span", "classification_3": 3})
    passes = [Pass("mrc", "triviaqa", span_batch(7, seed=1)), Pass("classification_3", "mnli", pair_batch(5, seed=2)),
              Pass("mrc", "quac", span_batch(6, length=16, seed=3)), Pass("classification_3", "snli", pair_batch(4, seed=4))]
    assert_same_step(model, passes, objective_fn(Objective()))
    kd_passes = [Pass(p.head, p.dataset, with_teacher(p.batch, seed=i)) for i, p in enumerate(passes)]
    assert_same_step(model, kd_passes, objective_fn(Objective("kd", temperature=5.0, lam=0.7)))


def test_mtdnn_step_with_a_head_per_dataset():
    model = tiny_model(heads={"squad_v2": "span", "mnli": 3, "qqp": 2})
    assert_same_step(model, [Pass("qqp", "qqp", pair_batch(9, classes=2))], objective_fn(Objective()))
    assert_same_step(model, [Pass("squad_v2", "squad_v2", span_batch(7))], objective_fn(Objective()))


def test_more_ranks_than_rows_adds_nothing_from_the_empty_shards():
    model = tiny_model()
    assert_same_step(model, [Pass("mrc", "d", span_batch(3))], objective_fn(Objective()), splits=((1, 5),))


def test_train_with_a_row_limit_and_checkpointing_ends_with_the_same_weights():
    cfg = OptimConfig(lr=1e-2, warmup_ratio=0.0, adam_eps=1.0)
    batches = [span_batch(7, seed=s) for s in range(4)]

    def run(limit: int, checkpointing: bool = False):
        model = tiny_model()
        train(model, lambda step: [Pass("mrc", "d", batches[2 * step]), Pass("mrc", "e", batches[2 * step + 1])],
              objective_fn(Objective()), 2, cfg, num_layers=2, device=CPU, progress=False, max_rows_per_device=limit,
              activation_checkpointing=checkpointing)
        return model

    whole, micro = run(0), run(3, checkpointing=True)
    for (name, a), b in zip(whole.named_parameters(), micro.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_activation_checkpointing_is_switched_back_after_training_even_on_an_error():
    """``activation_checkpointing`` holds while ``train`` runs only: the model then predicts (or teaches) as before."""
    cfg = OptimConfig(lr=1e-2, warmup_ratio=0.0)
    seen = []

    def loss_fn(out, pass_, progress):
        seen.append(model.encoder.is_activation_checkpointing)
        return objective_fn(Objective())(out, pass_, progress)

    model = tiny_model()
    train(model, lambda step: [Pass("mrc", "d", span_batch(4))], loss_fn, 1, cfg, num_layers=2, device=CPU,
          progress=False, activation_checkpointing=True)
    assert seen == [True] and not model.encoder.is_activation_checkpointing

    def failing(out, pass_, progress):
        assert model.encoder.is_activation_checkpointing
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(model, lambda step: [Pass("mrc", "d", span_batch(4))], failing, 1, cfg, num_layers=2, device=CPU,
              progress=False, activation_checkpointing=True)
    assert not model.encoder.is_activation_checkpointing
    set_activation_checkpointing(model, True)  # switched on by the caller: left on
    train(model, lambda step: [Pass("mrc", "d", span_batch(4))], loss_fn, 1, cfg, num_layers=2, device=CPU,
          progress=False, activation_checkpointing=True)
    assert model.encoder.is_activation_checkpointing


def test_activation_checkpointing_gives_the_same_gradients_with_dropout_on():
    """Recomputed layers replay the same dropout masks (use_reentrant=False keeps the RNG state)."""
    model = tiny_model(dropout=0.1)
    model.train()
    batch = span_batch(6)
    loss_fn = objective_fn(Objective())

    def grads(checkpointing: bool):
        m = copy.deepcopy(model)
        set_activation_checkpointing(m, checkpointing)
        assert m.encoder.is_activation_checkpointing == checkpointing
        torch.manual_seed(123)
        g, _, _ = gradients(m, [Pass("mrc", "d", batch)], loss_fn, None)
        return g

    off, on = grads(False), grads(True)
    for name in off:
        torch.testing.assert_close(on[name], off[name], rtol=1e-5, atol=1e-7, msg=name)
    torch.manual_seed(124)
    other, _, _ = gradients(model, [Pass("mrc", "d", batch)], loss_fn, None)
    assert any(not torch.allclose(other[n], off[n]) for n in off)  # dropout is really on: another seed differs


def test_automatic_row_limit_fills_the_gpu_and_is_off_on_cpu(monkeypatch):
    """``max_rows_per_device: 0`` on a (mocked) GPU: the most rows whose estimate fits 90 % of its memory."""
    from types import SimpleNamespace

    from road_repro.train.memory import USABLE_FRACTION, device_row_limit, estimate_memory, shape_of

    model = tiny_model()
    assert device_row_limit(0, model, CPU, 4, False)(512) is None
    assert device_row_limit(5, model, torch.device("cuda", 0), 2, False)(512) == 5
    total = 64 * 1024**2
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=total))
    shape, budget = shape_of(model.encoder.config), int(total * USABLE_FRACTION)
    assert shape.attention == "fused"  # the tiny preset runs SDPA
    for checkpointing in (False, True):
        limit = device_row_limit(0, model, torch.device("cuda", 0), 2, checkpointing)
        for seq_len in (64, 128):
            rows = limit(seq_len)
            cost = lambda r: estimate_memory(shape, r, seq_len, 2, checkpointing=checkpointing).total  # noqa: E731
            assert rows >= 1 and cost(rows) <= budget < cost(rows + 1)
    gpu = torch.device("cuda", 0)
    assert device_row_limit(0, model, gpu, 2, True)(128) > device_row_limit(0, model, gpu, 2, False)(128)
