"""pass_losses: each loss term computed once, with the same values as the direct computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import road_repro.distill.losses as losses
import road_repro.train.objectives as objectives
from road_repro.distill import annealing_kd_loss, kd_kl
from road_repro.train.objectives import Objective, pass_losses

KD = Objective("kd", temperature=2.0, lam=0.7, t2_scale=True, label_smoothing=0.1, mask_padding=True)


def _span() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Hand-made span logits (two rows of 4 positions, the second padded after 3) and their batch."""
    gen = torch.Generator().manual_seed(0)
    out = {f"{s}_logits": torch.randn(2, 4, generator=gen) for s in ("start", "end")}
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
             "start_positions": torch.tensor([3, 0]), "end_positions": torch.tensor([3, 2]),
             **{f"teacher_{s}_logits": torch.randn(2, 4, generator=gen) for s in ("start", "end")}}
    return out, batch


def _direct_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """Label-smoothed CE over each row's real positions, written out row by row."""
    rows = []
    for row, m, y in zip(logits, mask, labels):
        log_p = F.log_softmax(row[m == 1], -1)
        rows.append((1 - eps) * -log_p[y] - eps * log_p.mean())
    return torch.stack(rows).mean()


@pytest.mark.parametrize("objective", [Objective(mask_padding=True), Objective(label_smoothing=0.1, mask_padding=True),
                                       KD, Objective("annealing", mask_padding=True)], ids=["ce", "smoothed", "kd", "annealing"])
def test_span_losses_equal_the_direct_computation(objective):
    out, batch = _span()
    got = pass_losses(objective, out, batch, 0.25)
    mask = batch["attention_mask"]
    sides = {}
    for s in ("start", "end"):
        logits, labels, teacher = out[f"{s}_logits"], batch[f"{s}_positions"], batch[f"teacher_{s}_logits"]
        ce = _direct_ce(logits, labels, mask, objective.label_smoothing)
        if objective.distill is None:
            sides[s] = {"total": ce, "ce": ce}
        elif objective.distill == "annealing":
            sides[s] = {"total": annealing_kd_loss(logits, teacher, labels, 0.25, mask), "ce": ce}
        else:
            kd = kd_kl(logits, teacher, 2.0, mask) * 4.0
            sides[s] = {"total": 0.3 * ce + 0.7 * kd, "ce": ce, "kd": kd}
    assert set(got) == {"start", "end", *sides["start"]}
    torch.testing.assert_close(got["start"], sides["start"]["total"])
    torch.testing.assert_close(got["end"], sides["end"]["total"])
    for key in sides["start"]:
        torch.testing.assert_close(got[key], (sides["start"][key] + sides["end"][key]) / 2)


def test_classification_kd_terms_equal_the_direct_computation():
    gen = torch.Generator().manual_seed(1)
    logits, teacher, labels = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen), torch.tensor([0, 2, 1, 1, 0])
    got = pass_losses(Objective("kd", 2.0, 0.7, True, 0.1), {"logits": logits},
                      {"labels": labels, "teacher_logits": teacher}, 0.0)
    ce = F.cross_entropy(logits, labels, label_smoothing=0.1)
    kd = kd_kl(logits, teacher, 2.0) * 4.0
    torch.testing.assert_close(got["ce"], ce)
    torch.testing.assert_close(got["kd"], kd)
    torch.testing.assert_close(got["total"], 0.3 * ce + 0.7 * kd)


@pytest.mark.parametrize("objective", [Objective(mask_padding=True), KD, Objective("annealing", mask_padding=True)],
                         ids=["ce", "kd", "annealing"])
def test_each_term_is_computed_once_per_side(objective, monkeypatch):
    """The logged ``ce`` (and ``kd``) are the very terms of the loss, not a second computation of them."""
    calls = {"ce": 0, "kl": 0}

    def counting(name, function):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapped

    ce, kl = counting("ce", losses.cross_entropy), counting("kl", losses.kd_kl)
    for module in (losses, objectives):
        monkeypatch.setattr(module, "cross_entropy", ce, raising=False)
        monkeypatch.setattr(module, "kd_kl", kl, raising=False)
    pass_losses(objective, *_span(), 0.5)
    assert calls == {"ce": 2, "kl": 2 if objective.distill == "kd" else 0}  # start and end
