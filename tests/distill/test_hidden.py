"""Hidden-state distillation: uniform layer map, projection, masked MSE against direct computations."""

from __future__ import annotations

import pytest
import torch

from road_repro.distill import HiddenStateProjection, hidden_state_loss, uniform_layer_map
from road_repro.errors import ConfigError


def test_uniform_map_24_to_12() -> None:
    pairs = uniform_layer_map(12, 24)
    assert pairs == [(i, 2 * i) for i in range(1, 13)]
    assert pairs[-1] == (12, 24) and pairs[-2] == (11, 22) and pairs[0] == (1, 2)


@pytest.mark.parametrize(
    ("n_s", "n_t", "expected"),
    [
        (6, 12, [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]),
        (3, 6, [(1, 2), (2, 4), (3, 6)]),
        (2, 6, [(1, 3), (2, 6)]),
        (4, 4, [(1, 1), (2, 2), (3, 3), (4, 4)]),
    ],
)
def test_uniform_map_small(n_s: int, n_t: int, expected: list[tuple[int, int]]) -> None:
    assert uniform_layer_map(n_s, n_t) == expected


@pytest.mark.parametrize(
    ("n_s", "n_t", "name"), [(5, 12, "n_teacher=12"), (24, 12, "n_student=24"), (0, 12, "n_student=0")]
)
def test_uniform_map_rejects_bad_sizes(n_s: int, n_t: int, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        uniform_layer_map(n_s, n_t)


def test_projection_rejects_a_wider_student() -> None:
    with pytest.raises(ConfigError, match="wider than the projection"):
        HiddenStateProjection(16, 8)
    assert HiddenStateProjection(4, 8)(torch.zeros(2, 3, 4)).shape == (2, 3, 8)


def _states(n_layers: int, width: int, gen: torch.Generator, b: int = 2, length: int = 4) -> list[torch.Tensor]:
    return [torch.randn(b, length, width, generator=gen) for _ in range(n_layers + 1)]


def _direct_mse(proj: HiddenStateProjection, s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, the mean over its real tokens of the squared error averaged over the hidden dimension; then the
    mean over rows (each example weighs the same, as in the cross-entropy)."""
    with torch.no_grad():
        projected = proj(s)
    rows = []
    for b in range(s.shape[0]):
        total, count = torch.tensor(0.0), 0
        for pos in range(s.shape[1]):
            if mask[b, pos]:
                total = total + ((projected[b, pos] - t[b, pos]) ** 2).sum() / t.shape[-1]
                count += 1
        rows.append(total / count)
    return torch.stack(rows).mean()


def test_loss_averages_mapped_layers_over_real_tokens() -> None:
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    student, teacher = _states(3, 4, gen), _states(6, 8, gen)
    projection = HiddenStateProjection(4, 8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    layer_map = uniform_layer_map(3, 6)
    expected = sum(_direct_mse(projection, student[s], teacher[t], mask) for s, t in layer_map) / 3
    got = hidden_state_loss(student, teacher, projection, layer_map, attention_mask=mask)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    full = torch.ones(2, 4, dtype=torch.long)
    expected_all = sum(_direct_mse(projection, student[s], teacher[t], full) for s, t in layer_map) / 3
    got_all = hidden_state_loss(student, teacher, projection, layer_map)
    assert got_all.item() == pytest.approx(expected_all.item(), rel=1e-5)


def test_mask_excludes_padding() -> None:
    gen = torch.Generator().manual_seed(1)
    student, teacher = _states(2, 4, gen), _states(4, 4, gen)
    projection = HiddenStateProjection(4, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    before = hidden_state_loss(student, teacher, projection, uniform_layer_map(2, 4), attention_mask=mask)
    for states in (student, teacher):
        for h in states:
            h[mask == 0] = 1e3  # garbage under the padding changes nothing
    after = hidden_state_loss(student, teacher, projection, uniform_layer_map(2, 4), attention_mask=mask)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)


def test_a_batch_is_the_row_weighted_mean_of_its_shards() -> None:
    """Each example weighs the same, so data-parallel shards (weighted by rows) average to the whole batch."""
    gen = torch.Generator().manual_seed(5)
    student, teacher = _states(2, 4, gen, b=3), _states(4, 8, gen, b=3)
    projection = HiddenStateProjection(4, 8)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    layer_map = uniform_layer_map(2, 4)

    def loss(rows: slice) -> torch.Tensor:
        return hidden_state_loss([h[rows] for h in student], [h[rows] for h in teacher], projection, layer_map,
                                 attention_mask=mask[rows])

    whole = loss(slice(0, 3))
    assert whole.item() == pytest.approx((2 * loss(slice(0, 2)) + loss(slice(2, 3))).item() / 3, rel=1e-6)


def test_last_layer_only_matches_last_states() -> None:
    gen = torch.Generator().manual_seed(2)
    student, teacher = _states(2, 4, gen), _states(4, 8, gen)
    projection = HiddenStateProjection(4, 8)
    full = torch.ones(2, 4, dtype=torch.long)
    got = hidden_state_loss(student, teacher, projection, uniform_layer_map(2, 4), last_layer_only=True)
    assert got.item() == pytest.approx(_direct_mse(projection, student[-1], teacher[-1], full).item(), rel=1e-5)


def test_perfect_projection_gives_zero_and_gradients_reach_student_and_projection() -> None:
    gen = torch.Generator().manual_seed(3)
    projection = HiddenStateProjection(4, 4)
    with torch.no_grad():
        projection.proj.weight.copy_(torch.eye(4))
        projection.proj.bias.zero_()
    student = [h.requires_grad_(True) for h in _states(2, 4, gen)]
    teacher_same = [torch.zeros(2, 4, 4)] + [student[1].detach().clone()] * 2 + [student[2].detach().clone()] * 2
    loss = hidden_state_loss(student, teacher_same, projection, uniform_layer_map(2, 4))
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    teacher = [t.clone().requires_grad_(True) for t in _states(4, 4, gen)]
    hidden_state_loss(student, teacher, projection, uniform_layer_map(2, 4)).backward()
    assert student[2].grad is not None and projection.proj.weight.grad is not None
    assert all(t.grad is None for t in teacher)


def test_bad_inputs_raise_config_errors() -> None:
    gen = torch.Generator().manual_seed(4)
    student, teacher = _states(2, 4, gen), _states(4, 8, gen)
    projection = HiddenStateProjection(4, 8)
    with pytest.raises(ConfigError, match=r"layer_map pair \(3, 6\)"):
        hidden_state_loss(student, teacher, projection, [(3, 6)])
    with pytest.raises(ConfigError, match="a row without a non-padding token"):
        hidden_state_loss(student, teacher, projection, uniform_layer_map(2, 4),
                          attention_mask=torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ConfigError, match="attention_mask shape"):
        hidden_state_loss(student, teacher, projection, uniform_layer_map(2, 4), attention_mask=torch.ones(2, 5))
    with pytest.raises(ConfigError, match="projected student shape"):
        hidden_state_loss(student, teacher, HiddenStateProjection(4, 6), uniform_layer_map(2, 4))
