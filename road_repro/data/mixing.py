"""Which dataset, and which of its examples, each pass of each optimizer step trains on (multi-task pretraining).

Two samplers, both plugged into :func:`road_repro.train.loop.train` through its ``step_source``:

* :class:`RoadSampler` -- Algorithm 1 of the paper (ROaD MTL): every step runs ``pass_step`` passes, each pass
  draws a dataset uniformly at random and takes ``batch_size // pass_step`` of its examples, so the global batch
  stays ``batch_size`` (512 in the paper) whatever ``pass_step`` is. The loop averages the passes' gradients.
  Algorithm 1 writes the draw as ``random(datasets)`` per pass, i.e. *with replacement*: two passes of one step
  may draw the same dataset. That is the default (``draws="with_replacement"``). The blog speaks of averaging
  the gradient "from 4 randomly selected tasks", which can also be read as distinct tasks:
  ``draws="without_replacement"`` takes a step's datasets from a random permutation of all datasets, so they
  are distinct whenever ``pass_step`` <= the number of datasets (beyond that, further permutations follow).
* :class:`MtdnnSampler` -- the MT-DNN baseline of Table 2: one dataset per step, drawn in proportion to its
  number of minibatches ``ceil(size / batch_size)``, and ``batch_size`` of its examples.

Both are pure functions of the step index, so that training resumes at any step with exactly the batches an
uninterrupted run would have seen, and every DDP rank draws the same dataset for a pass without talking to the
others:

* the dataset of (step, pass) comes from a ``torch.Generator`` seeded by a hash of (seed, step, pass), never from
  a generator that carries state from earlier steps;
* each dataset walks its own epoch permutations (``torch.randperm`` seeded by (seed, dataset, epoch)), and a
  minibatch that crosses an epoch boundary takes the tail of one permutation and the head of the next. Its
  cursor at a step is the number of examples it served before, which depends on the dataset choices of all
  earlier steps: those are replayed (cheap -- no example is touched) and memoised, so sequential calls cost O(1)
  amortised and a call at an arbitrary step replays at most :data:`SNAPSHOT_EVERY` steps once the sampler has
  been there (or, the first time, every step before it).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from road_repro.errors import ConfigError

DRAWS = ("with_replacement", "without_replacement")
"""How a ROaD step's passes draw their datasets (see the module docstring)."""

SNAPSHOT_EVERY = 1024
"""Steps between the memoised per-dataset draw counts kept for random access (a resume, an earlier step)."""


@dataclass(frozen=True)
class Draw:
    """One pass of one step: the dataset it trains on and the indices (int64) of that dataset's examples."""

    dataset: str
    indices: Tensor


def derive_seed(*parts: object) -> int:
    """A 63-bit generator seed from a hash of ``parts`` -- stable across processes and runs, unlike ``hash()``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def epoch_permutation(size: int, dataset: str, epoch: int, seed: int) -> Tensor:
    """The order in which ``dataset`` (``size`` examples) serves its examples during ``epoch``."""
    generator = torch.Generator().manual_seed(derive_seed("epoch", seed, dataset, epoch))
    return torch.randperm(size, generator=generator)


def choose(cumulative_weights: list[int], seed: int, step: int, pass_index: int) -> int:
    """Position of the dataset that pass ``pass_index`` of ``step`` draws, with probability weight / total.

    The generator is seeded by (seed, step, pass) alone, so the choice never depends on earlier draws.
    """
    generator = torch.Generator().manual_seed(derive_seed("draw", seed, step, pass_index))
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    # u < 1, yet u * total may round up to total: clamp to the last dataset.
    return min(bisect.bisect_right(cumulative_weights, u * cumulative_weights[-1]), len(cumulative_weights) - 1)


def choose_distinct(n_datasets: int, seed: int, step: int, passes: int) -> list[int]:
    """Positions of the datasets of ``step``'s ``passes`` passes, drawn without replacement (uniform weights).

    The first ``n_datasets`` passes follow one random permutation of the datasets (so they are distinct), the
    next ``n_datasets`` another, and so on; each permutation is seeded by (seed, step, block) alone.
    """
    order: list[int] = []
    for block in range(math.ceil(passes / n_datasets)):
        generator = torch.Generator().manual_seed(derive_seed("distinct", seed, step, block))
        order += torch.randperm(n_datasets, generator=generator).tolist()
    return order[:passes]


def check_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """``sizes`` as a name-sorted dict, after checking there is at least one dataset and none is empty."""
    if not sizes:
        raise ConfigError("sizes is empty: multi-task sampling needs at least one dataset")
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int):
            raise ConfigError(f"sizes[{name!r}]={size!r} is not a whole number of examples")
        if size < 1:
            raise ConfigError(f"sizes[{name!r}]={size}: dataset {name!r} has no examples to sample")
    return {name: sizes[name] for name in sorted(sizes)}


def check_batch(batch_size: int, pass_step: int) -> None:
    """``batch_size`` and ``pass_step`` are positive and the passes split the batch evenly."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    if pass_step < 1:
        raise ConfigError(f"pass_step={pass_step} must be at least 1")
    if batch_size % pass_step:
        raise ConfigError(f"pass_step={pass_step} does not divide batch_size={batch_size}")


