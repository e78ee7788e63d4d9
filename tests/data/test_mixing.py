"""Multi-task samplers: pure functions of the step, per-pass batch sizes, draw frequencies, epoch coverage."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from road_repro.data import mixing
from road_repro.data.mixing import Draw, MtdnnSampler, RoadSampler, epoch_permutation
from road_repro.errors import ConfigError

SIZES = {"squad": 37, "mnli": 101, "tiny": 2}


def _steps(sampler, n: int) -> list[list[Draw]]:
    return [sampler(step) for step in range(n)]


def _same(a: list[Draw], b: list[Draw]) -> bool:
    return [d.dataset for d in a] == [d.dataset for d in b] and all(
        torch.equal(x.indices, y.indices) for x, y in zip(a, b)
    )


def _streams(draws: list[list[Draw]]) -> dict[str, torch.Tensor]:
    """Each dataset's served indices in the order served."""
    served: dict[str, list[torch.Tensor]] = {}
    for step in draws:
        for d in step:
            served.setdefault(d.dataset, []).append(d.indices)
    return {name: torch.cat(parts) for name, parts in served.items()}


def _chi2_pvalue(observed: dict[str, int], probabilities: dict[str, float]) -> float:
    total = sum(observed.values())
    stat = sum((observed.get(k, 0) - total * p) ** 2 / (total * p) for k, p in probabilities.items())
    return 1.0 - float(torch.distributions.Chi2(torch.tensor(len(probabilities) - 1.0)).cdf(torch.tensor(stat)))


def _dataset_counts(draws: list[list[Draw]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for step in draws:
        for d in step:
            counts[d.dataset] = counts.get(d.dataset, 0) + 1
    return counts


@pytest.mark.parametrize("make", [lambda: RoadSampler(SIZES, 12, 4, seed=7), lambda: MtdnnSampler(SIZES, 12, seed=7)])
def test_random_access_matches_sequential_calls(make, monkeypatch):
    monkeypatch.setattr(mixing, "SNAPSHOT_EVERY", 16)  # exercise replay from snapshots within a short run
    sequential = _steps(make(), 120)
    sampler = make()
    order = [90, 3, 119, 47, 48, 0, 33, 32, 100, 64, 63, 17]
    for step in order:
        assert _same(sampler(step), sequential[step]), step
    assert _same(make()(77), sequential[77])  # a fresh sampler resuming at step 77


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 30), min_size=1, max_size=4),
    per_pass=st.integers(1, 5),
    pass_step=st.integers(1, 4),
    seed=st.integers(0, 2**40),
    order=st.lists(st.integers(0, 39), min_size=1, max_size=8),
)
def test_random_access_property(sizes, per_pass, pass_step, seed, order):
    sequential = _steps(RoadSampler(sizes, per_pass * pass_step, pass_step, seed), 40)
    sampler = RoadSampler(sizes, per_pass * pass_step, pass_step, seed)
    for step in order:
        assert _same(sampler(step), sequential[step])


def test_deterministic_and_seed_dependent():
    a = _steps(RoadSampler(SIZES, 8, 2, seed=1), 30)
    reordered = _steps(RoadSampler(dict(reversed(SIZES.items())), 8, 2, seed=1), 30)
    other = _steps(RoadSampler(SIZES, 8, 2, seed=2), 30)
    assert all(_same(x, y) for x, y in zip(a, reordered))  # dataset order in the dict does not matter
    assert not all(_same(x, y) for x, y in zip(a, other))


@pytest.mark.parametrize("pass_step", [1, 2, 4, 8, 16])
def test_per_pass_examples_is_batch_over_pass_step(pass_step):
    sampler = RoadSampler(SIZES, 16, pass_step, seed=0)
    for step in range(10):
        draws = sampler(step)
        assert len(draws) == pass_step
        for d in draws:
            assert d.indices.dtype == torch.int64 and len(d.indices) == 16 // pass_step
            assert 0 <= int(d.indices.min()) and int(d.indices.max()) < SIZES[d.dataset]


def test_mtdnn_draws_one_full_batch_per_step():
    sampler = MtdnnSampler(SIZES, 16, seed=0)
    for step in range(10):
        (draw,) = sampler(step)
        assert len(draw.indices) == 16


@pytest.mark.parametrize("make", [lambda: RoadSampler({"squad": 23}, 5, 1, seed=4), lambda: MtdnnSampler({"squad": 23}, 5, seed=4)])
def test_single_dataset_walks_its_permutations(make):
    draws = _steps(make(), 20)
    assert all(len(step) == 1 and step[0].dataset == "squad" for step in draws)
    walked = torch.cat([step[0].indices for step in draws])
    expected = torch.cat([epoch_permutation(23, "squad", epoch, 4) for epoch in range(5)])[:100]
    assert torch.equal(walked, expected)


def test_epoch_permutations_differ_between_epochs_and_datasets():
    first = epoch_permutation(50, "squad", 0, 4)
    assert sorted(first.tolist()) == list(range(50))
    assert not torch.equal(first, epoch_permutation(50, "squad", 1, 4))
    assert not torch.equal(first, epoch_permutation(50, "mnli", 0, 4))
    assert torch.equal(first, epoch_permutation(50, "squad", 0, 4))


def test_every_example_served_once_per_epoch_across_boundaries():
    # per pass 3 rows: "tiny" (2 rows) wraps more than once in a single draw; the others cross epochs mid-draw.
    sizes = {"squad": 7, "mnli": 50, "tiny": 2}
    streams = _streams(_steps(RoadSampler(sizes, 12, 4, seed=3), 200))
    for name, stream in streams.items():
        n = sizes[name]
        epochs = len(stream) // n
        assert epochs >= 2, name
        for e in range(epochs):
            assert sorted(stream[e * n : (e + 1) * n].tolist()) == list(range(n)), (name, e)
        walked = torch.cat([epoch_permutation(n, name, e, 3) for e in range(epochs + 1)])
        assert torch.equal(stream, walked[: len(stream)])


