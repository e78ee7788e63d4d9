"""The warm-start stage (smoke scale only): a tiny preset's encoder trained once, a stand-in for pretraining."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from road_repro.config import SplitConfig, to_dict
from road_repro.data.registry import get_dataset
from road_repro.errors import ConfigError
from road_repro.experiments.context import Context, set_seed
from road_repro.experiments.runs import CHECKPOINTS, Run, config_hash
from road_repro.experiments.tasks import TaskData, head_kind
from road_repro.io import atomic_write, atomic_write_json
from road_repro.models.encoder import TINY_PRESETS
from road_repro.models.model import RoadModel, build_model, save_weights
from road_repro.train.loop import EpochBatches, Pass, train
from road_repro.train.objectives import Objective, pass_losses


def _drop_padding(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """A span batch without its all-padding columns (warm start only: no target or teacher logit is there;
    a no-op for batches already padded per batch)."""
    if "start_positions" not in batch or "teacher_start_logits" in batch:
        return batch
    width = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :width] if k in ("input_ids", "attention_mask", "token_type_ids") else v for k, v in batch.items()}


def run(exp: Context, model_key: str) -> Run | None:
    """Smoke scale: train a tiny preset's encoder once on disjoint synthetic streams (see WarmStartConfig).

    Phase 1 trains span QA alone on ``dataset``; phase 2 (``mixture_steps`` > 0) takes one pass of every
    ``mixture`` stream per step, one head per task type. Span batches drop their all-padding columns
    (the one-fact stream fills a third of ``max_seq_length``), which halves the cost of a step. The run
    config holds a fingerprint of every stream's examples and the preset's shape, so a changed generator or
    preset means a new warm start (and, through its run id, new runs downstream).
    """
    cfg = exp.model_config(model_key)
    ws = cfg.warm_start
    if ws is None:
        return None
    memo = exp.__dict__.setdefault("_warm_starts", {})  # model key -> config (hashing every example is slow)
    first = SplitConfig(ws.dataset, ws.split, ws.limit)
    if get_dataset(ws.dataset).task != "mrc":
        raise ConfigError(f"warm_start.dataset={ws.dataset!r} must be a span-QA (mrc) dataset")
    if ws.mixture_steps < 0 or (ws.mixture_steps > 0 and not ws.mixture):
        raise ConfigError(f"models.{model_key}.warm_start: mixture_steps={ws.mixture_steps} must be >= 0, and "
                          "> 0 only with a non-empty mixture")
    mixture = ws.mixture if ws.mixture_steps else {}  # mixture_steps=0: phase 1 only
    streams = {ws.dataset: first, **mixture}
    if model_key not in memo:
        memo[model_key] = {
            "stage": "warm_start", "model": to_dict(cfg), "features": to_dict(exp.profile.features),
            "precision": exp.profile.runtime.precision, "shape": TINY_PRESETS.get(cfg.preset or ""),
            "data": {name: config_hash([repr(e) for e in exp.examples(s)]) for name, s in streams.items()}}
    config = memo[model_key]

    def run_phase(model: RoadModel, step_source, steps: int, lr: float, checkpoints: Path, desc: str):
        optim = replace(exp.profile.finetune, lr=lr, batch_size=ws.batch_size, layerwise_lr_decay=1.0)
        objective = Objective(mask_padding=exp.per_batch)
        return train(
            model, step_source, lambda out, p, prog: pass_losses(objective, out, p.batch, prog), steps, optim,
            num_layers=model.num_layers, device=exp.device, precision=exp.profile.runtime.precision,
            checkpoint_dir=checkpoints, checkpoint_every=exp.profile.runtime.checkpoint_every,
            progress=exp.progress, desc=desc, compile=exp.profile.runtime.compile,
            max_rows_per_device=exp.profile.runtime.max_rows_per_device,
            activation_checkpointing=exp.profile.runtime.activation_checkpointing,
            train_log=checkpoints.parent.parent / f"train_log_{checkpoints.name}.csv",  # one per phase
        ).log

    def make(path: Path) -> dict[str, Any]:
        set_seed(0)
        data = {name: TaskData(name, get_dataset(s.dataset).task, exp._split(s, model_key), None,
                               exp.profile.features) for name, s in streams.items()}
        batches = {name: EpochBatches(len(d.train), ws.batch_size, seed=i) for i, (name, d) in enumerate(data.items())}

        def passes(names) -> Callable[[int], list[Pass]]:
            return lambda step: [Pass(data[n].task_type, n, _drop_padding(data[n].batch(data[n].train, batches[n](step))))
                                 for n in names]

        model = build_model(cfg, len(exp.tokenizer(model_key)), {"mrc": "span"})
        metrics: dict[str, Any] = {"steps": ws.steps}
        log = run_phase(model, passes([ws.dataset]), ws.steps, ws.lr, path / CHECKPOINTS / "phase1",
                        f"warm start {model_key}")
        metrics["final_loss"] = log[-1]["total"]
        if mixture:
            heads = {d.task_type: head_kind(d.task_type) for n, d in data.items() if n in mixture}
            mixed = build_model(cfg, len(exp.tokenizer(model_key)), {"mrc": "span", **heads})
            mixed.encoder.load_state_dict(model.encoder.state_dict())
            mixed.heads["mrc"].load_state_dict(model.heads["mrc"].state_dict())
            model = mixed
            log += run_phase(model, passes(list(mixture)), ws.mixture_steps, ws.mixture_lr,
                             path / CHECKPOINTS / "phase2", f"warm start {model_key} (mixture)")
            metrics.update(mixture_steps=ws.mixture_steps, mixture_final_loss=log[-1]["total"])
        atomic_write_json(path / "train_log.json", log)
        atomic_write(path / "model.safetensors", lambda tmp: save_weights(model, tmp))
        atomic_write(path / "encoder.safetensors", lambda tmp: save_weights(model.encoder, tmp))
        return metrics

    return exp.store.run("warm_start", config, make)  # a run seen before returns at once