class _MixingSampler:
    """The machinery both samplers share: weighted dataset draws per pass, per-dataset epoch cursors, replay."""

    def __init__(self, sizes: dict[str, int], weights: dict[str, int], passes: int, examples_per_pass: int, seed: int,
                 draws: str = "with_replacement"):
        if draws not in DRAWS:
            raise ConfigError(f"draws={draws!r} must be one of {DRAWS}")
        if draws == "without_replacement" and len(set(weights.values())) > 1:
            raise ConfigError("draws='without_replacement' needs uniform dataset weights (ROaD), not MT-DNN's")
        self.draws = draws
        self.sizes = sizes
        self.datasets = tuple(sizes)
        self.passes = passes
        self.examples_per_pass = examples_per_pass
        self.seed = seed
        self._cumulative = list(itertools.accumulate(weights[name] for name in self.datasets))
        self.probabilities = {name: weights[name] / self._cumulative[-1] for name in self.datasets}
        zero = (0,) * len(self.datasets)
        # Draws per dataset over steps < s: at every multiple of SNAPSHOT_EVERY reached, and after the last call.
        self._snapshots: dict[int, tuple[int, ...]] = {0: zero}
        self._last: tuple[int, tuple[int, ...]] = (0, zero)
        self._permutations: dict[str, tuple[int, Tensor]] = {}  # the latest epoch permutation of each dataset

    def __call__(self, step: int) -> list[Draw]:
        """The draws of ``step`` (counted from 0), one per pass."""
        if step < 0:
            raise ConfigError(f"step={step} is negative: steps count from 0")
        counts = self._draws_before(step)
        draws = []
        for position in self._positions(step):
            name = self.datasets[position]
            cursor = counts[position] * self.examples_per_pass
            draws.append(Draw(name, self._take(name, cursor, self.examples_per_pass)))
            counts[position] += 1
        self._remember(step + 1, counts)
        return draws

    def _draws_before(self, step: int) -> list[int]:
        """How many draws each dataset got in steps < ``step``, replayed from the nearest memoised point."""
        start, counts = self._last
        snapshot = step - step % SNAPSHOT_EVERY
        if start > step or (start < snapshot and snapshot in self._snapshots):
            start, counts = snapshot, self._snapshots[snapshot]  # present: every multiple reached is kept
        counts = list(counts)
        for earlier in range(start, step):
            for position in self._positions(earlier):
                counts[position] += 1
            self._remember(earlier + 1, counts)
        return counts

    def _positions(self, step: int) -> list[int]:
        """The dataset position each pass of ``step`` trains on."""
        if self.draws == "without_replacement":
            return choose_distinct(len(self.datasets), self.seed, step, self.passes)
        return [choose(self._cumulative, self.seed, step, p) for p in range(self.passes)]

    def _remember(self, step: int, counts: list[int]) -> None:
        """Memoise the draw counts over steps < ``step``."""
        self._last = (step, tuple(counts))
        if step % SNAPSHOT_EVERY == 0:
            self._snapshots[step] = self._last[1]

    def _take(self, name: str, cursor: int, count: int) -> Tensor:
        """``count`` example indices of ``name`` from position ``cursor`` of its concatenated epoch permutations."""
        size = self.sizes[name]
        parts = []
        while count > 0:
            epoch, offset = divmod(cursor, size)
            chunk = self._permutation(name, epoch)[offset : offset + count]
            parts.append(chunk)
            cursor, count = cursor + len(chunk), count - len(chunk)
        return torch.cat(parts)

    def _permutation(self, name: str, epoch: int) -> Tensor:
        """Epoch ``epoch``'s permutation of ``name``, cached while the dataset stays in that epoch."""
        cached = self._permutations.get(name)
        if cached is None or cached[0] != epoch:
            cached = self._permutations[name] = (epoch, epoch_permutation(self.sizes[name], name, epoch, self.seed))
        return cached[1]


class RoadSampler(_MixingSampler):
    """ROaD MTL (Algorithm 1): ``pass_step`` passes per step, each on a uniformly drawn dataset.

    ``sizes`` maps dataset name to its number of training rows; each pass takes ``batch_size // pass_step`` rows,
    so a step still trains on ``batch_size`` rows. ``pass_step=1`` with one dataset is plain finetuning order.
    ``draws`` is ``"with_replacement"`` (Algorithm 1, the default) or ``"without_replacement"`` (distinct
    datasets within a step).
    """

    def __init__(self, sizes: dict[str, int], batch_size: int, pass_step: int, seed: int,
                 draws: str = "with_replacement"):
        check_batch(batch_size, pass_step)
        sizes = check_sizes(sizes)
        super().__init__(sizes, dict.fromkeys(sizes, 1), pass_step, batch_size // pass_step, seed, draws)


class MtdnnSampler(_MixingSampler):
    """MT-DNN: one pass per step on one dataset, drawn in proportion to its minibatches ``ceil(size / batch_size)``.

    Over an MT-DNN "epoch" this matches its shuffled list of every dataset's minibatches in expectation.
    """

    def __init__(self, sizes: dict[str, int], batch_size: int, seed: int):
        check_batch(batch_size, 1)
        sizes = check_sizes(sizes)
        weights = {name: math.ceil(size / batch_size) for name, size in sizes.items()}
        super().__init__(sizes, weights, 1, batch_size, seed)
