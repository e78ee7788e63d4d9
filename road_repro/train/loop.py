"""The one training loop, for finetuning, distillation and ROaD multi-task pretraining alike.

Each optimizer step runs the passes that ``step_source(step)`` returns (Algorithm 1 of the paper: in
ROaD MTL each pass draws a dataset; in finetuning there is one pass). Every pass's loss is divided by
the number of passes before ``backward`` so the accumulated gradient is the *mean* of the per-pass
gradients; then the gradient is clipped and one AdamW update made.

Because ``step_source`` is a pure function of the step index, the data order needs no state of its own:
resuming at step ``k`` from a checkpoint (model, optimizer, scheduler, scaler and RNG states) replays
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from road_repro.config import OptimConfig
from road_repro.errors import TrainingError, TrainingInterrupted
from road_repro.train.checkpoint import load_latest, save_checkpoint, set_rng_state
from road_repro.train.optim import build_optimizer

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Pass:
    """One forward/backward pass of a step: which head, which dataset (for logs and errors), which batch."""

    head: str
    dataset: str
    batch: dict[str, Tensor]


StepSource = Callable[[int], list[Pass]]
LossFn = Callable[[dict[str, Tensor], Pass, float], dict[str, Tensor]]


@dataclass
class TrainResult:
    """What a finished :func:`train` call reports: per-step log rows and whether it resumed."""

    log: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 where the GPU supports it, fp16 (with a grad scaler) otherwise, fp32 on CPU."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward(model: nn.Module, batch: dict[str, Tensor], head: str, **kwargs) -> dict[str, Tensor]:
    """Run the model on the encoder inputs present in ``batch``."""
    inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    return model(head=head, **inputs, **kwargs)


def _trainer_state(optimizer, scheduler, scaler, result: TrainResult) -> dict:
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "log": result.log}


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
) -> TrainResult:
    """Train for ``total_steps`` optimizer steps, resuming from ``checkpoint_dir`` if it holds a checkpoint."""
    model.to(device)
    optimizer, scheduler = build_optimizer(model, optim, num_layers, total_steps)
    dtype = resolve_precision(precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    result = TrainResult()
    start = 0
    if checkpoint_dir is not None:
        state = load_latest(checkpoint_dir, model)
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            result.log = list(state["log"])
            start = result.resumed_from = int(state["step"])
    model.train()
    bar = tqdm(range(start, total_steps), desc=desc, disable=not progress, initial=start, total=total_steps)
    with stop_on_sigterm() as stop:
        for step in bar:
            passes = step_source(step)
            progress_frac = step / max(1, total_steps)
            sums: dict[str, float] = {}
            for i, p in enumerate(passes):
                batch = to_device(p.batch, device)
                sync = contextlib.nullcontext()
                if i < len(passes) - 1 and hasattr(model, "no_sync"):
                    sync = model.no_sync()  # DDP: all-reduce once, on the last pass of the step
                with sync:
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        losses = loss_fn(forward(model, batch, p.head), p, progress_frac)
                    total = losses["total"]
                    if not torch.isfinite(total):
                        raise TrainingError(
                            f"non-finite loss {total.item()} at step {step}, pass {i} (dataset {p.dataset!r}, "
                            f"head {p.head!r}, batch of {len(batch['input_ids'])} rows); the last good checkpoint "
                            f"in {checkpoint_dir} is kept"
                        )
                    scaler.scale(total / len(passes)).backward()
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach()) / len(passes)
            scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), optim.max_grad_norm))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            lr = scheduler.get_last_lr()[-1]
            scheduler.step()
            row = {"step": step + 1, "lr": lr, "grad_norm": grad_norm, "loss_scale": scaler.get_scale(), **sums}
            result.log.append(row)
            if math.isfinite(sums.get("total", 0.0)):
                bar.set_postfix(loss=f"{sums['total']:.4f}")
            done = step + 1
            if checkpoint_dir is not None and (
                done == total_steps or (checkpoint_every and done % checkpoint_every == 0)
            ):
                save_checkpoint(checkpoint_dir, done, model, _trainer_state(optimizer, scheduler, scaler, result))
            if stop.is_set() and done < total_steps:
                if checkpoint_dir is not None:
                    save_checkpoint(checkpoint_dir, done, model, _trainer_state(optimizer, scheduler, scaler, result))
                raise TrainingInterrupted(f"SIGTERM after step {done} of {total_steps}; checkpoint saved in {checkpoint_dir}")
    bar.close()
    model.eval()
    return result


@contextlib.contextmanager
def stop_on_sigterm():
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
    """Head outputs for every row of ``features`` (float32, on CPU), in order; model in eval mode."""
    model.to(device).eval()
    dtype = resolve_precision(precision, device)
    n = len(features["input_ids"])
    chunks: dict[str, list[Tensor]] = {}
    for lo in tqdm(range(0, n, batch_size), desc=f"predict {head}", disable=not progress):
        batch = to_device({k: features[k][lo : lo + batch_size] for k in MODEL_INPUTS if k in features}, device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = forward(model, batch, head)
        for key, value in out.items():
            chunks.setdefault(key, []).append(value.float().cpu())
    return {k: torch.cat(v) for k, v in chunks.items()}


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
