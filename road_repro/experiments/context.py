"""The context every stage kind runs in (see :mod:`road_repro.experiments.stage_kinds`): the profile, the run
store, the device, tokenizers, loaded and tokenized data, and the model, training, prediction and scoring
helpers the stages share; plus the small functions they share (seeding, batching, length-sorted prediction).

Run configs include data fingerprints, so changed data or tokenization means a new run.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from road_repro.config import (
    AugmentSpec, HiddenKDSpec, ModelConfig, OptimConfig, ProfileConfig, SplitConfig, TaskConfig, to_dict,
)
from road_repro.data.augmentation import augment_negative_questions, entity_pool
from road_repro.data.batching import LengthGroupedBatches, length_sorted_groups
from road_repro.data.feature_store import (
    FeatureSpec, FeatureStore, examples_digest, features_fingerprint, tokenizer_identity,
)
from road_repro.data.registry import data_source, get_dataset, load_examples
from road_repro.errors import ConfigError
from road_repro.experiments.runs import CHECKPOINTS, Run, RunStore, config_hash, runtime_record
from road_repro.experiments.tasks import Split, TaskData, head_kind
from road_repro.io import atomic_write, atomic_write_json
from road_repro.models.encoder import load_tokenizer, tokenization_difference
from road_repro.models.model import RoadModel, build_model, load_weights, save_weights
from road_repro.train.loop import EpochBatches, predict, resolve_device, train
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


class Context(ABC):
    """What the stages share at one scale: the profile, the run store, loaded data, model and train helpers.

    The stage kinds that other stages call (warm start, finetune, soft targets) are abstract here: a stage
    calls them through the object, so an override (the planner's) sees them. ``Experiment``
    (:mod:`road_repro.experiments.stages`) implements every kind by its module in ``stage_kinds``.
    """

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
               path: Path, desc: str, loss_fn=None,
               in_step_teacher: RoadModel | None = None) -> list[dict[str, float]]:
        """Train with ``objective`` (or a ready ``loss_fn``, e.g. hidden-state KD, whose teacher runs in the step:
        ``in_step_teacher``, counted in the automatic rows per GPU) and save the weights."""
        result = train(
            model, step_source, loss_fn or (lambda out, p, prog: pass_losses(objective, out, p.batch, prog)), steps, optim,
            num_layers=model.num_layers, device=self.device, precision=self.profile.runtime.precision,
            checkpoint_dir=path / CHECKPOINTS, checkpoint_every=self.profile.runtime.checkpoint_every,
            progress=self.progress, desc=desc, compile=self.profile.runtime.compile,
            max_rows_per_device=self.profile.runtime.max_rows_per_device,
            activation_checkpointing=self.profile.runtime.activation_checkpointing,
            train_log=path / "train_log.csv", in_step_teacher=in_step_teacher,
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

    def _warm_start_id(self, model_key: str, init: Run | None) -> str | None:
        """The warm-start stage a model starts from when no earlier stage (``init``) provides its encoder."""
        ws = self.warm_start(model_key) if init is None else None
        return ws.run_id if ws else None

    # -- stages (one module each under road_repro.experiments.stage_kinds) -----------------------------------

    @abstractmethod
    def warm_start(self, model_key: str) -> Run | None:
        """The warm-start run of ``model_key``, or None when it has none."""

    @abstractmethod
    def finetune(self, task: str, model_key: str, seed: int, objective: Objective = Objective(),
                 teachers: tuple[Run, ...] = (), init: Run | None = None, epochs: float | None = None,
                 teacher_model: str | None = None, hidden: HiddenKDSpec | None = None,
                 augment: AugmentSpec | None = None) -> Run:
        """A finetune run of ``model_key`` on ``task``."""

    @abstractmethod
    def soft_targets(self, task: str, model_key: str, teacher: Run) -> Run:
        """The run caching ``teacher``'s logits on ``task``'s training features."""
