"""The plan of a multi-table run, computed without training: ``--dry-run`` (and ``--plan``).

:func:`build_plan` walks every row of every table through a :class:`PlanningExperiment` -- an
:class:`~road_repro.experiments.stages.Experiment` whose run store is dry (each stage is recorded with its
run id, nothing is computed) -- and records per stage what it costs: optimizer steps, examples, and
GPU-hours from a throughput table (:mod:`road_repro.experiments.compute`). Tables are planned in the
order given; a stage an earlier table needs is *shared*, one already finished on disk is *cached*, the
rest are *new*. Soft-target stages (a teacher's logits, computed inside a KD run) are planned too.

``offline=True`` (``--dry-run``) never downloads nor asks the hub: a model whose tokenizer or config is
not on disk, or a dataset split only the hub serves, gets a *planned* identity -- its data fingerprint is
``planned:<hash of dataset, split, limit, tokenizer name, feature settings>`` instead of the hash of the
tokenized data -- so the stages that read it get planned run ids and are reported as new, with a note
saying what will be fetched at run time. Their example counts come from the dataset registry
(``DatasetSpec.examples``, the paper's sizes, capped by ``limit``; span QA windows estimated from
``DatasetSpec.context_tokens``). Where models and data are on disk (smoke; mini with a data directory)
the run ids are the real ones (data fingerprints need no tokenizing), so *cached* is right; span-QA windows
are read from the feature store where a split is built, else counted by tokenizing it (or a sample) in memory.
Configuration problems still stop it: the profile's settings (range checks when it is loaded), the
tables against the profile, and every model and split that is on disk (loaded and validated, as by the
preflight). ``offline=False`` (``--plan``, run after the full preflight) plans with everything loaded.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from road_repro.config import (
    AugmentSpec, ModelConfig, ProfileConfig, SplitConfig, TableSpec, load_profile, load_table_spec, to_dict,
)
from road_repro.data.features import qa_windows
from road_repro.data.registry import check_request, data_source, get_dataset
from road_repro.errors import ConfigError, ConfigProblems, RoadError
from road_repro.experiments.compute import (
    PAPER_GPUS,
    EncoderShape,
    StageMemory,
    Throughput,
    Tokens,
    Work,
    examples_processed,
    finetune_steps,
    gpu_hours,
    load_throughput,
    row_tokens,
    shape_from_config,
    shape_from_name,
    stage_memory,
    window_tokens,
    windows_per_example,
    work,
)
from road_repro.experiments.context import mtl_task
from road_repro.experiments.preflight import (
    Needs,
    PreflightError,
    data_problems,
    device_problems,
    model_problems,
    table_needs,
    table_problems,
)
from road_repro.experiments.rows import TableRunner
from road_repro.experiments.runs import PlannedStage, Run, config_hash
from road_repro.experiments.session import SharedExperiments, resolve_profile
from road_repro.experiments.stages import Experiment
from road_repro.experiments.tasks import Split
from road_repro.io import atomic_write_json
from road_repro.models.encoder import TINY_PRESETS, load_model_config, load_tokenizer
from road_repro.train.memory import USABLE_FRACTION, GiB, Shape, gpu_bytes, shape_of

#: Prefix of a planned data fingerprint (data or tokenizer not on disk: the real one is known at run time).
PLANNED = "planned:"
#: Span-QA examples tokenized in memory to count a split's windows (a larger split: an even sample of this many).
WINDOW_SAMPLE = 2000


class PlannedExamples(list):
    """The examples of a split a dry run does not load (only the hub serves it): an empty list."""


def _no_features() -> Any:
    raise ConfigError("a dry run does not tokenize: this split is planned (its data or tokenizer is not on disk)")


class PlannedSplit(Split):
    """A split that is not tokenized now (data or tokenizer not on disk): examples (maybe none) and a planned
    fingerprint; asking for its features is a :class:`ConfigError`."""

    def __init__(self, examples: list, fingerprint: str):
        super().__init__(examples, fingerprint, _no_features)


class PlannedTokenizer:
    """Stands in for a tokenizer that is not on disk (a dry run never tokenizes with it)."""

    pad_token_id = 0

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class Count:
    """A split's size: examples, rows (windows for span QA, else examples), and whether it is an estimate."""

    examples: int
    rows: int
    estimated: bool


@dataclass
class StageInfo:
    """What one planned stage does and costs (see :mod:`road_repro.experiments.compute` for the work)."""

    kind: str
    run_id: str
    what: str
    model: str
    steps: int | None        # optimizer steps (None: forward passes only)
    train_examples: int      # rows of the training data it reads (windows for span QA; MTL: all datasets)
    examples_trained: int    # examples its optimizer steps see (MTL: steps x batch size)
    eval_examples: int       # dev rows it scores
    forward_examples: int    # rows run forward only (dev, soft targets, predictions, an in-step teacher)
    work: Work
    planned: bool            # its id rests on a planned fingerprint (somewhere upstream)
    estimated: bool          # its counts come from documented sizes, not loaded data
    memory: StageMemory | None = None  # per-GPU rows, micro-batches and peak memory (None: no model runs)
    tokens: Tokens = Tokens()  # real and padded tokens it runs (trained and forward only)


