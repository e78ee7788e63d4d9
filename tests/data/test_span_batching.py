"""Span QA padded per batch (``features.span_padding: batch``): the batches, their order, inference in
length-sorted groups, and a real encoder training alike on a window padded to its batch or to max_seq_length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from road_repro.config import FeatureConfig, ModelConfig
from road_repro.data.batching import LengthGroupedBatches, length_sorted_groups
from road_repro.data.feature_store import FeatureSpec, FeatureStore
from road_repro.data.synthetic import synthetic_squad
from road_repro.experiments.context import PAD_LOGIT, predict_length_sorted
from road_repro.experiments.tasks import Split, TaskData
from road_repro.models.model import build_model
from road_repro.train.loop import predict
from road_repro.train.objectives import Objective, pass_losses

SPEC = FeatureSpec("span", 64, 16, 16, offsets=True)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, tokenizer):
    examples = synthetic_squad(60, seed=5, n_facts=1, max_facts=8)
    return examples, FeatureStore(tmp_path_factory.mktemp("features")).get(examples, tokenizer, SPEC, "qa")


def _task(examples, stored, mode: str) -> TaskData:
    split = Split(examples, stored.fingerprint, lambda: stored)
    return TaskData("qa", "mrc", split, split, FeatureConfig(max_seq_length=64, doc_stride=16, max_query_length=16,
                                                             span_padding=mode))


def _shortest(features, n: int) -> torch.Tensor:
    return torch.from_numpy(np.argsort(features.lengths, kind="stable")[:n])


def test_per_batch_windows_are_the_reference_windows_cut_to_the_longest_row(stored):
    _, features = stored
    assert len(set(features.lengths.tolist())) > 3  # windows of many lengths
    rows = _shortest(features, 5)[[3, 0, 4, 1, 2]]
    full, cut = features.batch(rows), features.batch(rows, per_batch=True)
    width = int(features.lengths[rows.numpy()].max())
    assert cut["input_ids"].shape == (5, width) and width < full["input_ids"].shape[1] == 64
    for key in full:
        assert torch.equal(cut[key], full[key][:, :width] if full[key].dim() == 2 else full[key]), key
    assert torch.equal(full["attention_mask"].sum(1), torch.from_numpy(features.lengths[rows.numpy()]))


def test_task_batch_window_mode_is_the_reference_and_batch_mode_cuts_soft_targets(stored):
    examples, features = stored
    rows = _shortest(features, 3)
    teacher = torch.randn(len(features), 64)
    reference = _task(examples, features, "window")
    window = reference.batch(reference.train, rows, {"teacher_start_logits": teacher})
    assert torch.equal(window["input_ids"], features.batch(rows)["input_ids"])
    assert torch.equal(window["teacher_start_logits"], teacher[rows])
    data = _task(examples, features, "batch")
    batch = data.batch(data.train, rows, {"teacher_start_logits": teacher})
    width = batch["input_ids"].shape[1]
    assert width < 64 and torch.equal(batch["teacher_start_logits"], teacher[rows][:, :width])


def test_length_grouped_batches_cover_every_row_once_per_epoch_and_replay(stored):
    lengths = stored[1].lengths
    batches = LengthGroupedBatches(lengths, 8, seed=4)
    for epoch in range(2):
        seen = torch.cat([batches(epoch * batches.steps_per_epoch + k) for k in range(batches.steps_per_epoch)])
        assert sorted(seen.tolist()) == list(range(len(lengths)))
    again = LengthGroupedBatches(lengths, 8, seed=4)
    assert torch.equal(again(3), batches(3))
    grouped = sum(int(lengths[batches(k).numpy()].max()) for k in range(batches.steps_per_epoch))
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).split(8)
    assert grouped < sum(int(lengths[b.numpy()].max()) for b in shuffled)  # less padding than a shuffle


def test_length_sorted_groups():
    lengths = np.array([5, 9, 2, 7, 7, 1])
    groups = length_sorted_groups(torch.arange(1, 6), lengths, 2)
    assert [g.tolist() for g in groups] == [[5, 2], [3, 4], [1]]  # by length: 1, 2, 7, 7 (stable), 9


def _tiny(tokenizer):
    torch.manual_seed(0)
    return build_model(ModelConfig(preset="tiny", hidden_dropout=0.0, attention_dropout=0.0), len(tokenizer),
                       {"mrc": "span"})


def test_length_sorted_inference_equals_the_reference_in_row_order(stored, tokenizer):
    examples, features = stored
    model = _tiny(tokenizer)
    data = _task(examples, features, "batch")
    rows = torch.arange(3, 40)
    got = predict_length_sorted(model, data, data.dev, rows, 4, torch.device("cpu"))
    ref = predict(model, features.batch(rows, targets=False), "mrc", 64, torch.device("cpu"))
    real = features.batch(rows)["attention_mask"].bool()
    for key in ("start_logits", "end_logits"):
        assert got[key].shape == ref[key].shape == (len(rows), 64)
        torch.testing.assert_close(got[key][real], ref[key][real], rtol=1e-4, atol=1e-4)
        assert torch.all(got[key][~real] == PAD_LOGIT)


@pytest.mark.parametrize("distill", [None, "kd"])
def test_encoder_trains_alike_on_a_window_padded_to_its_batch_or_to_max_seq_length(stored, tokenizer, distill):
    """Loss and every parameter's gradient, through a real (tiny BERT, SDPA) encoder and the span head."""
    _, features = stored
    row = torch.tensor([int(np.argmin(features.lengths))])
    objective = Objective(distill, mask_padding=True)
    grads = []
    for per_batch in (True, False):
        model = _tiny(tokenizer)
        batch = features.batch(row, per_batch=per_batch)
        width = batch["input_ids"].shape[1]
        teacher = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))  # start, end; any padding values
        batch.update(teacher_start_logits=teacher[:1, :width], teacher_end_logits=teacher[1:, :width])
        loss = pass_losses(objective, model(head="mrc", **{k: batch[k] for k in ("input_ids", "attention_mask",
                                                                             "token_type_ids")}), batch, 0.5)["total"]
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (short, short_grads), (wide, wide_grads) = grads
    assert short_grads.keys() == wide_grads.keys()
    torch.testing.assert_close(short, wide, rtol=1e-5, atol=1e-6)
    for name in short_grads:
        torch.testing.assert_close(short_grads[name], wide_grads[name], rtol=1e-4, atol=1e-6, msg=name)
