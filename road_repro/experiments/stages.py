"""Stages of an experiment, each a cached run: finetune (optionally distilling), soft targets, ensemble.

* ``finetune``: train a model on a task (from its pretrained encoder) with plain CE or one of the KD
  objectives, then score it on the task's dev set; saves weights, dev logits, predictions and metrics.
* ``soft_targets``: run a finished teacher once over the training features and cache its logits
  (safetensors, per feature), so students never run teachers.
* ``ensemble``: average the teachers' dev logits and score the ensemble.

Run configs include the data fingerprints, so changed data or tokenization means a new run.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase

from road_repro.config import ModelConfig, ProfileConfig, SplitConfig, to_dict
from road_repro.data.features import qa_features, qa_features_fingerprint
from road_repro.data.registry import load_examples
from road_repro.data.schema import QAExample
from road_repro.distill import (
    load_soft_targets,
    mean_teacher_logits,
    save_soft_targets,
    stack_teachers,
    weighted_span_teacher_logits,
)
from road_repro.errors import ConfigError
from road_repro.evaluate.postprocess import squad_predictions
from road_repro.evaluate.squad_v2 import evaluate_examples
from road_repro.experiments.runs import CHECKPOINTS, Run, RunStore
from road_repro.io import atomic_write, atomic_write_json
from road_repro.models.encoder import load_tokenizer
from road_repro.models.model import RoadModel, build_model, load_weights, save_weights
from road_repro.train.loop import EpochBatches, Pass, predict, resolve_device, train
from road_repro.train.objectives import Objective, pass_losses

MRC_HEAD = "mrc"


def set_seed(seed: int) -> None:
    """Seed every RNG (Python, NumPy, torch) and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class QATask:
    """A span-QA task's examples and features for one tokenizer, with fingerprints for cache keys."""

    train_examples: list[QAExample]
    dev_examples: list[QAExample]
    train: dict[str, torch.Tensor]
    dev: dict[str, torch.Tensor]
    train_fingerprint: str
    dev_fingerprint: str