def _arguments(method: Callable, self: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """``method``'s arguments by name, defaults filled in (so overrides follow its signature)."""
    bound = inspect.signature(method).bind(self, *args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _strings(obj: Any) -> Iterator[str]:
    """Every string inside a nested run config."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _strings(value)


class PlanningExperiment(Experiment):
    """An :class:`Experiment` that plans: a dry run store, offline stand-ins, and a :class:`StageInfo` per stage.

    Its stage methods are the real ones (so run ids are computed exactly as a run computes them); each
    override only records what the stage costs, and for KD plans the soft-target stages the run would
    compute inside it. With ``offline`` the tokenizer, examples and split methods return planned stand-ins
    for what is not on disk (see the module docstring) instead of asking the hub.
    """

    def __init__(self, profile: ProfileConfig, runs_dir: Path, offline: bool = True):
        super().__init__(profile, runs_dir, progress=False, dry=True)
        self.offline = offline
        self.notes: dict[str, str] = {}
        self.stages: dict[str, StageInfo] = {}
        self._runs: dict[str, Run] = {}
        self._local_models: dict[str, bool] = {}
        self._model_configs: dict[str, Any] = {}
        self._shapes: dict[str, EncoderShape] = {}
        self._window_counts: dict[str, tuple[int, bool]] = {}
        self._window_lengths: dict[str, float] = {}  # mean real tokens of a tokenized split's windows

    # -- what is on disk ------------------------------------------------------------------------------------

    def model_local(self, model_key: str) -> bool:
        """Whether the model's tokenizer (and, for a checkpoint, its config) load without the hub (always
        true when not offline). A model that does not is noted; a tokenizer that loads but is unusable
        (not a fast one) is a :class:`ConfigError` as in a run."""
        if not self.offline:
            return True
        if model_key not in self._local_models:
            cfg = self.model_config(model_key)
            try:
                self._tokenizers[model_key] = load_tokenizer(cfg, local_files_only=True)
                if cfg.preset is None:
                    self._model_configs[model_key] = load_model_config(cfg, local_files_only=True)
                self._local_models[model_key] = True
            except ConfigError as exc:
                if exc.__cause__ is None:  # it loaded, and is unusable: a real problem
                    raise
                name = cfg.name_or_path or cfg.tokenizer
                self.notes[f"models.{model_key}"] = (f"models.{model_key}: {name} is not on this machine (not downloaded "
                                                     "yet, or not a hub id): fetched and checked at run time")
                self._local_models[model_key] = False
        return self._local_models[model_key]

    def data_local(self, cfg: SplitConfig) -> bool:
        """Whether a split is generated or read from local files (always true when not offline); one only the
        hub serves is noted. A split with no source at all counts as local, so loading it raises the error."""
        if not self.offline:
            return True
        data_dir = Path(self.profile.data_dir) if self.profile.data_dir else None
        source = data_source(cfg.dataset, cfg.split, data_dir)
        if not source.startswith("hub:"):
            return True
        spec = get_dataset(cfg.dataset)
        size = spec.examples.get(cfg.split)
        counted = (f"counted as {min(size, cfg.limit or size):,} examples from the registry" if size
                   else f"no documented size: counted as {cfg.limit:,} (its limit)" if cfg.limit
                   else "no documented size: not counted")
        if spec.task == "mrc" and (size or cfg.limit):
            f = self.profile.features
            factor = windows_per_example(spec.context_tokens, f.max_seq_length, f.doc_stride, f.max_query_length)
            counted += f" x {factor:.2f} windows each (estimated from {spec.context_tokens or '?'} context tokens)"
        self.notes[f"data.{cfg.dataset}.{cfg.split}.{cfg.limit}"] = (
            f"data: {cfg.dataset}:{cfg.split}" + (f"[:{cfg.limit}]" if cfg.limit else "")
            + f" comes from the hub ({source.removeprefix('hub:')}) at run time: not loaded now, {counted}")
        return False

    def planned_fingerprint(self, cfg: SplitConfig, model_key: str) -> str:
        """The identity of a split that is not tokenized now: dataset, split, limit, tokenizer name, features."""
        model = self.model_config(model_key)
        return PLANNED + config_hash({
            "dataset": cfg.dataset, "split": cfg.split, "limit": cfg.limit,
            "tokenizer": model.tokenizer or model.name_or_path or "minilm",
            "features": to_dict(self.profile.features),
        })[:16]

    # -- offline stand-ins ----------------------------------------------------------------------------------

    def tokenizer(self, model_key: str):
        if self.offline and not self.model_local(model_key):
            return PlannedTokenizer()
        return super().tokenizer(model_key)

    def examples(self, cfg: SplitConfig) -> list:
        if self.offline and not self.data_local(cfg):
            check_request(get_dataset(cfg.dataset), cfg.split, cfg.limit)
            return PlannedExamples()
        return super().examples(cfg)

    def _split(self, cfg: SplitConfig, model_key: str, examples: list | None = None, **kwargs: Any) -> Split:
        if self.offline and not (self.data_local(cfg) and self.model_local(model_key)):
            examples = self.examples(cfg) if examples is None else examples
            return PlannedSplit(list(examples), self.planned_fingerprint(cfg, model_key))
        return super()._split(cfg, model_key, examples, **kwargs)

    # -- sizes ----------------------------------------------------------------------------------------------

    def count(self, task: str, model_key: str, which: str, augment: AugmentSpec | None = None) -> Count:
        """The size of ``task``'s ``which`` split (``train`` or ``dev``) as ``model_key`` tokenizes it, without
        building its features: the stored rows where the feature store has them; else examples (loaded, or
        the registry's documented size) times windows per example for span QA -- counted by tokenizing the
        split in memory (up to :data:`WINDOW_SAMPLE` examples; a larger split through an even sample of that
        many), or from ``DatasetSpec.context_tokens`` when the data or tokenizer is not on disk."""
        data = self.task(task, model_key, augment)
        split = data.train if which == "train" else data.dev
        if split is None:
            return Count(0, 0, False)
        if split.known_rows is not None:
            return Count(len(split.examples), split.known_rows, False)
        cfg = getattr(self.task_config(task), which)
        spec = get_dataset(cfg.dataset)
        if split.examples:
            n = len(split.examples)
        else:  # not loaded: the documented size
            size = spec.examples.get(cfg.split) or cfg.limit or 0
            n = min(size, cfg.limit) if cfg.limit else size
            if augment is not None:  # an upper bound: as if every question were answerable
                n += round(augment.negative_questions * n)
        if not data.is_span:
            return Count(n, n, not split.examples)
        f = self.profile.features
        if split.examples and self.model_local(model_key):
            rows, exact = self._windows(split.fingerprint, split.examples, model_key)
            return Count(n, rows, not exact)
        factor = windows_per_example(spec.context_tokens, f.max_seq_length, f.doc_stride, f.max_query_length)
        return Count(n, round(n * factor), True)

    def _windows(self, key: str, examples: list, model_key: str) -> tuple[int, bool]:
        """Span-QA windows of loaded ``examples`` (a split, ``key`` its fingerprint), counted by tokenizing them
        (or an even sample of them) in memory: (rows, exact); their mean real length is kept too."""
        if key not in self._window_counts:
            step = max(1, -(-len(examples) // WINDOW_SAMPLE))
            sample = examples[::step]
            f = self.profile.features
            lengths = qa_windows(sample, self.tokenizer(model_key), f.max_seq_length, f.doc_stride,
                                 f.max_query_length, offsets=False)["lengths"]
            windows = len(lengths)
            self._window_lengths[key] = float(lengths.mean())
            self._window_counts[key] = (round(windows * len(examples) / len(sample)), step == 1)
        return self._window_counts[key]

    def tokens(self, task_type: str) -> int:
        """Padded tokens per row: ``max_seq_length`` for span-QA windows, ``max_pair_length`` for pairs."""
        f = self.profile.features
        return f.max_seq_length if task_type == "mrc" else f.max_pair_length

    def row(self, task: str, model_key: str, which: str, batching: str, augment: AugmentSpec | None = None) -> Tokens:
        """Real and padded tokens of one row of ``task``'s ``which`` split as the stage will batch it
        (``batching``: grouped, sorted or shuffled, see :func:`road_repro.experiments.compute.row_tokens`). Span
        windows: their mean length where the split was tokenized for counting, else estimated from the dataset's
        documented context length; pairs: ``max_pair_length`` (an upper bound)."""
        f = self.profile.features
        data = self.task(task, model_key, augment)
        if not data.is_span:
            return Tokens(float(f.max_pair_length), float(f.max_pair_length))
        split = data.train if which == "train" else data.dev
        real = self._window_lengths.get(split.fingerprint) if split is not None else None
        if real is None:
            spec = get_dataset(getattr(self.task_config(task), which).dataset)
            real = window_tokens(spec.context_tokens, f.max_seq_length, f.doc_stride, f.max_query_length)
        return row_tokens(real, f.max_seq_length, data.per_batch, batching)

    def stream_row(self, cfg: SplitConfig, model_key: str) -> Tokens:
        """Real and padded tokens of a row of a warm-start stream, by :meth:`row`'s rule: span windows at their
        mean length (tokenized here where data and tokenizer are on disk, else estimated from the dataset's
        documented context length) padded to the longest of their shuffled batch -- the warm start drops
        all-padding columns whatever ``features.span_padding`` says; pairs at ``max_pair_length``."""
        f = self.profile.features
        spec = get_dataset(cfg.dataset)
        if spec.task != "mrc":
            return Tokens(float(f.max_pair_length), float(f.max_pair_length))
        examples = self.examples(cfg)
        real = None
        if examples and self.model_local(model_key):
            key = f"warm_start:{model_key}:{cfg.dataset}:{cfg.split}:{cfg.limit}"
            self._windows(key, examples, model_key)
            real = self._window_lengths[key]
        if real is None:
            real = window_tokens(spec.context_tokens, f.max_seq_length, f.doc_stride, f.max_query_length)
        return row_tokens(real, f.max_seq_length, True, "shuffled")

    def shape(self, model_key: str) -> EncoderShape:
        """The encoder's shape for compute: the preset, the checkpoint's config where it is on disk, else the
        documented shape of its name (:data:`road_repro.experiments.compute.KNOWN_SHAPES`); ``num_layers`` kept."""
        if model_key not in self._shapes:
            cfg: ModelConfig = self.model_config(model_key)
            if cfg.preset is not None and cfg.preset in TINY_PRESETS:
                p = TINY_PRESETS[cfg.preset]
                shape = EncoderShape(p["num_hidden_layers"], p["hidden_size"], p["intermediate_size"])
            else:
                config = self._model_configs.get(model_key)
                if config is None and self.model_local(model_key) and cfg.name_or_path:
                    try:
                        config = load_model_config(cfg, local_files_only=self.offline)
                    except ConfigError:
                        config = None
                shape = shape_from_config(config) if config is not None else None
                if shape is None:
                    shape, exact = shape_from_name(cfg.name_or_path or "")
                    if not exact:
                        self.notes[f"shape.{model_key}"] = (
                            f"models.{model_key}: the size of {cfg.name_or_path} is not known here: costed as "
                            f"{shape.layers} layers x {shape.hidden}")
            self._shapes[model_key] = shape.first(cfg.num_layers)
        return self._shapes[model_key]

    def memory_shape(self, model_key: str) -> Shape:
        """The encoder's :class:`~road_repro.train.memory.Shape` for the memory estimate: from its config where
        loaded, else :meth:`shape` with heads of width 64, BERT's vocabulary, ALBERT's shared layers and
        128-wide embeddings when the name says ``albert``, and eager attention for DeBERTa (no SDPA)."""
        shape = self.shape(model_key)
        cfg = self.model_config(model_key)
        name = (cfg.name_or_path or "").lower()
        attention = "eager" if "deberta" in name else "fused"
        config = self._model_configs.get(model_key)
        if config is not None:
            return replace(shape_of(config), layers=shape.layers, attention=attention)
        heads = TINY_PRESETS[cfg.preset]["num_attention_heads"] if cfg.preset in TINY_PRESETS else shape.hidden // 64
        albert = "albert" in name
        return Shape(shape.layers, shape.hidden, shape.intermediate, max(1, heads), embedding=128 if albert else 0,
                     shared_layers=albert, attention=attention)

    def memory(self, model_key: str, rows: int, seq_len: int, train: bool = True,
               teacher: str | None = None) -> StageMemory:
        """:func:`~road_repro.experiments.compute.stage_memory` of a stage on ``runtime.nproc`` x ``runtime.gpu``:
        ``rows`` global rows per pass when training, per GPU and batch when forward only."""
        r = self.profile.runtime
        return stage_memory(self.memory_shape(model_key), rows, seq_len, nproc=r.nproc, gpu=r.gpu,
                            precision=r.precision, max_rows_per_device=r.max_rows_per_device,
                            checkpointing=r.activation_checkpointing, train=train,
                            teacher=self.memory_shape(teacher) if teacher else None)

    # -- recording ------------------------------------------------------------------------------------------

    def _record(self, run: Run, kind: str, what: str, model_key: str, steps: int | None, train: int, trained: int,
                evaluated: int, forward: int, cost: Work, estimated: bool, tokens: Tokens = Tokens(),
                memory: StageMemory | None = None) -> None:
        self._runs[run.run_id] = run
        if run.run_id in self.stages:
            return
        planned = any(s.startswith(PLANNED) or (s in self.stages and self.stages[s].planned)
                      for s in _strings(run.config))
        self.stages[run.run_id] = StageInfo(kind, run.run_id, what, model_key, steps, train, trained, evaluated,
                                            forward, cost, planned, estimated, memory, tokens)

    def warm_start(self, model_key: str) -> Run | None:
        run = super().warm_start(model_key)
        if run is None or run.run_id in self.stages:
            return run
        ws = self.model_config(model_key).warm_start
        shape = self.shape(model_key)
        mixture = ws.mixture if ws.mixture_steps else {}
        streams = {ws.dataset: SplitConfig(ws.dataset, ws.split, ws.limit), **mixture}
        examples = {name: ws.batch_size * (ws.mixture_steps if name in mixture else ws.steps) for name in streams}
        row = {name: self.stream_row(s, model_key) for name, s in streams.items()}
        cost = sum((work(examples[n], row[n].padded, shape) for n in streams), Work())
        rows = sum(len(self.examples(s)) for s in streams.values())
        trained = ws.batch_size * (ws.steps + ws.mixture_steps * len(mixture))
        self._record(run, "warm_start", f"warm start of {model_key}: {ws.steps} + {ws.mixture_steps} mixture steps",
                     model_key, ws.steps + ws.mixture_steps, rows, trained, 0, 0, cost, False,
                     sum((row[n] * examples[n] for n in streams), Tokens()),
                     memory=self.memory(model_key, ws.batch_size, max(self.tokens(get_dataset(s.dataset).task)
                                                                     for s in streams.values())))
        return run

    def finetune(self, *args: Any, **kwargs: Any) -> Run:
        run = super().finetune(*args, **kwargs)
        a = _arguments(Experiment.finetune, self, args, kwargs)
        task, key, objective, teachers = a["task"], a["model_key"], a["objective"], a["teachers"]
        teacher_model = a["teacher_model"] or key
        if run.run_id not in self.stages:
            data = self.task(task, key, a["augment"])
            train, dev = self.count(task, key, "train", a["augment"]), self.count(task, key, "dev")
            optim = run.config["optim"]
            steps = finetune_steps(train.rows, optim["batch_size"], optim["epochs"], optim.get("steps"))
            trained = examples_processed(train.rows, optim["batch_size"], steps)
            shape = self.shape(key)
            row = self.row(task, key, "train", "grouped", a["augment"])
            dev_row = self.row(task, key, "dev", "sorted") if dev.rows else Tokens()
            cost = work(trained, row.padded, shape) + work(dev.rows, dev_row.padded, shape, forward_only=True)
            tokens = row * trained + dev_row * dev.rows
            forward = dev.rows
            if a["hidden"] is not None:  # the teacher runs inside every step
                cost += work(trained, row.padded, self.shape(teacher_model), forward_only=True)
                tokens += row * trained
                forward += trained
            what = f"{task} on {key}, seed {a['seed']}"
            if a["init"] is not None:
                what += f", from {a['init'].run_id}"
            if objective.distill:
                what += f", {objective.distill} from {len(teachers)} teacher{'s' * (len(teachers) != 1)}"
            if a["hidden"] is not None:
                what += ", hidden-state KD"
            if a["augment"] is not None:
                what += ", negative questions"
            if a["epochs"] is not None:
                what += f", {a['epochs']:g} epochs"
            self._record(run, "finetune", what, key, steps, train.rows, trained, dev.rows, forward, cost,
                         train.estimated or dev.estimated, tokens,
                         memory=self.memory(key, optim["batch_size"], self.tokens(data.task_type),
                                            teacher=teacher_model if a["hidden"] else None))
        if objective.distill is not None:  # the run caches each teacher's logits first (stage_kinds.soft_targets)
            for teacher in teachers:
                self.soft_targets(task, teacher_model, teacher)
        return run

    def soft_targets(self, *args: Any, **kwargs: Any) -> Run:
        run = super().soft_targets(*args, **kwargs)
        a = _arguments(Experiment.soft_targets, self, args, kwargs)
        task, key = a["task"], a["model_key"]
        if run.run_id not in self.stages:
            rows = self.count(task, key, "train")
            row = self.row(task, key, "train", "sorted")
            cost = work(rows.rows, row.padded, self.shape(key), forward_only=True)
            self._record(run, "soft_targets", f"{task} train through teacher {a['teacher'].run_id}", key, None,
                         rows.rows, 0, 0, rows.rows, cost, rows.estimated, row * rows.rows,
                         memory=self.memory(key, self.profile.finetune.eval_batch_size,
                                            self.tokens(self.task(task, key).task_type), train=False))
        return run

    def ensemble(self, *args: Any, **kwargs: Any) -> Run:
        run = super().ensemble(*args, **kwargs)
        a = _arguments(Experiment.ensemble, self, args, kwargs)
        if run.run_id not in self.stages:
            dev = self.count(a["task"], a["model_key"], "dev")
            self._record(run, "ensemble", f"{a['task']} dev: mean of {len(a['teachers'])} members' logits",
                         a["model_key"], None, 0, 0, dev.rows, 0, Work(), dev.estimated)
        return run

    def predict(self, *args: Any, **kwargs: Any) -> Run:
        run = super().predict(*args, **kwargs)
        a = _arguments(Experiment.predict, self, args, kwargs)
        task, key = a["task"], a["model_key"]
        if run.run_id not in self.stages:
            dev = self.count(task, key, "dev")
            row = self.row(task, key, "dev", "sorted")
            cost = work(dev.rows, row.padded, self.shape(key), forward_only=True)
            self._record(run, "predict", f"{task} dev with the {a['source_task']} model {a['run'].run_id}", key,
                         None, 0, 0, dev.rows, dev.rows, cost, dev.estimated, row * dev.rows,
                         memory=self.memory(key, self.profile.finetune.eval_batch_size,
                                            self.tokens(self.task(task, key).task_type), train=False))
        return run

    def mtl(self, *args: Any, **kwargs: Any) -> Run:
        run = super().mtl(*args, **kwargs)
        a = _arguments(Experiment.mtl, self, args, kwargs)
        key, config = a["model_key"], run.config
        if run.run_id not in self.stages:
            names = sorted(config["data"])
            steps, batch = int(config["optim"]["steps"]), int(config["optim"]["batch_size"])
            counts = {n: self.count(mtl_task(n), key, "train") for n in names}
            rows = {n: self.row(mtl_task(n), key, "train", "shuffled") for n in names}  # sampled batches
            # ROaD draws datasets uniformly per pass; MT-DNN in proportion to their minibatches
            weights = ({n: 1.0 for n in names} if config["mode"] == "road"
                       else {n: max(1.0, -(-counts[n].rows // batch)) for n in names})
            mean_row = sum((rows[n] * weights[n] for n in names), Tokens()) * (1.0 / sum(weights.values()))
            cost = work(steps * batch, mean_row.padded, self.shape(key))
            what = (f"{config['mode']} MTL on {key}, pass_step {config['pass_step']}"
                    + (", KD during MTL" if config["kd"] else "") + f", {len(names)} datasets")
            pass_rows = batch // int(config["pass_step"]) if config["mode"] == "road" else batch
            self._record(run, "mtl", what, key, steps, sum(c.rows for c in counts.values()), steps * batch, 0, 0,
                         cost, any(c.estimated for c in counts.values()), mean_row * (steps * batch),
                         memory=self.memory(key, pass_rows, max(self.tokens(self.task(mtl_task(n), key).task_type)
                                                                for n in names)))
        if config.get("kd"):  # the run caches each dataset teacher's logits first
            for name, teacher_id in sorted((config.get("teachers") or {}).items()):
                if teacher_id in self._runs:
                    self.soft_targets(mtl_task(name), key, self._runs[teacher_id])
        return run


def local_preflight(spec: TableSpec, exp: PlanningExperiment) -> None:
    """The preflight of a dry run: the table against the profile, and every model and split that is on disk
    (loaded and validated); what only the hub has is noted instead, and device problems are notes (the plan
    may be made on another machine than the one that trains)."""
    needs = table_needs(spec, exp.profile)
    problems = table_problems(spec, exp.profile)
    for line in device_problems(exp.profile):
        exp.notes[f"device.{line}"] = f"{line} (on this machine; checked again where the tables run)"
    known = {k for k in needs.models if k in exp.profile.models}
    local = {k for k in known if exp.model_local(k)}
    on_disk = Needs(models=local, tasks=needs.tasks,
                    cross_model={(s, t) for s, t in needs.cross_model if s in local and t in local})
    problems += model_problems(exp, on_disk, lambda cfg: load_model_config(cfg, local_files_only=True))
    problems += data_problems(exp, needs)
    if problems:
        raise PreflightError(list(dict.fromkeys(problems)))


def _gpu_hours(infos: dict[str, StageInfo], ids: Sequence[str], throughput: Throughput) -> float:
    return sum(gpu_hours(infos[i].work, throughput) for i in ids)


def build_plan(tables: Sequence[str], profile: str = "smoke", seeds: Sequence[int] | None = None,
               overrides: Sequence[str] = (), output_dir: str | Path = "results", runs_dir: str | Path | None = None,
               offline: bool = True, experiments: SharedExperiments | None = None) -> dict[str, Any]:
    """Plan ``tables`` in order and write ``<output_dir>/<profile>/plan.json`` (see the module docstring).

    The tables share their :class:`PlanningExperiment` (``experiments``: the preflight's, whose loads it reuses),
    so each split is loaded once; its dry run store lists each table's stages under the table's name.

    Every configuration problem of every table is collected first and raised together as one
    :class:`PreflightError` (one line each, naming the tables it concerns). The throughput is measured
    (``<output_dir>/bench/gpu.csv`` or ``gpu_mfu.csv``, from ``make bench`` on a GPU) or the paper's default.
    """
    runs = Path(runs_dir) if runs_dir else Path(output_dir) / "runs"
    throughput = load_throughput(Path(output_dir) / "bench")
    found: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    infos: dict[str, StageInfo] = {}
    planned: dict[str, list[PlannedStage]] = {}
    if experiments is None:
        experiments = SharedExperiments(runs, progress=False,
                                        make=lambda prof, root, _: PlanningExperiment(prof, root, offline))
    for table in tables:
        exp: PlanningExperiment | None = None
        try:
            spec = load_table_spec(table)
            exp = experiments.get(resolve_profile(profile, overrides, spec, seeds))
            exp.store.context = table
            if offline:
                local_preflight(spec, exp)
            runner = TableRunner(exp, spec)
            for i, row in enumerate(spec.rows, start=1):
                runner.row(i, row)
        except ConfigProblems as exc:
            for problem in exc.problems:
                found.setdefault(problem, []).append(table)
            continue
        except RoadError as exc:
            found.setdefault(str(exc), []).append(table)
            continue
        finally:
            if exp is not None:
                notes.update(exp.notes)
        planned[table] = [st for st in exp.store.plan if st.context == table]
        for run_id, info in exp.stages.items():
            infos.setdefault(run_id, info)
    if found:
        def where(names: list[str]) -> str:
            return "" if len(tables) == 1 else ("all tables: " if len(names) == len(tables) else f"{', '.join(names)}: ")
        raise PreflightError([where(names) + problem for problem, names in found.items()])

    report: dict[str, Any] = {
        "profile": load_profile(profile, overrides).name, "mode": "dry-run" if offline else "plan",
        "started": time.time(), "throughput": {**asdict(throughput), "unit": throughput.unit}, "tables": {},
        "span_padding": load_profile(profile, overrides).features.span_padding,
    }
    first: dict[str, str] = {}   # run id -> the first table that needs it
    needed_by: dict[str, list[str]] = {}
    cached: set[str] = set()
    for table, stages in planned.items():
        ids = [st.run_id for st in stages]
        shared = [i for i in ids if i in first]
        done = [st.run_id for st in stages if st.run_id not in first and st.cached]
        new = [i for i in ids if i not in first and i not in done]
        report["tables"][table] = {
            "stages": ids, "shared": len(shared), "cached": len(done), "new": len(new),
            "kinds": dict(Counter(st.kind for st in stages)),
            "new_kinds": dict(Counter(infos[i].kind for i in new)),
            "gpu_hours": _sig(_gpu_hours(infos, ids, throughput)),
            "gpu_hours_new": _sig(_gpu_hours(infos, new, throughput)),
            "padding_share": _sig(_tokens(infos, ids).padding_share),
        }
        cached.update(done)
        for run_id in ids:
            first.setdefault(run_id, table)
            needed_by.setdefault(run_id, []).append(table)
    union = list(first)
    report["order"] = list(planned)  # plan.json's keys are sorted: the tables in the order planned
    report["run_ids"] = union
    report["kinds"] = dict(Counter(infos[i].kind for i in union))
    report["cached_ids"] = [i for i in union if i in cached]
    report["gpu_hours"] = {"total": _sig(_gpu_hours(infos, union, throughput)),
                           "to_compute": _sig(_gpu_hours(infos, [i for i in union if i not in cached], throughput))}
    every = _tokens(infos, union)
    report["tokens"] = {"real": _sig(every.real), "padded": _sig(every.padded), "padding_share": _sig(every.padding_share)}
    report["stages"] = {}
    for run_id in union:
        info = infos[run_id]
        report["stages"][run_id] = {
            "kind": info.kind, "what": info.what, "model": info.model, "tables": needed_by[run_id],
            "shared": len(needed_by[run_id]) > 1, "status": "cached" if run_id in cached else "new",
            "planned_id": info.planned, "steps": info.steps, "train_examples": info.train_examples,
            "examples_trained": info.examples_trained, "eval_examples": info.eval_examples,
            "forward_examples": info.forward_examples, "estimated_counts": info.estimated,
            "gpu_hours": _sig(gpu_hours(info.work, throughput)),
            "memory": _memory_fields(info.memory),
            "real_tokens": _sig(info.tokens.real), "padded_tokens": _sig(info.tokens.padded),
            "padding_share": _sig(info.tokens.padding_share),
        }
    report["memory"] = _memory_report(load_profile(profile, overrides), report["stages"])
    order = ("models.", "shape.", "data.", "device.")  # what will be downloaded first, then the rest
    report["notes"] = [notes[k] for k in sorted(notes, key=lambda k: next(
        (i for i, prefix in enumerate(order) if k.startswith(prefix)), len(order)))]
    atomic_write_json(Path(output_dir) / report["profile"] / "plan.json", report)
    return report


def _memory_fields(memory: StageMemory | None) -> dict[str, Any] | None:
    """A stage's per-GPU memory for plan.json (GiB to 3 decimals)."""
    if memory is None:
        return None
    return {"rows_per_gpu": memory.rows_per_gpu, "micro_batches": memory.micro_batches,
            "micro_rows": memory.micro_rows, "seq_len": memory.seq_len,
            "est_gib": round(memory.estimate.gib, 3), "fits": memory.fits}


def _memory_report(profile: ProfileConfig, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The GPU setting the memory was sized for and one warning per stage whose estimate exceeds it."""
    r = profile.runtime
    usable = gpu_bytes(r.gpu) * USABLE_FRACTION / GiB
    warnings = [f"{run_id} ({s['kind']} on {s['model']}): an estimated {s['memory']['est_gib']:.1f} GiB per GPU "
                f"({s['memory']['micro_rows']} rows of {s['memory']['seq_len']} tokens) exceeds {usable:.1f} GiB "
                f"({USABLE_FRACTION:.0%} of a {r.gpu}): lower runtime.max_rows_per_device, turn on "
                f"runtime.activation_checkpointing, or use more or larger GPUs"
                for run_id, s in stages.items() if s["memory"] is not None and not s["memory"]["fits"]]
    return {"gpu": r.gpu, "nproc": r.nproc, "precision": r.precision,
            "max_rows_per_device": r.max_rows_per_device or "auto",
            "activation_checkpointing": r.activation_checkpointing, "usable_gib": round(usable, 2),
            "warnings": warnings}


def _tokens(infos: dict[str, StageInfo], ids: Sequence[str]) -> Tokens:
    """Real and padded tokens of stages ``ids`` (each once)."""
    return sum((infos[i].tokens for i in dict.fromkeys(ids)), Tokens())


def _sig(value: float) -> float:
    """``value`` to 6 significant digits (GPU-hours in plan.json: smoke stages take millionths of an hour)."""
    return float(f"{value:.6g}")


def _hours(value: float) -> str:
    return f"{value:,.1f}" if value >= 0.05 or value == 0 else f"{value:.2g}"


def _memory_lines(plan: dict[str, Any]) -> list[str]:
    """Per-GPU rows, micro-batches and estimated peak memory, one line per distinct (kind, model, shape of
    the work) with how many stages share it, then a warning per stage that would not fit."""
    mem = plan.get("memory")
    if not mem:
        return []
    groups: Counter = Counter()
    for s in plan["stages"].values():
        m = s.get("memory")
        if m is not None:
            groups[(s["kind"], s["model"], m["seq_len"], m["rows_per_gpu"], m["micro_batches"], m["micro_rows"],
                    m["est_gib"], m["fits"])] += 1
    lines = [f"memory per GPU on {mem['nproc']} x {mem['gpu']} ({mem['usable_gib']:.1f} GiB usable; precision "
             f"{mem['precision']}, max_rows_per_device {mem['max_rows_per_device']}, activation checkpointing "
             f"{'on' if mem['activation_checkpointing'] else 'off'}):"]
    for (kind, model, seq, rows, micro, micro_rows, gib, fits), n in sorted(groups.items()):
        if kind in ("soft_targets", "predict"):
            work_ = f"{rows} rows/GPU per forward batch"
        else:
            work_ = (f"{rows} rows/GPU per pass = {micro} micro-batch{'es' * (micro != 1)} of "
                     f"{'<= ' * (micro > 1)}{micro_rows}")
        lines.append(f"  {kind:<12} {model:<14} {n:>4} stage{'s' * (n != 1)}: {work_} x {seq} tokens: "
                     f"est. {gib:.1f} GiB{'' if fits else ' (DOES NOT FIT)'}")
    lines += [f"WARNING: {w}" for w in mem["warnings"]]
    return lines


def _tokens_rule(span_padding: str) -> str:
    """The header line saying how tokens are counted, and what the padding share leaves out."""
    windows = ("at their real length times the measured padding of their batches (features.span_padding=batch)"
               if span_padding == "batch" else f"at max_seq_length (features.span_padding={span_padding})")
    return (f"tokens (approximate): span-QA windows {windows};\n  sentence pairs at max_pair_length, real and "
            "computed alike -- the loop pads them to their batch's longest, but their lengths are known only once "
            "tokenized: an upper bound on their cost, and no part of the padding share")


def _padding(ids: Sequence[str], info: dict[str, Any]) -> str:
    """`` pad 12.3%``: the padding share of stages ``ids``' computed tokens (plans written before it: empty)."""
    real = sum(info[i].get("real_tokens", 0.0) for i in ids)
    padded = sum(info[i].get("padded_tokens", 0.0) for i in ids)
    return f"  pad {1 - real / padded:6.1%}" if padded else ""


def plan_text(plan: dict[str, Any], stages: bool = False) -> str:
    """The plan for the console: per table its stages (new, shared, cached) and GPU-hours, per kind the new
    ones; totals; the throughput used; notes. ``stages``: also one line per stage, under the first table
    that needs it (``*`` marks a planned id)."""
    unit = plan.get("throughput", {}).get("unit", "GPU-h")
    info = plan.get("stages", {})
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(plan["kinds"].items()))
    lines = [f"plan at the {plan['profile']} scale" + (" (dry run: nothing trained or downloaded)"
                                                      if plan.get("mode") == "dry-run" else "")
             + f": {len(plan['run_ids'])} stages in all ({kinds}), {len(plan.get('cached_ids', []))} already finished"]
    if "throughput" in plan:
        lines.append(f"GPU-hours from {plan['throughput']['source']}")
    if "tokens" in plan:
        lines.append(_tokens_rule(plan.get("span_padding", "?")))
    order = plan.get("order") or list(plan["tables"])
    for k, table in enumerate(order, start=1):
        t = plan["tables"][table]
        line = (f"  [{k}/{len(plan['tables'])}] {table}: {len(t['stages'])} stages: {t['new']} new, "
                f"{t['shared']} shared with earlier tables, {t['cached']} cached")
        if "gpu_hours" in t:
            line += f"; {_hours(t['gpu_hours'])} {unit} (its new stages: {_hours(t['gpu_hours_new'])})"
        lines.append(line)
        if not info:
            continue
        new = [i for i in t["stages"] if info[i]["tables"][0] == table and info[i]["status"] == "new"]
        by_kind: dict[str, list[str]] = {}
        for run_id in new:
            by_kind.setdefault(info[run_id]["kind"], []).append(run_id)
        for kind, ids in sorted(by_kind.items()):
            steps = sum(info[i]["steps"] or 0 for i in ids)
            hours = sum(info[i]["gpu_hours"] for i in ids)
            lines.append(f"        new {kind:<12} {len(ids):>4} stages {steps:>12,} steps {_hours(hours):>10} {unit}"
                         + _padding(ids, info))
        if stages:
            for run_id in new:
                s = info[run_id]
                steps = f"{s['steps']:,} steps" if s["steps"] is not None else "forward only"
                lines.append(f"          {run_id + ('*' if s['planned_id'] else ''):<31} {steps:>14}  train {s['train_examples']:>9,}"
                             f"  eval {s['eval_examples']:>7,}  {_hours(s['gpu_hours']):>8} {unit}"
                             f"{_padding([run_id], info)}  {s['what']}")
    if "gpu_hours" in plan:
        total, todo = plan["gpu_hours"]["total"], plan["gpu_hours"]["to_compute"]
        lines.append(f"total: {_hours(total)} {unit} for every stage once; {_hours(todo)} {unit} still to compute "
                     f"(about {_hours(todo / PAPER_GPUS)} h on {PAPER_GPUS} GPUs at perfect scaling)")
    if "tokens" in plan:
        lines.append(f"tokens: {plan['tokens']['real']:,.4g} real, {plan['tokens']['padded']:,.4g} computed: padding "
                     f"{plan['tokens']['padding_share']:.1%} (features.span_padding="
                     f"{plan.get('span_padding', '?')}; per kind and stage: 'pad')")
    lines += _memory_lines(plan)
    n_planned = sum(bool(s.get("planned_id")) for s in info.values())
    if n_planned:
        lines.append(f"{n_planned} stages have planned ids (marked * by --stages): their data or tokenizer is not on this "
                     "machine, so their real ids, and whether they are cached, are known at run time")
    if plan.get("notes"):
        lines.append(f"notes ({len(plan['notes'])}):")
        lines += [f"  - {note}" for note in plan["notes"]]
    return "\n".join(lines)