def test_road_draws_datasets_uniformly_whatever_their_size():
    sizes = {"big": 10_000, "mid": 300, "small": 5}
    sampler = RoadSampler(sizes, 8, 4, seed=11)
    assert sampler.probabilities == pytest.approx({k: 1 / 3 for k in sizes})
    counts = _dataset_counts(_steps(sampler, 2000))
    assert sum(counts.values()) == 8000
    assert _chi2_pvalue(counts, sampler.probabilities) > 1e-3


def test_mtdnn_draws_datasets_in_proportion_to_their_minibatches():
    sizes = {"big": 1000, "mid": 291, "small": 95}  # 100, 30 and 10 minibatches of 10
    sampler = MtdnnSampler(sizes, 10, seed=11)
    assert sampler.probabilities == pytest.approx({"big": 100 / 140, "mid": 30 / 140, "small": 10 / 140})
    counts = _dataset_counts(_steps(sampler, 3000))
    assert _chi2_pvalue(counts, sampler.probabilities) > 1e-3
    assert _chi2_pvalue(counts, {k: 1 / 3 for k in sizes}) < 1e-6  # the test can tell the two samplers apart


def test_draw_choice_depends_on_step_and_pass_only():
    """Pass p of step k draws the same dataset whatever pass_step is (seeded by (seed, step, pass) alone)."""
    two, four = RoadSampler(SIZES, 8, 2, seed=5), RoadSampler(SIZES, 8, 4, seed=5)
    steps = list(range(50))
    random.Random(0).shuffle(steps)
    for step in steps:
        assert [d.dataset for d in two(step)] == [d.dataset for d in four(step)][:2]


def test_draw_is_frozen():
    draw = Draw("squad", torch.arange(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        draw.dataset = "mnli"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RoadSampler(SIZES, 512, 3, 0), "pass_step=3 does not divide batch_size=512"),
        (lambda: RoadSampler(SIZES, 512, 0, 0), "pass_step=0"),
        (lambda: RoadSampler(SIZES, 0, 1, 0), "batch_size=0"),
        (lambda: MtdnnSampler(SIZES, -4, 0), "batch_size=-4"),
        (lambda: RoadSampler({}, 8, 2, 0), "sizes is empty"),
        (lambda: MtdnnSampler({}, 8, 0), "sizes is empty"),
        (lambda: RoadSampler({"squad": 5, "qqp": 0}, 8, 2, 0), "sizes\\['qqp'\\]=0"),
        (lambda: MtdnnSampler({"qqp": 2.5}, 8, 0), "sizes\\['qqp'\\]=2.5"),
        (lambda: RoadSampler(SIZES, 8, 2, 0)(-1), "step=-1"),
    ],
)
def test_invalid_settings_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


# -- draws within a step: with replacement (Algorithm 1's random(datasets), the default) or without ------------


def test_default_draws_are_with_replacement():
    """Algorithm 1 draws each pass independently: some steps repeat a dataset (P = 1 - 4!/4^4 ~ 0.91 here)."""
    sampler = RoadSampler({name: 50 for name in "abcd"}, 8, 4, seed=2)
    assert sampler.draws == "with_replacement"
    repeats = sum(len({d.dataset for d in sampler(step)}) < 4 for step in range(300))
    assert 240 <= repeats <= 300


@pytest.mark.parametrize("pass_step", [2, 4])
def test_without_replacement_draws_distinct_datasets_uniformly(pass_step):
    sizes = {name: 50 for name in "abcde"}
    sampler = RoadSampler(sizes, 8, pass_step, seed=9, draws="without_replacement")
    steps = _steps(sampler, 1500)
    for draws in steps:
        assert len({d.dataset for d in draws}) == pass_step  # distinct within every step
    counts = _dataset_counts(steps)
    assert _chi2_pvalue(counts, {k: 1 / 5 for k in sizes}) > 1e-3
    # every unordered pair of datasets appears together equally often (a uniform random subset per step)
    pairs: dict[tuple[str, ...], int] = {}
    for draws in steps:
        names = sorted(d.dataset for d in draws)
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                pairs[(names[i], names[j])] = pairs.get((names[i], names[j]), 0) + 1
    assert len(pairs) == 10 and _chi2_pvalue(pairs, dict.fromkeys(pairs, 1 / 10)) > 1e-3


def test_without_replacement_beyond_the_number_of_datasets_balances_each_step():
    """pass_step 8 over 3 datasets: one permutation per block of 3 passes, so each dataset gets 2 or 3 passes."""
    sampler = RoadSampler({"a": 20, "b": 20, "c": 20}, 8, 8, seed=1, draws="without_replacement")
    for step in range(100):
        per_step: dict[str, int] = {}
        for d in sampler(step):
            per_step[d.dataset] = per_step.get(d.dataset, 0) + 1
        assert sorted(per_step.values()) == [2, 3, 3]


def test_without_replacement_resumes_like_sequential_calls(monkeypatch):
    monkeypatch.setattr(mixing, "SNAPSHOT_EVERY", 16)
    make = lambda: RoadSampler(SIZES, 12, 2, seed=7, draws="without_replacement")  # noqa: E731
    sequential = _steps(make(), 80)
    sampler = make()
    for step in [70, 3, 79, 31, 32, 0, 15, 16]:
        assert _same(sampler(step), sequential[step]), step


def test_bad_draws_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="draws='sometimes'"):
        RoadSampler(SIZES, 8, 2, 0, draws="sometimes")
