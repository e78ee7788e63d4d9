"""The one training loop, for finetuning, distillation and ROaD multi-task pretraining alike.

Each optimizer step runs the passes that ``step_source(step)`` returns (Algorithm 1 of the paper: in
ROaD MTL each pass draws a dataset; in finetuning there is one pass). Every pass's loss is divided by
the number of passes before ``backward`` so the accumulated gradient is the *mean* of the per-pass
gradients; then the gradient is clipped and one AdamW update made.

Because ``step_source`` is a pure function of the step index, the data order needs no state of its own:
resuming at step ``k`` from a checkpoint (model, optimizer, scheduler, scaler and RNG states) replays
exactly the batches an uninterrupted run would have seen.

Under ``torchrun`` (:mod:`road_repro.train.distributed`) ``step_source`` still returns the *global*
passes on every rank -- so a multi-task dataset draw is identical everywhere by construction, and the
loop checks that it is. Each rank keeps its contiguous slice of every pass's rows; the model is wrapped in
``DistributedDataParallel``, which all-reduces (averages) gradients once per step, on the last pass (the
others run under ``no_sync``). A rank's loss is its shard's mean scaled by ``world * shard_rows /
global_rows``, so the average over ranks is the global-batch mean even when the rows do not divide evenly.
Only rank 0 writes checkpoints (the others wait for its outcome) and every rank resumes from the same one.

Memory: a rank's shard of a pass runs as micro-batches of at most ``max_rows_per_device`` rows (gradient
accumulation; 0 = as many as the GPU holds, :mod:`road_repro.train.memory`), each micro-batch's mean loss
scaled by ``world * micro_rows / global_rows`` -- the same weighting one level down, so the accumulated
gradient is the big batch's whatever the split (``loss_fn`` must return means over its batch's rows, as
every objective here does). DDP syncs on the step's last micro-batch only. ``activation_checkpointing``
recomputes each encoder layer in backward instead of keeping its activations.

Mixed precision: bf16 autocast where the GPU supports it, fp16 with a gradient scaler otherwise, fp32 on
CPU unless asked otherwise (:func:`resolve_precision`). ``compile=True`` runs the model through
``torch.compile``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from road_repro.config import OptimConfig
from road_repro.errors import ConfigError, TrainingError, TrainingInterrupted
from road_repro.io import shared_outcome
from road_repro.log import progress as tqdm
from road_repro.models.model import activation_checkpointing_during
from road_repro.train.checkpoint import complete_checkpoints, load_latest, save_checkpoint, set_rng_state
from road_repro.train.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    batch_rows,
    gather_rows,
    init_distributed,
    rank_device,
    same_on_all_ranks,
    shard_rows,
    torchrun_env,
)
from road_repro.train.memory import device_row_limit, micro_bounds
from road_repro.train.optim import build_optimizer
from road_repro.train.train_log import open_train_log

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

#: ``runtime.precision`` values and the autocast dtype each asks for (``auto`` is resolved per device).
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass
class Pass:
    """One forward/backward pass of a step: which head, which dataset (for logs and errors), which batch."""

    head: str
    dataset: str
    batch: dict[str, Tensor]


StepSource = Callable[[int], list[Pass]]
LossFn = Callable[[dict[str, Tensor], Pass, float], dict[str, Tensor]]
#: Most rows of one micro-batch on this device for a batch of the given sequence length (None: no limit).
RowLimit = Callable[[int], "int | None"]


@dataclass
class TrainResult:
    """What a finished :func:`train` call reports: per-step log rows and whether it resumed."""

    log: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    #: Seconds spent training the logged steps, over every attempt (carried in checkpoints: ``elapsed_s``).
    elapsed_s: float = 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; under torchrun a bare ``cuda`` means ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    env = torchrun_env()
    if env is None or env[2] == 1:
        return device
    return rank_device(device, env[1])


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (None: plain fp32) for ``runtime.precision`` on ``device``.

    ``auto``: bf16 where the GPU computes it natively (compute capability 8.0 or newer: A100, H100, ...),
    fp16 (trained with a grad scaler) on older GPUs, fp32 on CPU. ``torch.cuda.is_bf16_supported()`` is not
    the test: it is true on a V100 (7.0, the paper's GPU) too, where bf16 is emulated -- slow matmuls and no
    fused attention. An explicit ``bf16`` or ``fp16`` is honoured on CPU too (CPU autocast supports both;
    useful for checking the mixed-precision path without a GPU), but ``bf16`` on a GPU without bf16 is an error.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"runtime.precision={precision!r} must be one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    cuda = device.type == "cuda"
    if precision == "auto":
        if not cuda:
            return None
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"runtime.precision='bf16' but {device} does not support bf16: use 'auto' (fp16 with a "
                          f"grad scaler there) or 'fp32'")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler that is enabled exactly for fp16 autocast (bf16 and fp32 have fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward(model: nn.Module, batch: dict[str, Tensor], head: str, **kwargs) -> dict[str, Tensor]:
    """Run the model on the encoder inputs present in ``batch``."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    return model(head=head, **inputs, **kwargs)


