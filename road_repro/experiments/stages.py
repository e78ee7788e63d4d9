"""Stages of an experiment, each a cached run (see :mod:`road_repro.experiments.runs`).

* ``warm_start`` (smoke only): train a tiny preset's encoder once, a stand-in for self-supervised pretraining.
* ``mtl``: multi-task pretraining, ROaD (Algorithm 1: ``pass_step`` passes per step, each on a randomly drawn
  dataset, gradients averaged; one head per task type) or MT-DNN (one dataset per step, drawn in proportion to
  its minibatches; one head per dataset); optionally with KD from a teacher finetuned per dataset.
* ``finetune``: train on a task (from the pretrained, warm-started or MTL encoder, with fresh heads) with plain
  CE or a KD objective, then score on dev; saves weights, dev logits, predictions and metrics.
* ``soft_targets``: run a finished teacher once over the training features and cache its logits.
* ``ensemble``: average the teachers' dev logits and score the ensemble.
* ``predict``: score a finished model on another task's dev set (NewsQA with the SQuAD 2.0 model).

Run configs include data fingerprints, so changed data or tokenization means a new run.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from road_repro.config import (
    AugmentSpec, HiddenKDSpec, ModelConfig, OptimConfig, ProfileConfig, SplitConfig, TaskConfig, to_dict,
)
from road_repro.data.augmentation import augment_negative_questions, entity_pool, resolve_ner
from road_repro.data.batching import LengthGroupedBatches, length_sorted_groups
from road_repro.data.feature_store import (
    FeatureSpec, FeatureStore, examples_digest, features_fingerprint, tokenizer_identity,
)
from road_repro.data.mixing import MtdnnSampler, RoadSampler
from road_repro.data.registry import data_source, get_dataset, load_examples
from road_repro.distill import SOFT_TARGET_DTYPE, TeacherTargets, dtype_name, open_soft_targets, write_soft_targets
from road_repro.errors import ConfigError
from road_repro.experiments.runs import CHECKPOINTS, Run, RunStore, config_hash, runtime_record
from road_repro.experiments.tasks import Split, TaskData, head_kind
from road_repro.io import atomic_write, atomic_write_json
from road_repro.models.encoder import TINY_PRESETS, attention_kind, load_tokenizer, tokenization_difference
from road_repro.models.model import RoadModel, build_model, load_weights, save_weights
from road_repro.train.hidden_kd import attach_hidden_kd, make_hidden_kd_loss_fn
from road_repro.train.loop import EpochBatches, Pass, predict, resolve_device, train
from road_repro.train.objectives import Objective, pass_losses

#: Rows per chunk when running a model over a whole split (bounds the padded classification tensors).
PREDICT_CHUNK = 8192

#: What a per-batch inference pass writes at the padding positions of span logits padded back to
#: ``max_seq_length`` (finite in float16, softmax 0; masked out of every span loss anyway).
PAD_LOGIT = -1e4

#: Task names of MTL datasets: ``mtl:<name>`` reads ``mtl.datasets.<name>``, never ``tasks.<name>``.
MTL_PREFIX = "mtl:"


def mtl_task(name: str) -> str:
    """The task name under which MTL dataset ``name`` (a key of ``mtl.datasets``) is loaded and finetuned."""
    return MTL_PREFIX + name


def set_seed(seed: int) -> None:
    """Seed every RNG (Python, NumPy, torch) and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _drop_padding(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """A span batch without its all-padding columns (warm start only: no target or teacher logit is there;
    a no-op for batches already padded per batch)."""
    if "start_positions" not in batch or "teacher_start_logits" in batch:
        return batch
    width = int(batch["attention_mask"].sum(1).max())
    return {k: v[:, :width] if k in ("input_ids", "attention_mask", "token_type_ids") else v for k, v in batch.items()}


def predict_length_sorted(model: RoadModel, data: TaskData, split: Split, rows: Tensor, batch_size: int,
                          device: torch.device, precision: str = "fp32") -> dict[str, Tensor]:
    """Head outputs of ``rows`` (consecutive) of ``split``, run in length-sorted groups padded per group, in row order.

    Span logits come back ``[rows, max_seq_length]`` with :data:`PAD_LOGIT` on each window's padding, the
    layout of the reference path, so dev logits and soft-target files have the same shape either way.
    Under torchrun a group holds one batch per rank (:func:`road_repro.train.loop.predict` shards it).
    """
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    out: dict[str, Tensor] = {}
    for group in length_sorted_groups(rows, split.features.lengths, batch_size * world):
        inputs = data.batch(split, group, targets=False)
        got = predict(model, inputs, data.task_type, batch_size, device, precision)
        for key, value in got.items():
            if key not in out:
                trailing = (data.features_cfg.max_seq_length,) if data.is_span else value.shape[1:]
                out[key] = torch.full((len(rows), *trailing), PAD_LOGIT, dtype=value.dtype)
            if data.is_span:
                value = value.masked_fill(inputs["attention_mask"] == 0, PAD_LOGIT)
            out[key][group - rows[0], : value.shape[1]] = value
    return out


def training_batches(data: TaskData, batch_size: int, seed: int) -> EpochBatches | LengthGroupedBatches:
    """Training minibatches of a finetune stage: length-grouped with ``features.span_padding: batch`` (every row
    padded per batch, span windows and pairs alike), else shuffled (the reference code's order)."""
    if data.per_batch:
        return LengthGroupedBatches(data.train.features.lengths, batch_size, seed)
    return EpochBatches(len(data.train), batch_size, seed)


def teacher_keys(data: TaskData) -> tuple[str, ...]:
    """The head outputs a teacher caches for a task."""
    return ("start_logits", "end_logits") if data.is_span else ("logits",)


class Experiment:
    """Everything a table needs to run stages at one scale: the profile, the run store, loaded data."""

    def __init__(self, profile: ProfileConfig, runs_dir: Path, progress: bool = True, dry: bool = False,
                 features_dir: Path | None = None):
        self.profile = profile
        self.store = RunStore(runs_dir, dry=dry)  # dry: plan the stages (real run ids), train nothing
        self.store.runtime = lambda: runtime_record(profile.runtime.precision, self.device)  # in each config.json
        self.progress = progress and profile.runtime.progress
        # Tokenized splits, shared by every stage, table, process and rank (next to the runs folder by default).
        self.features_store = FeatureStore(Path(features_dir) if features_dir else Path(runs_dir).parent / "features",
                                           profile.runtime.feature_workers, self.progress)
        self._tasks: dict[tuple[str, str, str], TaskData] = {}
        self._examples: dict[tuple[str, str, int | None], list] = {}
        self._tokenizers: dict[str, PreTrainedTokenizerBase] = {}
        self._tokenizer_ids: dict[str, str] = {}

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

    def check_same_tokenization(self, student: str, teacher: str) -> None:
        """ConfigError unless two models tokenize alike (cross-model KD reads the teacher's per-feature logits).

        Names do not matter (ELECTRA-large and ELECTRA-base are two checkpoints of one vocabulary); the
        vocabulary, special tokens and the encoding of probe texts do.
        """
        reason = tokenization_difference(self.tokenizer(student), self.tokenizer(teacher))
        if reason:
            raise ConfigError(f"models.{student} (student) and models.{teacher} (teacher) tokenize differently "
                              f"({reason}): cross-model KD needs one vocabulary, as in ELECTRA-large -> ELECTRA-base")

    def task_config(self, task: str) -> TaskConfig:
        """A finetuning task's splits, or (``mtl:<name>``, see :func:`mtl_task`) an MTL dataset's training split.

        The two namespaces never mix: ``mtl:mnli`` reads ``mtl.datasets.mnli`` even when ``tasks.mnli`` exists.
        """
        if task.startswith(MTL_PREFIX):
            name = task[len(MTL_PREFIX):]
            if name not in self.profile.mtl.datasets:
                raise ConfigError(f"profile {self.profile.name!r} has no MTL dataset {name!r} "
                                  f"(mtl.datasets: {sorted(self.profile.mtl.datasets)})")
            return TaskConfig(train=self.profile.mtl.datasets[name])
        if task in self.profile.tasks:
            return self.profile.tasks[task]
        raise ConfigError(f"profile {self.profile.name!r} has no task {task!r} (tasks: {sorted(self.profile.tasks)})")

    # -- data -----------------------------------------------------------------------------------------------

    def examples(self, cfg: SplitConfig) -> list:
        """A split's examples, loaded and validated once per process (the preflight's load is the run's)."""
        key = (cfg.dataset, cfg.split, cfg.limit, cfg.cap)
        if key not in self._examples:
            data_dir = Path(self.profile.data_dir) if self.profile.data_dir else None
            self._examples[key] = load_examples(cfg.dataset, cfg.split, data_dir=data_dir, limit=cfg.limit, cap=cfg.cap,
                                                max_unusable_share=self.profile.max_unusable_share)
        return self._examples[key]

    def feature_spec(self, dataset: str, scored: bool) -> FeatureSpec:
        """How a dataset's split is tokenized at this profile (``scored``: keep character offsets)."""
        f = self.profile.features
        if get_dataset(dataset).task == "mrc":
            return FeatureSpec("span", f.max_seq_length, f.doc_stride, f.max_query_length, offsets=scored)
        return FeatureSpec("pair", f.max_pair_length, offsets=scored)

    def _split(self, cfg: SplitConfig, model_key: str, examples: list | None = None, scored: bool = False) -> Split:
        """A split whose features are read from (and on first use built into) the feature store."""
        examples = self.examples(cfg) if examples is None else examples
        tok, spec = self.tokenizer(model_key), self.feature_spec(cfg.dataset, scored)
        if model_key not in self._tokenizer_ids:  # (serializing a vocabulary takes a tenth of a second)
            self._tokenizer_ids[model_key] = tokenizer_identity(tok)
        fingerprint = features_fingerprint(examples_digest(examples), self._tokenizer_ids[model_key], spec)
        what = f"{cfg.dataset}:{cfg.split}{f'[:{cfg.limit}]' if cfg.limit else ''} ({self.model_config(model_key).name_or_path or model_key})"
        manifest = self.features_store.manifest(fingerprint, spec)
        return Split(examples, fingerprint, lambda: self.features_store.get(examples, tok, spec, what, fingerprint),
                     manifest["rows"] if manifest else None)

    def task(self, name: str, model_key: str, augment: AugmentSpec | None = None) -> TaskData:
        """Load and tokenize a task (or an MTL dataset) once per (task, tokenizer, augmentation) in this process.

        ``augment`` adds negative questions to the training split (paper Table 3); dev is never augmented.
        """
        cfg = self.task_config(name)
        key = (name, model_key, config_hash({"data": to_dict(cfg), "augment": to_dict(augment) if augment else None}))
        if key not in self._tasks:
            splits = [s for s in (cfg.train, cfg.dev) if s is not None]
            types = {get_dataset(s.dataset).task for s in splits}
            if len(types) != 1:
                raise ConfigError(f"task {name!r}: its splits mix task types {sorted(types)}")
            task_type = types.pop()
            train = None
            if cfg.train is not None:
                examples = self.examples(cfg.train)
                if augment is not None:
                    if task_type != "mrc":
                        raise ConfigError(f"task {name!r}: negative-question augmentation applies to span QA only")
                    examples, _ = augment_negative_questions(examples, augment.negative_questions, augment.seed,
                                                             augment.ner, entity_pool(cfg.train.dataset))
                train = self._split(cfg.train, model_key, examples)
            dev = self._split(cfg.dev, model_key, scored=True) if cfg.dev else None
            self._tasks[key] = TaskData(name, task_type, train, dev, self.profile.features)
        return self._tasks[key]

    def _sources(self, *tasks: str) -> dict[str, str]:
        """Which files (or hub split, or generator) each split of ``tasks`` is read from, for config.json."""
        data_dir = Path(self.profile.data_dir) if self.profile.data_dir else None
        out = {}
        for task in tasks:
            cfg = self.task_config(task)
            for name, split in (("train", cfg.train), ("dev", cfg.dev)):
                if split is not None:
                    out[f"{task}.{name}"] = (f"{split.dataset}:{split.split} from "
                                             + data_source(split.dataset, split.split, data_dir))
        return out

    def _base_config(self, task: str, model_key: str, augment: AugmentSpec | None = None) -> dict[str, Any]:
        data = self.task(task, model_key, augment)
        return {
            "task": task, "data": to_dict(self.task_config(task)),
            "train_fingerprint": data.train.fingerprint if data.train else None,
            "dev_fingerprint": data.dev.fingerprint if data.dev else None,
            "model": to_dict(self.model_config(model_key)), "features": to_dict(self.profile.features),
            "precision": self.profile.runtime.precision,
        }

    # -- models ---------------------------------------------------------------------------------------------

    def _new_model(self, model_key: str, heads: dict[str, str | int], init: Run | None = None) -> RoadModel:
        """A model with fresh heads on the pretrained encoder, or on an earlier stage's encoder (``init``)."""
        model = build_model(self.model_config(model_key), len(self.tokenizer(model_key)), heads)
        encoder_run = init or self.warm_start(model_key)
        if encoder_run is not None:
            load_weights(model.encoder, encoder_run.path / "encoder.safetensors")
        return model

    def _train(self, model: RoadModel, step_source, objective: Objective, steps: int, optim: OptimConfig,
               path: Path, desc: str, loss_fn=None) -> list[dict[str, float]]:
        """Train with ``objective`` (or a ready ``loss_fn``, e.g. hidden-state KD) and save the weights."""
        result = train(
            model, step_source, loss_fn or (lambda out, p, prog: pass_losses(objective, out, p.batch, prog)), steps, optim,
            num_layers=model.num_layers, device=self.device, precision=self.profile.runtime.precision,
            checkpoint_dir=path / CHECKPOINTS, checkpoint_every=self.profile.runtime.checkpoint_every,
            progress=self.progress, desc=desc, compile=self.profile.runtime.compile,
            max_rows_per_device=self.profile.runtime.max_rows_per_device,
            activation_checkpointing=self.profile.runtime.activation_checkpointing,
            train_log=path / "train_log.csv",
        )
        atomic_write_json(path / "train_log.json", result.log)
        atomic_write(path / "model.safetensors", lambda tmp: save_weights(model, tmp))
        atomic_write(path / "encoder.safetensors", lambda tmp: save_weights(model.encoder, tmp))
        return result.log

    def _predict_chunks(self, model: RoadModel, data: TaskData,
                        split: Split) -> Iterator[tuple[int, dict[str, Tensor]]]:
        """Head outputs over ``split``, ``PREDICT_CHUNK`` rows at a time: ``(first row, {head output: rows})``.

        Under torchrun every rank runs its share of each chunk and gets the whole chunk back (see
        :func:`road_repro.train.loop.predict`), so every rank must consume the chunks.
        """
        for lo in range(0, len(split), PREDICT_CHUNK):
            rows = torch.arange(lo, min(lo + PREDICT_CHUNK, len(split)))
            if data.per_batch:  # windows sorted by length, padded per batch, back in row order
                yield lo, predict_length_sorted(model, data, split, rows, self.profile.finetune.eval_batch_size,
                                                self.device, self.profile.runtime.precision)
                continue
            inputs = data.batch(split, rows, targets=False)
            yield lo, predict(model, inputs, data.task_type, self.profile.finetune.eval_batch_size, self.device,
                              self.profile.runtime.precision)

    def _predict(self, model: RoadModel, data: TaskData, split: Split) -> dict[str, Tensor]:
        """Head outputs over every row of ``split``, concatenated (dev sets; training sets stream, see
        :meth:`soft_targets`)."""
        chunks: dict[str, list[Tensor]] = {}
        for _, out in self._predict_chunks(model, data, split):
            for key, value in out.items():
                chunks.setdefault(key, []).append(value)
        return {k: torch.cat(v) for k, v in chunks.items()}

    @property
    def per_batch(self) -> bool:
        """Span windows padded per batch with the masked span objective (``features.span_padding: batch``)."""
        return self.profile.features.span_padding == "batch"

    def _score(self, data: TaskData, logits: dict[str, Tensor], path: Path) -> dict[str, Any]:
        metrics, saved = data.score(data.dev, logits)
        for name, obj in saved.items():
            atomic_write_json(path / f"{name}.json", obj)
        return metrics

    def _load_finished(self, run: Run, model_key: str, data: TaskData) -> RoadModel:
        model = self._new_model(model_key, {data.task_type: head_kind(data.task_type)})
        load_weights(model, run.path / "model.safetensors")
        return model

    # -- stages ---------------------------------------------------------------------------------------------

    def warm_start(self, model_key: str) -> Run | None:
        """Smoke scale: train a tiny preset's encoder once on disjoint synthetic streams (see WarmStartConfig).

        Phase 1 trains span QA alone on ``dataset``; phase 2 (``mixture_steps`` > 0) takes one pass of every
        ``mixture`` stream per step, one head per task type. Span batches drop their all-padding columns
        (the one-fact stream fills a third of ``max_seq_length``), which halves the cost of a step. The run
        config holds a fingerprint of every stream's examples and the preset's shape, so a changed generator or
        preset means a new warm start (and, through its run id, new runs downstream).
        """
        cfg = self.model_config(model_key)
        ws = cfg.warm_start
        if ws is None:
            return None
        memo = self.__dict__.setdefault("_warm_starts", {})  # model key -> config (hashing every example is slow)
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
                "stage": "warm_start", "model": to_dict(cfg), "features": to_dict(self.profile.features),
                "precision": self.profile.runtime.precision, "shape": TINY_PRESETS.get(cfg.preset or ""),
                "data": {name: config_hash([repr(e) for e in self.examples(s)]) for name, s in streams.items()}}
        config = memo[model_key]

        def run_phase(model: RoadModel, step_source, steps: int, lr: float, checkpoints: Path, desc: str):
            optim = replace(self.profile.finetune, lr=lr, batch_size=ws.batch_size, layerwise_lr_decay=1.0)
            objective = Objective(mask_padding=self.per_batch)
            return train(
                model, step_source, lambda out, p, prog: pass_losses(objective, out, p.batch, prog), steps, optim,
                num_layers=model.num_layers, device=self.device, precision=self.profile.runtime.precision,
                checkpoint_dir=checkpoints, checkpoint_every=self.profile.runtime.checkpoint_every,
                progress=self.progress, desc=desc, compile=self.profile.runtime.compile,
                max_rows_per_device=self.profile.runtime.max_rows_per_device,
                activation_checkpointing=self.profile.runtime.activation_checkpointing,
                train_log=checkpoints.parent.parent / f"train_log_{checkpoints.name}.csv",  # one per phase
            ).log

        def make(path: Path) -> dict[str, Any]:
            set_seed(0)
            data = {name: TaskData(name, get_dataset(s.dataset).task, self._split(s, model_key), None,
                                   self.profile.features) for name, s in streams.items()}
            batches = {name: EpochBatches(len(d.train), ws.batch_size, seed=i) for i, (name, d) in enumerate(data.items())}

            def passes(names) -> Callable[[int], list[Pass]]:
                return lambda step: [Pass(data[n].task_type, n, _drop_padding(data[n].batch(data[n].train, batches[n](step))))
                                     for n in names]

            model = build_model(cfg, len(self.tokenizer(model_key)), {"mrc": "span"})
            metrics: dict[str, Any] = {"steps": ws.steps}
            log = run_phase(model, passes([ws.dataset]), ws.steps, ws.lr, path / CHECKPOINTS / "phase1",
                            f"warm start {model_key}")
            metrics["final_loss"] = log[-1]["total"]
            if mixture:
                heads = {d.task_type: head_kind(d.task_type) for n, d in data.items() if n in mixture}
                mixed = build_model(cfg, len(self.tokenizer(model_key)), {"mrc": "span", **heads})
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

        return self.store.run("warm_start", config, make)  # a run seen before returns at once

    def _warm_start_id(self, model_key: str, init: Run | None) -> str | None:
        """The warm-start stage a model starts from when no earlier stage (``init``) provides its encoder."""
        ws = self.warm_start(model_key) if init is None else None
        return ws.run_id if ws else None

    def finetune(
        self, task: str, model_key: str, seed: int, objective: Objective = Objective(),
        teachers: tuple[Run, ...] = (), init: Run | None = None, epochs: float | None = None,
        teacher_model: str | None = None, hidden: HiddenKDSpec | None = None, augment: AugmentSpec | None = None,
    ) -> Run:
        """Finetune (and, with teachers, distil) one model on ``task`` from ``init``'s encoder or the pretrained one.

        ``teacher_model`` is the teachers' model key when it differs from ``model_key`` (cross-model KD).
        ``hidden``: hidden-state KD from the one teacher, added to the logits objective (blog 4.3); the teacher
        runs inside each step. ``augment``: negative questions added to the training split (paper Table 3).
        """
        if objective.distill is not None and not teachers:
            raise ConfigError(f"objective {objective.distill!r} needs teachers")
        if teachers and objective.distill is None and hidden is None:
            raise ConfigError("teachers given but neither a distill objective nor hidden-state KD")
        if hidden is not None and len(teachers) != 1:
            raise ConfigError(f"hidden-state KD needs exactly one teacher, got {len(teachers)}")
        if augment is not None and objective.distill is not None:
            raise ConfigError("negative-question augmentation with KD is not supported (soft targets cover the "
                              "original training features only)")
        optim = self.profile.finetune if epochs is None else replace(self.profile.finetune, epochs=epochs)
        config = {
            "stage": "finetune", **self._base_config(task, model_key, augment), "optim": to_dict(optim), "seed": seed,
            "objective": objective.settings(), "teachers": [t.run_id for t in teachers],
            "weighted_w": self.profile.distill.w if objective.distill == "weighted" else None,
            "init": init.run_id if init else None, "warm_start": self._warm_start_id(model_key, init),
        }
        if hidden is not None:
            config["hidden_kd"] = to_dict(hidden)
        if augment is not None:
            config["augment"] = {**to_dict(augment), "ner": resolve_ner(augment.ner, entity_pool(
                self.task_config(task).train.dataset))}

        def make(path: Path) -> dict[str, Any]:
            data = self.task(task, model_key, augment)
            if data.train is None:
                raise ConfigError(f"task {task!r} has no train split to finetune on")
            set_seed(seed)
            model = self._new_model(model_key, {data.task_type: head_kind(data.task_type)}, init)
            loss_objective = replace(objective, mask_padding=data.is_span and data.per_batch)
            extra = (self._teacher_targets(task, teacher_model or model_key, model_key, objective, teachers)
                     if objective.distill else {})
            loss_fn = None
            if hidden is not None:
                teacher = self._load_finished(teachers[0], teacher_model or model_key, self.task(task, teacher_model or model_key))
                loss_fn = make_hidden_kd_loss_fn(loss_objective, attach_hidden_kd(model, teacher, hidden.last_layer_only),
                                                 teacher, hidden.weight)
            batches = training_batches(data, optim.batch_size, seed)
            total = optim.steps or math.ceil(optim.epochs * batches.steps_per_epoch)
            log = self._train(
                model, lambda step: [Pass(data.task_type, task, data.batch(data.train, batches(step), extra))],
                loss_objective, total, optim, path,
                f"{task} seed {seed} {objective.distill or 'ce'}{' + hidden-state KD' if hidden else ''}", loss_fn,
            )
            metrics: dict[str, Any] = {"steps": total, "final_loss": log[-1]["total"],
                                       "attention": attention_kind(model.encoder)}
            if data.dev is not None:
                logits = self._predict(model, data, data.dev)
                atomic_write(path / "dev_logits.safetensors", lambda tmp: save_file(logits, str(tmp)))
                metrics.update(self._score(data, logits, path))
            return metrics

        return self.store.run("finetune", config, make, self._sources(task))

    def soft_targets(self, task: str, model_key: str, teacher: Run) -> Run:
        """Cache a teacher's logits on every training feature (generated once per teacher and dataset).

        Stored as ``SOFT_TARGET_DTYPE`` (float16: half the bytes of float32 at 2^-11 relative precision, see
        :mod:`road_repro.distill.cache`); the dtype is in the config (another dtype is another cache), the
        file's metadata and the metrics. Students read the file per batch through memory maps.

        Written as the teacher runs: each ``PREDICT_CHUNK``-row chunk of logits goes straight to its rows of
        the file (:func:`road_repro.distill.write_soft_targets`), so no process ever holds a whole teacher's
        logits. Under torchrun every rank runs its share of each chunk; only rank 0 writes the file.
        """
        data = self.task(task, model_key)
        dtype = dtype_name(SOFT_TARGET_DTYPE)
        config = {"stage": "soft_targets", "teacher": teacher.run_id, "train_fingerprint": data.train.fingerprint,
                  "dtype": dtype}

        def make(path: Path) -> dict[str, Any]:
            model = self._load_finished(teacher, model_key, data)
            chunks = self._predict_chunks(model, data, data.train)
            first = next(chunks, None)  # the first chunk's trailing shapes size the file
            shapes = {} if first is None else {k: (len(data.train), *v.shape[1:]) for k, v in first[1].items()}
            write_soft_targets(path / "soft_targets.safetensors", shapes,
                               {"teacher": teacher.run_id, "train_fingerprint": data.train.fingerprint,
                                "features": str(len(data.train))},
                               itertools.chain([] if first is None else [first], chunks), SOFT_TARGET_DTYPE)
            return {"features": len(data.train), "dtype": dtype}

        return self.store.run("soft_targets", config, make, self._sources(task))

    def _teacher_targets(self, task: str, teacher_model: str, student_model: str, objective: Objective,
                         teachers: tuple[Run, ...]) -> dict[str, TeacherTargets]:
        """Teacher logits per training feature, read per batch: mean of the teachers, or Weighted KD (Algorithm 2).

        One :class:`TeacherTargets` per batch key (``teacher_logits``, or ``teacher_start_logits`` and
        ``teacher_end_logits``, each weighted against its own gold positions); ``TaskData.batch`` indexes it
        with a batch's rows, so only those rows of the teachers' memory-mapped caches are ever read.
        """
        data = self.task(task, student_model)
        if teacher_model != student_model:
            self.check_same_tokenization(student_model, teacher_model)
            if self.task(task, teacher_model).train.fingerprint != data.train.fingerprint:
                raise ConfigError(f"teacher model {teacher_model!r} and student {student_model!r} give different "
                                  f"training features for {task!r}; per-feature soft targets need identical features")
        caches = [open_soft_targets(self.soft_targets(task, teacher_model, t).path / "soft_targets.safetensors",
                                    expect={"teacher": t.run_id, "train_fingerprint": data.train.fingerprint})
                  for t in teachers]
        gold = data.labels(data.train)
        mode = "weighted" if objective.distill == "weighted" else "mean"
        sides = ((("teacher_start_logits", "start_logits", "start_positions"),
                  ("teacher_end_logits", "end_logits", "end_positions")) if data.is_span
                 else (("teacher_logits", "logits", "labels"),))
        return {key: TeacherTargets(caches, name, mode, gold[target], self.profile.distill.w)
                for key, name, target in sides}

    def ensemble(self, task: str, model_key: str, teachers: tuple[Run, ...]) -> Run:
        """Score the ensemble that averages the members' dev logits (finetune runs, or ``predict`` runs for a
        task scored through another task's models, e.g. NewsQA through the SQuAD 2.0 models)."""
        config = {"stage": "ensemble", "teachers": [t.run_id for t in teachers], **self._base_config(task, model_key)}

        def make(path: Path) -> dict[str, Any]:
            logits = [load_file(str(t.path / "dev_logits.safetensors")) for t in teachers]
            mean = {k: torch.stack([l[k] for l in logits]).mean(0) for k in logits[0]}
            return self._score(self.task(task, model_key), mean, path)

        return self.store.run("ensemble", config, make, self._sources(task))

    def predict(self, run: Run, source_task: str, task: str, model_key: str) -> Run:
        """Score ``run`` (finetuned on ``source_task``) on ``task``'s dev set without training on it."""
        config = {"stage": "predict", "model_run": run.run_id, **self._base_config(task, model_key)}

        def make(path: Path) -> dict[str, Any]:
            source, target = self.task(source_task, model_key), self.task(task, model_key)
            if source.task_type != target.task_type:
                raise ConfigError(f"cannot predict {task!r} ({target.task_type}) with a {source.task_type} model")
            model = self._load_finished(run, model_key, source)
            logits = self._predict(model, target, target.dev)
            atomic_write(path / "dev_logits.safetensors", lambda tmp: save_file(logits, str(tmp)))
            return self._score(target, logits, path)

        return self.store.run("predict", config, make, self._sources(source_task, task))

    def mtl(self, model_key: str, mode: str, pass_step: int | None = None, kd: bool = False,
            steps_fraction: float = 1.0, seed: int | None = None) -> Run:
        """Multi-task pretraining on the profile's MTL datasets (ROaD or MT-DNN), optionally with KD; ``seed``
        (one of ``mtl.seeds``) instead of ``mtl.seed``."""
        m = self.profile.mtl if seed is None else replace(self.profile.mtl, seed=seed)
        if not 0 < steps_fraction <= 1:
            raise ConfigError(f"mtl steps_fraction={steps_fraction} must lie in (0, 1]")
        m = replace(m, optim=replace(m.optim, steps=max(1, round(m.optim.steps * steps_fraction))))
        if not m.datasets:
            raise ConfigError(f"profile {self.profile.name!r} lists no mtl.datasets")
        pass_step = (pass_step or m.pass_step) if mode == "road" else 1
        if m.optim.batch_size % pass_step:
            raise ConfigError(f"pass_step={pass_step} does not divide mtl.optim.batch_size={m.optim.batch_size}")
        names = sorted(m.datasets)
        data = {name: self.task(mtl_task(name), model_key) for name in names}
        teachers = ({name: self.finetune(mtl_task(name), model_key, m.seed, epochs=m.teacher_epochs) for name in names}
                    if kd else {})
        draws = m.draws if mode == "road" else "with_replacement"
        objective = Objective("kd", m.kd_temperature, m.kd_lam, self.profile.distill.t2_scale) if kd else Objective()
        objective = replace(objective, mask_padding=self.per_batch)
        config = {
            "stage": "mtl", "mode": mode, "pass_step": pass_step, "draws": draws, "kd": kd,
            "data": {n: to_dict(m.datasets[n]) for n in names},
            "fingerprints": {n: data[n].train.fingerprint for n in names},
            "model": to_dict(self.model_config(model_key)), "features": to_dict(self.profile.features),
            "optim": to_dict(m.optim), "seed": m.seed, "precision": self.profile.runtime.precision,
            "teachers": {n: t.run_id for n, t in teachers.items()}, "warm_start": self._warm_start_id(model_key, None),
            "kd_settings": {"temperature": m.kd_temperature, "lam": m.kd_lam, "t2_scale": objective.t2_scale} if kd else None,
        }

        def head(name: str) -> str:
            return data[name].task_type if mode == "road" else name  # task-shared vs per-dataset heads

        def make(path: Path) -> dict[str, Any]:
            set_seed(m.seed)
            heads = {head(n): head_kind(data[n].task_type) for n in names}
            model = self._new_model(model_key, heads)
            extra = {n: self._teacher_targets(mtl_task(n), model_key, model_key, objective, (t,))
                     for n, t in teachers.items()}
            sizes = {n: len(data[n].train) for n in names}
            sampler = (RoadSampler(sizes, m.optim.batch_size, pass_step, m.seed, draws) if mode == "road"
                       else MtdnnSampler(sizes, m.optim.batch_size, m.seed))

            def step_source(step: int) -> list[Pass]:
                return [Pass(head(d.dataset), d.dataset,
                             data[d.dataset].batch(data[d.dataset].train, d.indices, extra.get(d.dataset)))
                        for d in sampler(step)]

            log = self._train(model, step_source, objective, m.optim.steps, m.optim, path,
                              f"MTL {mode} pass_step {pass_step}{' + KD' if kd else ''}")
            counts: dict[str, int] = {}
            for step in range(m.optim.steps):
                for d in sampler(step):
                    counts[d.dataset] = counts.get(d.dataset, 0) + 1
            return {"steps": m.optim.steps, "final_loss": log[-1]["total"], "passes_per_dataset": counts,
                    "attention": attention_kind(model.encoder)}

        return self.store.run("mtl", config, make, self._sources(*(mtl_task(n) for n in names)))
