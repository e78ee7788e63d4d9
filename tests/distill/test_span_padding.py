"""A window trains alike padded to its batch or to ``max_seq_length`` under the masked span objective
(``features.span_padding: batch``), for CE, label-smoothed CE, KD, Weighted KD and teacher annealing."""

from __future__ import annotations

import pytest
import torch

from road_repro.distill import weighted_span_teacher_logits
from road_repro.distill.losses import cross_entropy, mask_padding
from road_repro.errors import ConfigError
from road_repro.train.objectives import Objective, pass_losses

LENGTHS = (7, 11)  # two windows; the batch pads to 11, the reference to WIDE
WIDE = 64
OBJECTIVES = {
    "ce": Objective(mask_padding=True),
    "ce_smoothed": Objective(label_smoothing=0.1, mask_padding=True),
    "kd": Objective("kd", temperature=3.0, lam=0.7, mask_padding=True),
    "weighted": Objective("weighted", temperature=2.0, lam=0.9, mask_padding=True),
    "annealing": Objective("annealing", mask_padding=True),
}


def _padded(real: list[torch.Tensor], width: int, gen: torch.Generator) -> torch.Tensor:
    """Rows of real values followed by random garbage up to ``width`` (what a model emits on padding)."""
    return torch.stack([torch.cat([r, 10 * torch.randn(width - len(r), generator=gen)]) for r in real])


def _batch(width: int, seed: int, teachers: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Student logits (leaves) and a batch for the fixed real values, padded to ``width`` with fresh garbage."""
    gen = torch.Generator().manual_seed(0)
    real = {k: [torch.randn(n, generator=gen) for n in LENGTHS] for k in ("start", "end")}
    teacher_real = {k: [[torch.randn(n, generator=gen) * 3 for n in LENGTHS] for _ in range(teachers)]
                    for k in ("start", "end")}
    garbage = torch.Generator().manual_seed(seed)
    out = {f"{k}_logits": _padded(real[k], width, garbage).requires_grad_() for k in real}
    batch = {"attention_mask": (torch.arange(width)[None, :] < torch.tensor(LENGTHS)[:, None]).long(),
             "start_positions": torch.tensor([3, 0]), "end_positions": torch.tensor([5, 0])}
    stacked = {k: torch.stack([_padded(t, width, garbage) for t in teacher_real[k]]) for k in teacher_real}
    # Weighted KD: soft targets as stored by a per-batch teacher pass (padding carries the fill value)
    for k, rows in stacked.items():
        rows.masked_fill_(batch["attention_mask"][None] == 0, -1e4)
    start, end = weighted_span_teacher_logits(stacked["start"], stacked["end"], batch["start_positions"],
                                              batch["end_positions"])
    batch.update(teacher_start_logits=start, teacher_end_logits=end)
    return out, batch


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_loss_and_gradients_do_not_depend_on_padding(name):
    objective = OBJECTIVES[name]
    teachers = 3 if name == "weighted" else 1
    results = []
    for width, seed in ((max(LENGTHS), 1), (WIDE, 2)):
        out, batch = _batch(width, seed, teachers)
        loss = pass_losses(objective, out, batch, progress=0.3)["total"]
        loss.backward()
        assert torch.isfinite(loss)
        for key in ("start_logits", "end_logits"):
            grad = out[key].grad
            assert torch.all(grad[batch["attention_mask"] == 0] == 0), "padding must get no gradient"
            assert torch.isfinite(grad).all()
        results.append((loss.detach(), {k: out[k].grad[:, : max(LENGTHS)] for k in out}))
    (short_loss, short_grads), (wide_loss, wide_grads) = results
    torch.testing.assert_close(short_loss, wide_loss, rtol=1e-6, atol=1e-6)
    for key in short_grads:
        torch.testing.assert_close(short_grads[key], wide_grads[key], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["ce", "kd"])
def test_reference_objective_depends_on_padding(name):
    """Without the mask (``span_padding: window``) padding positions take part: the test above can fail."""
    objective = Objective(OBJECTIVES[name].distill, mask_padding=False)
    losses = []
    for width, seed in ((max(LENGTHS), 1), (WIDE, 2)):
        out, batch = _batch(width, seed, 1)
        losses.append(float(pass_losses(objective, out, batch, progress=0.3)["total"].detach()))
    assert abs(losses[0] - losses[1]) > 1e-3


def test_masked_cross_entropy_matches_direct_computation():
    """Label smoothing over the real positions only: (1 - eps) * nll + eps * mean over real c of -log p_c."""
    logits = torch.tensor([[1.0, 2.0, 0.5, 9.0], [0.0, -1.0, 3.0, 2.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    labels = torch.tensor([1, 2])
    eps = 0.2
    expected = []
    for row, m, y in zip(logits, mask, labels):
        real = row[m.bool()]
        log_p = real - torch.logsumexp(real, 0)
        expected.append((1 - eps) * -log_p[y] + eps * -log_p.mean())
    torch.testing.assert_close(cross_entropy(logits, labels, eps, mask), torch.stack(expected).mean())
    torch.testing.assert_close(cross_entropy(logits[1:], labels[1:], eps, mask[1:]),
                               torch.nn.functional.cross_entropy(logits[1:], labels[1:], label_smoothing=eps))


def test_mask_is_finite_in_half_precision():
    logits = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float16)
    masked = mask_padding(logits, torch.tensor([[1, 1, 0]]))
    assert torch.isfinite(masked).all() and float(masked[0, 2]) == float(torch.finfo(torch.float16).min)
    assert float(torch.softmax(masked.float(), -1)[0, 2]) == 0.0


def test_bad_mask_is_a_config_error():
    with pytest.raises(ConfigError, match="mask shape"):
        cross_entropy(torch.zeros(2, 4), torch.tensor([0, 1]), 0.0, torch.ones(2, 3))
    with pytest.raises(ConfigError, match="without a real"):
        cross_entropy(torch.zeros(2, 4), torch.tensor([0, 1]), 0.0, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]]))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_span_label_on_padding_is_an_error_naming_the_row(name):
    """A start/end label past a row's real tokens would be scored against a masked logit (a finite ~1.7e38 loss
    before the check): every masked objective refuses it, naming the row and the label."""
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    logits = torch.zeros(2, 5)
    batch = {"attention_mask": mask, "start_positions": torch.tensor([4, 1]), "end_positions": torch.tensor([4, 4]),
             "teacher_start_logits": torch.zeros(2, 5), "teacher_end_logits": torch.zeros(2, 5)}
    with pytest.raises(ConfigError, match="label 4 of row 1 falls on a padding position"):
        pass_losses(OBJECTIVES[name], {"start_logits": logits, "end_logits": logits}, batch, 0.5)
    batch["end_positions"] = torch.tensor([4, 2])  # every label on a real position: a finite, ordinary loss
    loss = pass_losses(OBJECTIVES[name], {"start_logits": logits, "end_logits": logits}, batch, 0.5)["total"]
    assert 0 < float(loss) < 10