def _trainer_state(optimizer, scheduler, scaler, result: TrainResult) -> dict:
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "log": result.log, "elapsed_s": result.elapsed_s}


def _seed_this_rank(info: DistInfo) -> None:
    """Give each rank its own RNG stream (e.g. dropout masks), derived from the seed every rank shares."""
    if info.distributed:
        torch.manual_seed(int(torch.randint(2**62, (1,))) + info.rank)


def _torch_rng(device: torch.device) -> dict[str, Tensor]:
    """This rank's torch generator states (CPU, and its GPU's): the streams that differ between ranks."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_torch_rng(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _resume(checkpoint_dir: Path | None, model: nn.Module, optimizer, scheduler, scaler, result: TrainResult,
            info: DistInfo) -> int:
    """Load the newest complete checkpoint (model, optimizer, scheduler, scaler, RNG, log, elapsed seconds); the
    step to start at."""
    state = load_latest(checkpoint_dir, model) if checkpoint_dir is not None else None
    start = int(state["step"]) if state is not None else 0
    if not same_on_all_ranks(start):
        raise TrainingError(f"rank {info.rank} found its newest checkpoint at step {start} in {checkpoint_dir}, "
                            f"other ranks another one: the checkpoint folder must be on a file system every rank sees")
    if state is None:
        _seed_this_rank(info)
        return 0
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])  # rank 0's Python, NumPy and torch generators
    per_rank = state.get("rank_rng")
    if info.distributed and per_rank is not None and len(per_rank) == info.world_size:
        _set_torch_rng(per_rank[info.rank], info.device)
    else:  # written by a single process, or by another number of ranks: fork rank 0's stream
        _seed_this_rank(info)
    result.log = list(state["log"])
    result.elapsed_s = float(state.get("elapsed_s", 0.0))  # checkpoints written before it was kept: 0
    result.resumed_from = start
    return start


def _checkpoint(checkpoint_dir: Path, done: int, model: nn.Module, optimizer, scheduler, scaler,
                result: TrainResult, info: DistInfo) -> None:
    """Rank 0 writes the checkpoint (with every rank's torch RNG state); all ranks wait until it is on disk, and
    if rank 0 fails writing it (a full disk at hour 10) every rank stops with its error at once instead of
    waiting at a barrier until the collective times out (:func:`road_repro.io.shared_outcome`)."""
    state = _trainer_state(optimizer, scheduler, scaler, result)
    if info.distributed:
        state["rank_rng"] = all_gather_objects(_torch_rng(info.device))
    with shared_outcome(f"writing the checkpoint of step {done} in {checkpoint_dir}"):
        if info.is_main:
            save_checkpoint(checkpoint_dir, done, model, state)


def _wrap(model: nn.Module, info: DistInfo, compile: bool) -> tuple[nn.Module, DistributedDataParallel | None]:
    """The module to call (DDP-wrapped when distributed, then compiled if asked) and the DDP wrapper, if any.

    DDP looks for unused parameters on every step: a multi-head model leaves the heads a pass does not use
    without gradients, and some encoders carry parameters no head uses (e.g. a pooler); gradients accumulated
    under ``no_sync`` are still all-reduced on the synced pass. The search costs one walk of the autograd
    graph per step, small beside an encoder's forward and backward.
    """
    ddp = None
    runner = model
    if info.distributed:
        ddp = DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None, find_unused_parameters=True,
        )
        runner = ddp
    if compile:
        runner = torch.compile(runner)
    return runner, ddp


def _passes_fingerprint(passes: list[Pass]) -> int:
    """A stable checksum of what a step trains on (heads, datasets, global rows, batch keys)."""
    desc = [(p.head, p.dataset, batch_rows(p.batch), sorted(p.batch)) for p in passes]
    return zlib.crc32(repr(desc).encode())


def _check_passes(passes: list[Pass], step: int, info: DistInfo) -> None:
    """Fail loudly, on every rank, if the step has no passes or the ranks disagree on the global passes."""
    if not passes:
        raise TrainingError(f"step_source returned no passes for step {step}")
    if not same_on_all_ranks(_passes_fingerprint(passes)):
        desc = [(p.head, p.dataset, batch_rows(p.batch)) for p in passes]
        raise TrainingError(
            f"ranks disagree on the passes of step {step} (rank {info.rank} has {desc}): step_source must return "
            f"the same global passes on every rank -- draw datasets and batches from generators seeded by the step, "
            f"not from the global RNG (which differs between ranks)"
        )


@dataclass
class _StepLosses:
    """One step's losses on this rank, each weighted by the rank's share of the rows so ranks sum to means."""

    pass_totals: list[Tensor]
    by_key: dict[str, Tensor]


def _run_passes(runner: nn.Module, ddp: DistributedDataParallel | None, passes: list[Pass], loss_fn: LossFn,
                progress_frac: float, info: DistInfo, dtype: torch.dtype | None,
                scaler: torch.amp.GradScaler, row_limit: RowLimit = lambda seq_len: None) -> _StepLosses:
    """Forward and backward every pass on this rank's shard, accumulating the mean gradient over passes.

    Each shard runs as micro-batches of at most ``row_limit(sequence length)`` rows
    (:func:`~road_repro.train.memory.micro_bounds`); a micro-batch's mean loss is weighted by ``world x
    micro_rows / global_rows / passes``, so the gradients summed over micro-batches and averaged over ranks
    are the mean over passes of each pass's global-batch mean, however the rows split. DDP synchronises on
    the step's last micro-batch only. A rank whose shard is empty (fewer rows than ranks) runs the first row
    with weight 0, so every rank takes part in DDP's all-reduce and adds nothing to the gradient.
    """
    device = info.device
    out = _StepLosses([], {})
    for i, p in enumerate(passes):
        rows = batch_rows(p.batch)
        shard = shard_rows(p.batch, info.rank, info.world_size)
        mine = batch_rows(shard)
        if mine == 0:
            shard = {k: v[:1] for k, v in p.batch.items()}
        parts = micro_bounds(batch_rows(shard), row_limit(int(shard["input_ids"].shape[-1])))
        pass_total = torch.zeros((), device=device)
        for j, (lo, hi) in enumerate(parts):
            batch = to_device({k: v[lo:hi] for k, v in shard.items()}, device)
            weight = (hi - lo) / rows if mine else 0.0  # this micro-batch's share of the pass's global mean
            last = i == len(passes) - 1 and j == len(parts) - 1
            sync = ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    losses = loss_fn(forward(runner, batch, p.head), Pass(p.head, p.dataset, batch), progress_frac)
                scaler.scale(losses["total"] * (weight * info.world_size / len(passes))).backward()
            pass_total = pass_total + losses["total"].detach().float() * weight
            for key, value in losses.items():
                out.by_key[key] = out.by_key.get(key, 0.0) + value.detach().float() * weight / len(passes)
        out.pass_totals.append(pass_total)
    return out


def _global_losses(local: _StepLosses, stop: bool) -> tuple[list[float], dict[str, float], bool]:
    """Per-pass and per-key global means (summed over ranks) and whether any rank was asked to stop."""
    values = torch.stack([*local.pass_totals, *local.by_key.values(),
                          torch.tensor(float(stop), device=local.pass_totals[0].device)])
    summed = all_reduce_sum(values).tolist()
    n = len(local.pass_totals)
    return summed[:n], dict(zip(local.by_key, summed[n:-1])), summed[-1] > 0


def train(
    model: nn.Module,
    step_source: StepSource,
    loss_fn: LossFn,
    total_steps: int,
    optim: OptimConfig,
    *,
    num_layers: int,
    device: torch.device,
    precision: str = "fp32",
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
    progress: bool = True,
    desc: str = "train",
    compile: bool = False,
    max_rows_per_device: int = 0,
    activation_checkpointing: bool = False,
    train_log: Path | None = None,
    in_step_teacher: nn.Module | None = None,
) -> TrainResult:
    """Train for ``total_steps`` optimizer steps, resuming from ``checkpoint_dir`` if it holds a checkpoint.

    ``train_log``: a ``train_log.csv`` to append each step's row to as it trains (:mod:`road_repro.train.train_log`).

    Under torchrun every rank calls this with the same arguments; ``model`` ends with the same weights on
    every rank and the returned log holds global (all-rank) means. Each rank's rows of a pass run as
    micro-batches of at most ``max_rows_per_device`` rows (0: as many as the GPU's memory holds, by
    :func:`~road_repro.train.memory.device_row_limit`, counting ``in_step_teacher``: a model the ``loss_fn`` runs
    inside each step on the same GPU, hidden-state KD's teacher; no limit on CPU); ``activation_checkpointing`` recomputes the encoder's layers
    in backward while this trains, and is set back as it was when it returns or fails
    (:func:`~road_repro.models.model.activation_checkpointing_during`).
    """
    info = init_distributed(device)
    device = info.device
    model.to(device)
    optimizer, scheduler = build_optimizer(model, optim, num_layers, total_steps)
    dtype = resolve_precision(precision, device)
    row_limit = device_row_limit(max_rows_per_device, model, device, 4 if dtype is None else 2, activation_checkpointing,
                                 in_step_teacher)
    scaler = grad_scaler(dtype, device)
    result = TrainResult()
    start = _resume(checkpoint_dir, model, optimizer, scheduler, scaler, result, info)
    runner, ddp = _wrap(model, info, compile)
    runner.train()
    clock = time.perf_counter() - result.elapsed_s  # elapsed_s counts on from the checkpoint's
    bar = tqdm(range(start, total_steps), desc=desc, disable=not (progress and info.is_main), initial=start,
               total=total_steps)
    with activation_checkpointing_during(model, activation_checkpointing), stop_on_sigterm() as stop, \
            open_train_log(train_log, start, info.is_main, result.log) as csv_log:
        for step in bar:
            passes = step_source(step)
            _check_passes(passes, step, info)
            local = _run_passes(runner, ddp, passes, loss_fn, step / max(1, total_steps), info, dtype, scaler, row_limit)
            totals, sums, stopping = _global_losses(local, stop.is_set())
            for i, (p, total) in enumerate(zip(passes, totals)):
                if not math.isfinite(total):
                    raise TrainingError(
                        f"non-finite loss {total} at step {step}, pass {i} (dataset {p.dataset!r}, head {p.head!r}, "
                        f"batch of {batch_rows(p.batch)} rows); {kept_checkpoint(checkpoint_dir)}; try a lower "
                        "learning rate or runtime.precision=fp32"
                    )
            scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), optim.max_grad_norm))
            scale = scaler.get_scale()
            scaler.step(optimizer)  # skipped by the scaler if fp16 gradients overflowed
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lr = scheduler.get_last_lr()[-1]
            if scaler.get_scale() >= scale:  # a skipped fp16 step does not advance the schedule
                scheduler.step()
            row = {"step": step + 1, "lr": lr, "grad_norm": grad_norm, "loss_scale": scaler.get_scale(), **sums}
            result.log.append(row)
            result.elapsed_s = time.perf_counter() - clock
            if csv_log is not None:
                csv_log.write(row, [p.dataset for p in passes], sum(batch_rows(p.batch) for p in passes),
                              result.elapsed_s)
            bar.set_postfix(loss=f"{sums['total']:.4f}")
            done = step + 1
            if checkpoint_dir is not None and (
                done == total_steps or (checkpoint_every and done % checkpoint_every == 0) or stopping
            ):
                if csv_log is not None:  # the log holds every step the checkpoint has
                    csv_log.flush()
                _checkpoint(checkpoint_dir, done, model, optimizer, scheduler, scaler, result, info)
            if stopping and done < total_steps:
                saved = f"checkpoint saved in {checkpoint_dir}" if checkpoint_dir is not None else \
                    "no checkpoint folder, so a rerun starts again"
                raise TrainingInterrupted(f"SIGTERM after step {done} of {total_steps}; {saved}")
    bar.close()
    model.eval()
    return result


def kept_checkpoint(checkpoint_dir: Path | None) -> str:
    """Where a rerun resumes from, for the message of a failed loop: the newest intact checkpoint, or none
    (a message must never name a checkpoint that does not exist)."""
    latest = complete_checkpoints(checkpoint_dir)[-1:] if checkpoint_dir is not None else []
    if not latest:
        return "no checkpoint of this stage was written, so a rerun starts it again"
    return f"the newest checkpoint is {latest[0]}; a rerun of the same command resumes from it"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """Turn SIGTERM (preemption) into a flag the loop checks between steps, so it can checkpoint and exit."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


@torch.no_grad()
def predict(
    model: nn.Module,
    features: dict[str, Tensor],
    head: str,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    progress: bool = False,
) -> dict[str, Tensor]:
    """Head outputs for every row of ``features`` (float32, on CPU), in order; model in eval mode.

    Under torchrun each rank runs its contiguous slice of the rows and every rank gets all rows back, in
    order (with fewer rows than ranks, every rank runs them all).
    """
    info = init_distributed(device)
    device = info.device
    model.to(device).eval()
    dtype = resolve_precision(precision, device)
    inputs = {k: features[k] for k in MODEL_INPUTS if k in features}
    n = len(inputs["input_ids"])
    sharded = info.distributed and n >= info.world_size
    if sharded:
        inputs = shard_rows(inputs, info.rank, info.world_size)
    chunks: dict[str, list[Tensor]] = {}
    for lo in tqdm(range(0, len(inputs["input_ids"]), batch_size), desc=f"predict {head}",
                   disable=not (progress and info.is_main)):
        batch = to_device({k: v[lo : lo + batch_size] for k, v in inputs.items()}, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = forward(model, batch, head)
        for key, value in out.items():
            chunks.setdefault(key, []).append(value.float().cpu())
    outputs = {k: torch.cat(v) for k, v in chunks.items()}
    return {k: gather_rows(v) for k, v in outputs.items()} if sharded else outputs


class EpochBatches:
    """Shuffled minibatch indices as a pure function of the step: epoch ``e`` uses permutation seed (seed, e)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n <= 0:
            raise TrainingError("no training examples: the training set is empty")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.steps_per_epoch = math.ceil(n / batch_size)
        self._perm: tuple[int, Tensor] | None = None

    def __call__(self, step: int) -> Tensor:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=gen))
        return self._perm[1][k * self.batch_size : (k + 1) * self.batch_size]
