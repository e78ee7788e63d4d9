"""Benchmark 1: finetuning throughput and peak memory of our loop against the Hugging Face ``Trainer``.

Same model weights (one :class:`RoadModel`, copied), same data, batch size, sequence length, optimizer values
and precision, on two tasks:

* ``squad_qa`` -- SQuAD-style span QA: windows of ``max_seq_length`` tokens with a doc stride
  (:func:`road_repro.data.features.qa_features`), span head;
* ``mnli_pairs`` -- MNLI-style sentence pairs truncated to ``max_seq_length``, 3-class head.

Five configurations per task:

* ``ours_stage`` -- what the finetune stage itself runs, not a bench variant: the split in a feature store
  (:class:`road_repro.data.feature_store.FeatureStore`), batches from ``TaskData.batch`` in the stage's order
  (:func:`road_repro.experiments.context.training_batches`: length-grouped), every row padded per batch, span
  windows with the masked span objective (``features.span_padding: batch``, the default);
* ``ours_padded`` -- :func:`road_repro.train.loop.train` on fixed-length rows with :class:`EpochBatches`
  (what the finetune stage runs for QA with ``features.span_padding: window``);
* ``ours_dynamic`` -- our loop with length-grouped batches (:class:`road_repro.data.batching.LengthGroupedBatches`)
  padded per batch: :func:`pad_collate` for pairs, :func:`benchmarks.common.trim_padding` for QA windows;
* ``trainer_default`` -- ``transformers.Trainer`` as the HF example scripts run it by default
  (``run_glue.py`` / ``run_qa.py``: a ``datasets.Dataset`` padded to ``max_seq_length``,
  ``default_data_collator``, random sampling);
* ``trainer_dynamic`` -- the Trainer with its own dynamic padding (``DataCollatorWithPadding``) and
  length grouping (``train_sampling_strategy="group_by_length"``, formerly ``group_by_length=True``).

The Trainer trains the same RoadModel behind :class:`TrainerModel` (keyword inputs and labels in, the same
loss as our loop out) with its default optimizer implementation. Goals (reported, not asserted, in
``benchmarks/run_all.py``'s headline): ``ours_stage`` >= 1.0x the best Trainer configuration and >= 1.5x the
default one, on both tasks.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import pandas as pd
import torch
import transformers
from torch import Tensor, nn
from transformers import (
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from benchmarks.common import (
    BenchSettings,
    LengthGroupedBatches,
    Measurement,
    PeakMemory,
    autocast_dtype,
    batch_stats,
    benchmark_process,
    build,
    context_columns,
    fresh,
    interleaved,
    measure_loop,
    optim_config,
    pad_pairs,
    pair_examples,
    parser,
    print_table,
    qa_examples,
    qa_training_features,
    settings_from_args,
    summarize,
    summary_row,
    sync,
    tokenizer_for,
    trim_padding,
    truncate_rows,
    unpadded_rows,
    write_csv,
)
from road_repro.config import FeatureConfig
from road_repro.data.feature_store import FeatureSpec, FeatureStore, StoredFeatures
from road_repro.data.features import pad_collate, pair_features
from road_repro.errors import DataError
from road_repro.experiments.context import training_batches
from road_repro.experiments.tasks import Split, TaskData
from road_repro.models.model import RoadModel
from road_repro.train.loop import EpochBatches, Pass
from road_repro.train.objectives import Objective, pass_losses

NAME = "finetune_vs_trainer"
CONFIGS = ("ours_stage", "ours_padded", "ours_dynamic", "trainer_default", "trainer_dynamic")
COLUMNS = ("task", "config", "examples_per_s", "tokens_per_s", "pad_fraction", "step_ms", "peak_mem_mb",
           "vs_trainer_default", "vs_trainer_best")


@dataclass(frozen=True)
class Sizes:
    """Sizes of one benchmark run. The timed steps are exactly one epoch of the (truncated) rows, so that our
    loop and the Trainer, each length-grouping with its own random generator, time the same rows."""

    pair_batch_size: int
    pair_examples: int
    qa_batch_size: int
    qa_examples: int
    warmup: int
    pair_length: int = 128  # run_glue.py's max_seq_length
    qa_length: int = 384  # run_qa.py's max_seq_length
    doc_stride: int = 128
    max_query_length: int = 64


FULL = Sizes(pair_batch_size=32, pair_examples=768, qa_batch_size=16, qa_examples=200, warmup=2)
QUICK = Sizes(pair_batch_size=4, pair_examples=12, qa_batch_size=4, qa_examples=12, warmup=1, qa_length=128,
              doc_stride=32)


@dataclass
class TaskInputs:
    """One task's training rows in both shapes: fixed-length tensors and unpadded per-row dicts."""

    task: str
    head: str
    head_kind: str | int
    data: str
    batch_size: int
    padded: dict[str, Tensor]
    rows: list[dict[str, Any]]
    keys: tuple[str, ...]

    @property
    def lengths(self) -> list[int]:
        return [len(row["input_ids"]) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def pair_inputs(settings: BenchSettings, sizes: Sizes) -> TaskInputs:
    """MNLI-style pairs: unpadded rows for dynamic padding and the same rows padded to ``pair_length``."""
    tok = tokenizer_for(settings)
    examples, data = pair_examples(settings, sizes.pair_examples)
    feats = truncate_rows(pair_features(examples, tok, max_seq_length=sizes.pair_length), sizes.pair_batch_size)
    keys = tuple(k for k in ("input_ids", "token_type_ids", "labels") if k in feats)
    rows = [dict(zip(keys, values, strict=True)) for values in zip(*(feats[k] for k in keys), strict=True)]
    padded = pad_pairs(feats, tok, sizes.pair_length)
    return TaskInputs("mnli_pairs", "nli", 3, data, sizes.pair_batch_size, padded, rows, keys)


def qa_inputs(settings: BenchSettings, sizes: Sizes) -> TaskInputs:
    """SQuAD-style windows at ``qa_length`` with a doc stride, and the same windows without their padding."""
    padded, data = qa_training_features(settings, sizes.qa_examples, sizes.qa_length, sizes.doc_stride,
                                        sizes.qa_batch_size, sizes.max_query_length)
    row_keys = tuple(k for k in padded if k != "attention_mask")
    return TaskInputs("squad_qa", "mrc", "span", data, sizes.qa_batch_size, padded, unpadded_rows(padded, row_keys),
                      row_keys)


def loss_fn(out: dict[str, Tensor], p: Pass, progress: float) -> dict[str, Tensor]:
    """Plain cross-entropy for either head (what the finetune stage trains without teachers)."""
    return pass_losses(Objective(), out, p.batch, progress)


# -- our loop ------------------------------------------------------------------------------------------------


def padded_source(inputs: TaskInputs, batch_size: int, seed: int) -> Callable[[int], list[Pass]]:
    """Fixed-length minibatches in shuffled epochs (the finetune stage's order)."""
    batches = EpochBatches(len(inputs), batch_size, seed)
    return lambda step: [Pass(inputs.head, inputs.task, {k: v[batches(step)] for k, v in inputs.padded.items()})]


def dynamic_source(inputs: TaskInputs, batch_size: int, seed: int, pad_token_id: int) -> Callable[[int], list[Pass]]:
    """Length-grouped minibatches padded to their longest row (pairs: pad_collate; QA windows: trimmed)."""
    batches = LengthGroupedBatches(inputs.lengths, batch_size, seed)
    if inputs.head_kind == "span":
        return lambda step: [Pass(inputs.head, inputs.task,
                                  trim_padding({k: v[batches(step)] for k, v in inputs.padded.items()}))]
    return lambda step: [Pass(inputs.head, inputs.task,
                              pad_collate([inputs.rows[i] for i in batches(step).tolist()], pad_token_id))]


def stage_task(inputs: TaskInputs, settings: BenchSettings, sizes: Sizes, root: Path) -> TaskData:
    """The task as the finetune stage holds it (default ``FeatureConfig``, so ``span_padding: batch``): the same
    examples tokenized into a feature store under ``root``, cut to the benchmark's rows."""
    if inputs.head_kind == "span":
        examples, _ = qa_examples(settings, sizes.qa_examples)
        spec = FeatureSpec("span", sizes.qa_length, sizes.doc_stride, sizes.max_query_length)
    else:
        examples, _ = pair_examples(settings, sizes.pair_examples)
        spec = FeatureSpec("pair", sizes.pair_length)
    stored = FeatureStore(root).get(examples, tokenizer_for(settings), spec, inputs.task)
    if len(stored) < len(inputs):
        raise DataError(f"{inputs.task}: the feature store holds {len(stored)} rows, the benchmark {len(inputs)}")
    cut = StoredFeatures(stored.dataset.select(range(len(inputs))).flatten_indices(), stored.manifest, stored.path)
    features = FeatureConfig(max_seq_length=sizes.qa_length, doc_stride=sizes.doc_stride,
                             max_query_length=sizes.max_query_length, max_pair_length=sizes.pair_length)
    return TaskData(inputs.task, inputs.head, Split(examples, stored.fingerprint, lambda: cut), None, features)


def stage_run(data: TaskData, batch_size: int, seed: int) -> tuple[Callable[[int], list[Pass]], Callable]:
    """The finetune stage's step source and loss for ``data`` (as ``Experiment.finetune`` builds them)."""
    batches = training_batches(data, batch_size, seed)
    objective = Objective(mask_padding=data.is_span and data.per_batch)
    return (lambda step: [Pass(data.task_type, data.name, data.batch(data.train, batches(step)))],
            lambda out, p, progress: pass_losses(objective, out, p.batch, progress))


# -- the Trainer ---------------------------------------------------------------------------------------------


class TrainerModel(nn.Module):
    """A RoadModel as the Trainer expects a model: keyword inputs and labels in, ``{"loss", ...}`` out.

    The loss is our loop's (:func:`pass_losses`), so both sides optimise exactly the same objective.
    """

    def __init__(self, model: RoadModel, head: str):
        super().__init__()
        self.model, self.head = model, head

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
    ) -> dict[str, Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         head=self.head)
        targets = {"labels": labels, "start_positions": start_positions, "end_positions": end_positions}
        batch = {k: v for k, v in targets.items() if v is not None}
        return {"loss": pass_losses(Objective(), out, batch, 0.0)["total"], **out}