class Experiment:
    """Everything a table needs to run stages at one scale: the profile, the run store, loaded data."""

    def __init__(self, profile: ProfileConfig, runs_dir: Path, progress: bool = True):
        self.profile = profile
        self.store = RunStore(runs_dir)
        self.progress = progress and profile.runtime.progress
        self._tasks: dict[tuple[str, str], QATask] = {}
        self._tokenizers: dict[str, PreTrainedTokenizerBase] = {}

    @cached_property
    def device(self) -> torch.device:
        return resolve_device(self.profile.runtime.device)

    def model_config(self, key: str) -> ModelConfig:
        if key not in self.profile.models:
            raise ConfigError(f"profile {self.profile.name!r} has no model {key!r} (has: {sorted(self.profile.models)})")
        return self.profile.models[key]

    def tokenizer(self, model_key: str) -> PreTrainedTokenizerBase:
        if model_key not in self._tokenizers:
            self._tokenizers[model_key] = load_tokenizer(self.model_config(model_key))
        return self._tokenizers[model_key]

    def _examples(self, split: SplitConfig) -> list[QAExample]:
        data_dir = Path(self.profile.data_dir) if self.profile.data_dir else None
        return load_examples(split.dataset, split.split, data_dir=data_dir, limit=split.limit)

    def qa_task(self, task: str, model_key: str) -> QATask:
        """Load and tokenize a span-QA task once per (task, model) in this process."""
        key = (task, model_key)
        if key not in self._tasks:
            if task not in self.profile.tasks:
                raise ConfigError(f"profile {self.profile.name!r} has no task {task!r} (has: {sorted(self.profile.tasks)})")
            cfg, tok, f = self.profile.tasks[task], self.tokenizer(model_key), self.profile.features
            settings = dict(max_seq_length=f.max_seq_length, doc_stride=f.doc_stride, max_query_length=f.max_query_length)
            train_ex, dev_ex = self._examples(cfg.train), self._examples(cfg.dev)
            self._tasks[key] = QATask(
                train_ex, dev_ex, self._features(train_ex, model_key), self._features(dev_ex, model_key),
                qa_features_fingerprint(train_ex, tok, **settings), qa_features_fingerprint(dev_ex, tok, **settings),
            )
        return self._tasks[key]

    def _base_config(self, task: str, model_key: str) -> dict[str, Any]:
        data = self.qa_task(task, model_key)
        return {
            "task": task,
            "data": to_dict(self.profile.tasks[task]),
            "train_fingerprint": data.train_fingerprint,
            "dev_fingerprint": data.dev_fingerprint,
            "model": to_dict(self.model_config(model_key)),
            "features": to_dict(self.profile.features),
            "precision": self.profile.runtime.precision,
        }

    def _new_model(self, model_key: str) -> RoadModel:
        """A fresh model for ``model_key``: pretrained (or warm-started) encoder, newly initialised heads."""
        model = build_model(self.model_config(model_key), len(self.tokenizer(model_key)), {MRC_HEAD: "span"})
        warm = self.warm_start(model_key)
        if warm is not None:
            load_weights(model.encoder, warm.path / "encoder.safetensors")
        return model

    def _features(self, examples: list[QAExample], model_key: str) -> dict[str, torch.Tensor]:
        f = self.profile.features
        return qa_features(examples, self.tokenizer(model_key), max_seq_length=f.max_seq_length,
                           doc_stride=f.doc_stride, max_query_length=f.max_query_length)

    def warm_start(self, model_key: str) -> Run | None:
        """Smoke scale: train a tiny preset's encoder once on a disjoint synthetic stream (see WarmStartConfig)."""
        cfg = self.model_config(model_key)
        ws = cfg.warm_start
        if ws is None:
            return None
        config = {"stage": "warm_start", "model": to_dict(cfg), "features": to_dict(self.profile.features),
                  "precision": self.profile.runtime.precision}

        def make(path: Path) -> dict[str, Any]:
            set_seed(0)
            model = build_model(cfg, len(self.tokenizer(model_key)), {MRC_HEAD: "span"})
            data = self._features(self._examples(SplitConfig(ws.dataset, ws.split, ws.limit)), model_key)
            batches = EpochBatches(len(data["input_ids"]), ws.batch_size, seed=0)
            keep = [k for k in ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions") if k in data]
            optim = replace(self.profile.finetune, lr=ws.lr, batch_size=ws.batch_size, layerwise_lr_decay=1.0)
            result = train(
                model, lambda step: [Pass(MRC_HEAD, ws.dataset, {k: data[k][batches(step)] for k in keep})],
                lambda out, p, prog: pass_losses(Objective(), out, p.batch, prog), ws.steps, optim,
                num_layers=model.num_layers, device=self.device, precision=self.profile.runtime.precision,
                checkpoint_dir=path / CHECKPOINTS, checkpoint_every=self.profile.runtime.checkpoint_every,
                progress=self.progress, desc=f"warm start {model_key}",
            )
            atomic_write_json(path / "train_log.json", result.log)
            atomic_write(path / "encoder.safetensors", lambda tmp: save_weights(model.encoder, tmp))
            return {"steps": ws.steps, "final_loss": result.log[-1]["total"]}

        return self.store.run("warm_start", config, make)

    def _score(self, task: str, model_key: str, logits: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
        """Post-process dev logits into answers, score them officially, write predictions for the CLI scorer."""
        data, f = self.qa_task(task, model_key), self.profile.features
        preds, null_odds = squad_predictions(
            data.dev_examples, data.dev["example_index"], data.dev["offsets"],
            logits["start_logits"], logits["end_logits"], n_best_size=f.n_best_size,
            max_answer_length=f.max_answer_length, null_score_diff_threshold=f.null_score_diff_threshold,
        )
        atomic_write_json(path / "predictions.json", preds)
        atomic_write_json(path / "na_probs.json", null_odds)
        return dict(evaluate_examples(data.dev_examples, preds, null_odds))

    # -- stages ---------------------------------------------------------------------------------------------

    def finetune(
        self, task: str, model_key: str, seed: int, objective: Objective = Objective(), teachers: tuple[Run, ...] = ()
    ) -> Run:
        """Finetune (and, with teachers, distill) one model on ``task``; score it on dev."""
        if (objective.distill is None) != (not teachers):
            raise ConfigError(f"objective {objective.distill!r} needs teachers exactly when it distills")
        config = {
            "stage": "finetune", **self._base_config(task, model_key), "optim": to_dict(self.profile.finetune),
            "seed": seed, "objective": asdict(objective), "teachers": [t.run_id for t in teachers],
            "weighted_w": self.profile.distill.w if objective.distill == "weighted" else None,
        }
        return self.store.run("finetune", config, lambda path: self._finetune(path, task, model_key, seed, objective, teachers))

    def _finetune(self, path: Path, task: str, model_key: str, seed: int, objective: Objective, teachers: tuple[Run, ...]) -> dict[str, Any]:
        data, optim = self.qa_task(task, model_key), self.profile.finetune
        set_seed(seed)
        model = self._new_model(model_key)
        train_set = dict(data.train)
        if teachers:
            train_set.update(self._teacher_targets(task, model_key, objective, teachers))
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions",
                            "teacher_start_logits", "teacher_end_logits") if k in train_set]
        batches = EpochBatches(len(train_set["input_ids"]), optim.batch_size, seed)
        total = optim.steps or math.ceil(optim.epochs * batches.steps_per_epoch)

        def step_source(step: int) -> list[Pass]:
            idx = batches(step)
            return [Pass(MRC_HEAD, task, {k: train_set[k][idx] for k in keep})]

        result = train(
            model, step_source, lambda out, p, prog: pass_losses(objective, out, p.batch, prog), total, optim,
            num_layers=model.num_layers, device=self.device, precision=self.profile.runtime.precision,
            checkpoint_dir=path / CHECKPOINTS, checkpoint_every=self.profile.runtime.checkpoint_every,
            progress=self.progress, desc=f"{task} seed {seed} {objective.distill or 'ce'}",
        )
        atomic_write_json(path / "train_log.json", result.log)
        atomic_write(path / "model.safetensors", lambda tmp: save_weights(model, tmp))
        logits = predict(model, data.dev, MRC_HEAD, optim.eval_batch_size, self.device, self.profile.runtime.precision)
        atomic_write(path / "dev_logits.safetensors", lambda tmp: save_file(logits, str(tmp)))
        metrics = self._score(task, model_key, logits, path)
        metrics.update(steps=total, final_loss=result.log[-1]["total"] if result.log else float("nan"))
        return metrics

    def soft_targets(self, task: str, model_key: str, teacher: Run) -> Run:
        """Cache a teacher's logits on every training feature (generated once per teacher and dataset)."""
        data = self.qa_task(task, model_key)
        config = {"stage": "soft_targets", "teacher": teacher.run_id, "train_fingerprint": data.train_fingerprint}

        def make(path: Path) -> dict[str, Any]:
            model = self._new_model(model_key)
            load_weights(model, teacher.path / "model.safetensors")
            logits = predict(model, data.train, MRC_HEAD, self.profile.finetune.eval_batch_size, self.device,
                             self.profile.runtime.precision, progress=self.progress)
            save_soft_targets(path / "soft_targets.safetensors", logits,
                              {"teacher": teacher.run_id, "train_fingerprint": data.train_fingerprint,
                               "features": str(len(data.train["input_ids"]))})
            return {"features": len(data.train["input_ids"])}

        return self.store.run("soft_targets", config, make)

    def _teacher_targets(self, task: str, model_key: str, objective: Objective, teachers: tuple[Run, ...]) -> dict[str, torch.Tensor]:
        data = self.qa_task(task, model_key)
        caches = []
        for teacher in teachers:
            run = self.soft_targets(task, model_key, teacher)
            tensors, _ = load_soft_targets(run.path / "soft_targets.safetensors",
                                           expect={"teacher": teacher.run_id, "train_fingerprint": data.train_fingerprint})
            caches.append(tensors)
        stacked = stack_teachers(caches)
        if objective.distill == "weighted":
            start, end = weighted_span_teacher_logits(
                stacked["start_logits"], stacked["end_logits"], data.train["start_positions"],
                data.train["end_positions"], self.profile.distill.w,
            )
        else:
            start, end = mean_teacher_logits(stacked["start_logits"]), mean_teacher_logits(stacked["end_logits"])
        return {"teacher_start_logits": start, "teacher_end_logits": end}

    def ensemble(self, task: str, model_key: str, teachers: tuple[Run, ...]) -> Run:
        """Score the ensemble that averages the teachers' dev logits."""
        config = {"stage": "ensemble", "teachers": [t.run_id for t in teachers], **self._base_config(task, model_key)}

        def make(path: Path) -> dict[str, Any]:
            logits = [load_file(str(t.path / "dev_logits.safetensors")) for t in teachers]
            mean = {k: torch.stack([l[k] for l in logits]).mean(0) for k in ("start_logits", "end_logits")}
            return self._score(task, model_key, mean, path)

        return self.store.run("ensemble", config, make)
