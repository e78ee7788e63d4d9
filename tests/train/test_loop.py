"""The one training loop: gradient averaging over passes (Algorithm 1), clipping, determinism, NaN stops."""

import copy

import pytest
import torch

from road_repro.config import OptimConfig
from road_repro.errors import TrainingError
from road_repro.train.loop import EpochBatches, Pass, forward, train
from road_repro.train.objectives import Objective, pass_losses
from road_repro.train.optim import build_optimizer
from tests.helpers import span_batch, tiny_model

CPU = torch.device("cpu")


def ce(out, p, progress):
    return pass_losses(Objective(), out, p.batch, progress)


def test_one_step_update_equals_update_from_mean_of_pass_gradients():
    """One optimizer step over k passes == AdamW applied to the mean of the k per-pass gradients.

    ``adam_eps=1`` keeps Adam's first step well conditioned (with a tiny eps it is ``lr * sign(g)``,
    which amplifies float round-off in gradients that cancel to ~1e-9), so the comparison is tight.
    """
    cfg = OptimConfig(lr=1e-2, warmup_ratio=0.0, max_grad_norm=1e9, layerwise_lr_decay=0.8, adam_eps=1.0)
    batches = [span_batch(4, seed=s) for s in range(3)]
    model = tiny_model(seed=0)
    reference = copy.deepcopy(model)

    train(model, lambda step: [Pass("mrc", f"d{i}", b) for i, b in enumerate(batches)], ce, 1, cfg,
          num_layers=2, device=CPU, progress=False)

    grads = []
    for b in batches:
        reference.zero_grad()
        ce(forward(reference, b, "mrc"), Pass("mrc", "d", b), 0.0)["total"].backward()
        grads.append([p.grad.clone() for p in reference.parameters()])
    opt, _ = build_optimizer(reference, cfg, 2, 1)
    for p, *gs in zip(reference.parameters(), *grads):
        p.grad = torch.stack(gs).mean(0)
    opt.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_clipping_bounds_the_gradient_norm_used():
    cfg = OptimConfig(lr=1e-3, warmup_ratio=0.0, max_grad_norm=1e-3)
    model = tiny_model()
    log = train(model, lambda s: [Pass("mrc", "d", span_batch(4))], ce, 2, cfg, num_layers=2, device=CPU,
                progress=False).log
    assert all(row["grad_norm"] > 1e-3 for row in log)  # measured before clipping; the update used the clipped one


def test_training_is_deterministic_on_cpu():
    cfg = OptimConfig(lr=1e-3)

    def run():
        torch.manual_seed(0)
        model = tiny_model(seed=1, dropout=0.1)
        train(model, lambda s: [Pass("mrc", "d", span_batch(4, seed=s))], ce, 3, cfg, num_layers=2, device=CPU,
              progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run(), run())


def test_loss_decreases_on_a_fixed_batch():
    model = tiny_model()
    batch = span_batch(8)
    log = train(model, lambda s: [Pass("mrc", "d", batch)], ce, 30, OptimConfig(lr=3e-3, warmup_ratio=0.0),
                num_layers=2, device=CPU, progress=False).log
    assert log[-1]["total"] < 0.5 * log[0]["total"]


def test_nan_loss_stops_with_step_and_dataset_named():
    def bad(out, p, progress):
        losses = ce(out, p, progress)
        return {"total": losses["total"] * float("nan")}

    with pytest.raises(TrainingError, match=r"step 0, pass 0 \(dataset 'squad'"):
        train(tiny_model(), lambda s: [Pass("mrc", "squad", span_batch(2))], bad, 1, OptimConfig(),
              num_layers=2, device=CPU, progress=False)


def test_epoch_batches_cover_every_example_once_per_epoch():
    b = EpochBatches(10, 4, seed=3)
    assert b.steps_per_epoch == 3
    epoch0 = torch.cat([b(s) for s in range(3)])
    epoch1 = torch.cat([b(s) for s in range(3, 6)])
    assert sorted(epoch0.tolist()) == list(range(10)) == sorted(epoch1.tolist())
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(b(4), EpochBatches(10, 4, seed=3)(4))  # a pure function of the step