class StepClock(TrainerCallback):
    """Stamps the end of every optimizer step (= the start of the next): ``marks[global_step]``."""

    def __init__(self, device: torch.device):
        self.device, self.marks = device, {}

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (the Trainer's callback signature)
        sync(self.device)
        self.marks[state.global_step] = time.perf_counter()


class CountingCollator:
    """Wraps a data collator and records each batch's sizes, in the order the Trainer's steps consume them."""

    def __init__(self, collate: Callable[[list[dict]], dict[str, Tensor]]):
        self.collate, self.stats = collate, []

    def __call__(self, rows: list[dict]) -> dict[str, Tensor]:
        batch = self.collate(rows)
        self.stats.append(batch_stats(batch))
        return batch


def trainer_args(
    out_dir: str, settings: BenchSettings, total: int, batch_size: int, grouped: bool
) -> TrainingArguments:
    """TrainingArguments with our optimizer values; everything about batching left at the scripts' defaults."""
    optim = optim_config(batch_size)
    dtype = autocast_dtype(settings)
    return TrainingArguments(
        output_dir=out_dir, max_steps=total, per_device_train_batch_size=batch_size,
        learning_rate=optim.lr, weight_decay=optim.weight_decay, adam_beta1=optim.adam_beta1,
        adam_beta2=optim.adam_beta2, adam_epsilon=optim.adam_eps, max_grad_norm=optim.max_grad_norm,
        warmup_steps=optim.warmup_ratio, lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length" if grouped else "random",
        bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, use_cpu=settings.torch_device.type == "cpu",
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        seed=settings.seed,
    )


def measure_trainer(
    model: RoadModel, inputs: TaskInputs, settings: BenchSettings, warmup: int, total: int, dynamic: bool
) -> Measurement:
    """Train with ``transformers.Trainer`` (default or dynamic-padding configuration) and time it."""
    tok = tokenizer_for(settings)
    if dynamic:
        dataset = datasets.Dataset.from_list(inputs.rows)
        collator = CountingCollator(DataCollatorWithPadding(tok))
    else:
        dataset = datasets.Dataset.from_dict({k: v.tolist() for k, v in inputs.padded.items()})
        collator = CountingCollator(default_data_collator)
    clock = StepClock(settings.torch_device)
    with tempfile.TemporaryDirectory() as out_dir:
        args = trainer_args(out_dir, settings, total, inputs.batch_size, dynamic)
        trainer = Trainer(
            model=TrainerModel(model, inputs.head), args=args, train_dataset=dataset, data_collator=collator,
            processing_class=tok, callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics dict
        with PeakMemory(settings.torch_device) as mem:
            trainer.train()
    return summarize(clock.marks, dict(enumerate(collator.stats)), warmup, total, mem.mb, mem.kind)


# -- the benchmark -------------------------------------------------------------------------------------------


def bench_task(inputs: TaskInputs, settings: BenchSettings, sizes: Sizes) -> pd.DataFrame:
    """All five configurations of one task, interleaved and repeated; one row per configuration."""
    template = build(settings, {inputs.head: inputs.head_kind}, settings.seed)
    bs, seed, warmup = inputs.batch_size, settings.seed, sizes.warmup
    total = warmup + len(inputs) // bs  # one epoch timed
    pad_id = tokenizer_for(settings).pad_token_id
    with tempfile.TemporaryDirectory() as root:
        stage = stage_task(inputs, settings, sizes, Path(root))
        return _bench_task(inputs, settings, template, stage, total, warmup, pad_id)


def _bench_task(inputs: TaskInputs, settings: BenchSettings, template: RoadModel, stage: TaskData, total: int,
                warmup: int, pad_id: int) -> pd.DataFrame:
    bs, seed = inputs.batch_size, settings.seed
    runs = {
        "ours_stage": lambda: measure_loop(fresh(template), *stage_run(stage, bs, seed), total, warmup, bs, settings),
        "ours_padded": lambda: measure_loop(fresh(template), padded_source(inputs, bs, seed), loss_fn, total, warmup,
                                            bs, settings),
        "ours_dynamic": lambda: measure_loop(fresh(template), dynamic_source(inputs, bs, seed, pad_id), loss_fn,
                                             total, warmup, bs, settings),
        "trainer_default": lambda: measure_trainer(fresh(template), inputs, settings, warmup, total, dynamic=False),
        "trainer_dynamic": lambda: measure_trainer(fresh(template), inputs, settings, warmup, total, dynamic=True),
    }
    results = interleaved(runs, settings.n_repeats)
    frame = pd.DataFrame([{"task": inputs.task, "config": name, "batch_size": bs, **summary_row(results[name])}
                          for name in CONFIGS])
    return add_ratios(frame).assign(**context_columns(settings, inputs.data))


def add_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row's examples/s over the default Trainer's and over the best Trainer configuration's (per task)."""
    def per_task(group: pd.DataFrame) -> pd.DataFrame:
        rate = group.set_index("config")["examples_per_s"]
        best = rate[[c for c in rate.index if c.startswith("trainer")]].max()
        return group.assign(vs_trainer_default=group["examples_per_s"] / rate["trainer_default"],
                            vs_trainer_best=group["examples_per_s"] / best)

    return pd.concat([per_task(g) for _, g in frame.groupby("task", sort=False)], ignore_index=True)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence transformers' warnings and datasets' progress bars for the block, then restore both."""
    verbosity, bars_on = transformers.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars_on:
            datasets.enable_progress_bars()


def run(settings: BenchSettings) -> pd.DataFrame:
    """Both tasks; returns the tidy frame (one row per task and configuration)."""
    sizes = QUICK if settings.quick else FULL
    with benchmark_process(settings), quiet_libraries():
        frames = [bench_task(make(settings, sizes), settings, sizes) for make in (pair_inputs, qa_inputs)]
    return pd.concat(frames, ignore_index=True)


def report(frame: pd.DataFrame, settings: BenchSettings) -> None:
    """Write the CSV and print the table."""
    write_csv(frame, settings.out, NAME)
    print_table(f"Finetuning throughput: our loop vs transformers.Trainer ({frame['machine'].iloc[0]})", frame, COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from_args(parser(__doc__.splitlines()[0]).parse_args(argv))
    report(run(settings), settings)


if __name__ == "__main__":
    main()
