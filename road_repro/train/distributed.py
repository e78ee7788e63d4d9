"""Data-parallel training under ``torchrun``, nanoGPT-style: a process group and a few collectives, no framework.

``torchrun --nproc_per_node 8 script.py`` starts one process per GPU and tells each its place through the
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` environment variables. :func:`init_distributed` reads them and
joins the process group (NCCL on CUDA, gloo on CPU); launched any other way it is a no-op that describes a
single process, so the same code runs with and without ``torchrun``.

Every rank builds the same *global* batch (the data order is a pure function of the step, see
:mod:`road_repro.train.loop`), keeps its contiguous slice of the rows (:func:`shard_rows`), and
:func:`gather_rows` puts per-rank outputs back together in the global order. The remaining helpers are
thin wrappers over ``torch.distributed`` that do nothing when there is one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from road_repro.errors import ConfigError, DataError

#: The variables torchrun sets for every worker (and that must therefore appear together).
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: global rank, rank on its node, number of processes, its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process: batches are sharded and gradients all-reduced."""
        return self.world_size > 1


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, local_rank, world_size)`` from torchrun's environment, or None when not launched by torchrun."""
    present = [name for name in TORCHRUN_VARS if name in os.environ]
    if not present:
        return None
    if len(present) != len(TORCHRUN_VARS):
        raise ConfigError(f"torchrun sets {', '.join(TORCHRUN_VARS)} together, but only {', '.join(present)} "
                          f"is set in the environment: launch with torchrun or unset them")
    try:
        rank, local_rank, world = (int(os.environ[name]) for name in TORCHRUN_VARS)
    except ValueError as exc:
        values = {name: os.environ[name] for name in TORCHRUN_VARS}
        raise ConfigError(f"torchrun environment variables must be integers, got {values}") from exc
    if not (world >= 1 and 0 <= rank < world and 0 <= local_rank < world):
        raise ConfigError(f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={world}")
    return rank, local_rank, world


def rank_device(requested: torch.device, local_rank: int) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when CUDA is requested (one GPU per process), else ``requested``."""
    if requested.type != "cuda":
        return requested
    if requested.index is not None and requested.index != local_rank:
        raise ConfigError(f"runtime.device={str(requested)!r} pins every rank to one GPU, but this is LOCAL_RANK "
                          f"{local_rank}: use device 'auto' or 'cuda' so that each rank takes GPU LOCAL_RANK")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(f"LOCAL_RANK {local_rank} needs GPU {local_rank} but this node shows {count} GPU(s): "
                          f"--nproc_per_node must not exceed the GPUs per node")
    return torch.device("cuda", local_rank)


def _requested_device(device: torch.device | str | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def init_distributed(device: torch.device | str | None = None, timeout: timedelta | None = None) -> DistInfo:
    """Join torchrun's process group (once; later calls return the same answer) and describe this process.

    ``device`` is what the run asked for (``None`` or ``"auto"``: CUDA when available). Under torchrun a
    CUDA request becomes ``cuda:LOCAL_RANK`` with the NCCL backend; anything else uses gloo. Without
    torchrun, or with a world of one, nothing is initialised and a single-process :class:`DistInfo` returned.
    ``timeout`` bounds every collective (torch's default: 10 minutes for NCCL, 30 for gloo).
    """
    requested = _requested_device(device)
    env = torchrun_env()
    if env is None or env[2] == 1:
        return DistInfo(device=requested)
    rank, local_rank, world = env
    here = rank_device(requested, local_rank)
    if not dist.is_initialized():
        if here.type == "cuda":
            torch.cuda.set_device(here)
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group("nccl" if here.type == "cuda" else "gloo",
                                device_id=here if here.type == "cuda" else None, **kwargs)
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world):
        raise ConfigError(f"a process group with rank {dist.get_rank()} of {dist.get_world_size()} already exists, "
                          f"but torchrun says rank {rank} of {world}")
    return DistInfo(rank, local_rank, world, here)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _comm_device() -> torch.device:
    """Where collective buffers must live: the current GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def world_size() -> int:
    """Processes (GPUs) in the run: the torch.distributed world, 1 outside torchrun."""
    return _world()


def is_main() -> bool:
    """True on rank 0, and in a single process."""
    return _world() == 1 or dist.get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if _world() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if one was joined (call once at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def batch_rows(batch: dict[str, Tensor]) -> int:
    """Number of rows of a batch whose tensors all share their first dimension (else :class:`DataError`)."""
    if not batch:
        raise DataError("empty batch: it has no tensors to count rows in")
    sizes = {key: (int(value.shape[0]) if isinstance(value, Tensor) and value.ndim > 0 else None)
             for key, value in batch.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise DataError(f"batch tensors must share their first (row) dimension to be split over ranks, got rows {sizes}")
    return next(iter(sizes.values()))


def shard_bounds(rows: int, rank: int, world: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of rank ``rank``: contiguous slices whose sizes differ by at most one, in rank order."""
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is outside a world of {world} processes")
    base, extra = divmod(rows, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def shard_rows(batch: dict[str, Tensor], rank: int, world: int) -> dict[str, Tensor]:
    """Rank ``rank``'s contiguous slice of the global batch (:func:`shard_bounds`; empty when rows < world).

    Sizes differ by at most one row when the global batch is not divisible by the world size (the last
    batch of an epoch); the training loop weights each shard's mean loss by its share of the rows, so the
    all-reduced gradient is still the global-batch mean.
    """
    lo, hi = shard_bounds(batch_rows(batch), rank, world)
    return {key: value[lo:hi] for key, value in batch.items()}


def gather_rows(tensor: Tensor) -> Tensor:
    """Concatenate every rank's rows in rank order, on every rank (shards may differ in length).

    The inverse of :func:`shard_rows` for outputs: each rank contributes ``tensor`` (same dtype and
    trailing shape everywhere) and receives the global tensor on ``tensor``'s device.
    """
    world = _world()
    if world == 1:
        return tensor
    comm = _comm_device()
    counts = [torch.zeros(1, dtype=torch.long, device=comm) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([tensor.shape[0]], device=comm))
    rows = [int(c) for c in counts]
    padded = tensor.new_zeros((max(rows), *tensor.shape[1:]), device=comm)
    padded[: tensor.shape[0]] = tensor.to(comm)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, rows)]).to(tensor.device)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The element-wise sum of ``tensor`` over ranks (the tensor itself in a single process)."""
    if _world() == 1:
        return tensor
    buffer = tensor.to(_comm_device(), copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(tensor.device)


def same_on_all_ranks(value: int) -> bool:
    """Whether every rank passed the same integer (always True in a single process)."""
    if _world() == 1:
        return True
    both = torch.tensor([value, -value], dtype=torch.long, device=_comm_device())
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return int(both[0]) == -int(both[1])


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` itself in a single process); other ranks' value is
    ignored, so they can pass None while ``src`` decides, e.g. whether a cached run verified."""
    if _world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
    world = _world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out
