"""Shared pieces of the benchmarks: settings and CLI, data, step timing, peak memory, batching, output.

How a training run is timed, for our loop and for the ``Trainer`` alike: the clock is read (after a CUDA
synchronise) at the boundary between optimizer steps, and the rate is taken over the steps after ``warmup``
(which absorb lazy initialisation, allocator growth and the first, longest length-grouped batch). Every batch's
rows, real tokens and padded slots are recorded, so a run reports examples/s, real tokens/s and the share of
padding it computed on. Configurations are repeated in interleaved order, so that neighbours' load hits every
configuration alike, and the fastest run is reported with the median and slowest beside it.

Peak memory is what the training run adds: on CUDA ``torch.cuda.max_memory_allocated`` after a reset; on CPU
the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident size at the
start, after returning freed heap to the system (``malloc_trim``) so earlier runs' caches count against no one.
Where ``clear_refs`` cannot be written, ``ru_maxrss`` is used; it never goes down, so a run that peaks lower
than an earlier one reads 0 (the ``mem_kind`` column says which measure a row used).

:func:`trim_padding` gives fixed-length features dynamic padding for the bench's own variants; length-grouped
minibatches are the stage's own (:class:`road_repro.data.batching.LengthGroupedBatches`, re-exported here).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import functools
import gc
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import transformers
from rich.console import Console
from rich.table import Table
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from road_repro.config import REPO_ROOT, ModelConfig, OptimConfig
from road_repro.data.batching import LengthGroupedBatches  # noqa: F401 (the benchmarks' batch order)
from road_repro.data.features import qa_features
from road_repro.data.registry import load_examples
from road_repro.data.schema import ClassificationExample, QAExample
from road_repro.data.synthetic import synthetic_squad
from road_repro.data.synthetic_tasks import synthetic_nli
from road_repro.errors import ConfigError, DataError
from road_repro.io import atomic_write_csv
from road_repro.log import plain_table
from road_repro.models.encoder import TINY_PRESETS, load_tokenizer
from road_repro.models.model import HeadKinds, RoadModel, build_model
from road_repro.train.loop import MODEL_INPUTS, LossFn, Pass, StepSource, resolve_device, resolve_precision, train

#: Environment variable naming the real-data folder (as in the tests); else ``<repo>/../shared/data``.
SHARED_DATA_ENV = "ROAD_SHARED_DATA"
DATA_CHOICES = ("auto", "synthetic", "shared")
#: Encoder inputs whose second dimension is the sequence (trimmed together by :func:`trim_padding`).
SEQUENCE_KEYS = (
    "input_ids", "attention_mask", "token_type_ids", "offsets", "teacher_start_logits", "teacher_end_logits",
)


# -- settings ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    """What every benchmark is run with; ``quick`` shrinks every size to a seconds-long pipeline check."""

    out: Path = Path("results/bench")
    quick: bool = False
    device: str = "auto"
    model: str | None = None  # tiny | tiny-large | tiny-base | minilm | a HF id; None: tiny on CPU, minilm on CUDA
    data: str = "auto"  # auto: the shared real data when present, else synthetic
    repeats: int | None = None  # None: 1 with quick, 5 otherwise
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None: 1 on CPU (see bench_threads), torch's default on CUDA

    def __post_init__(self) -> None:
        if self.data not in DATA_CHOICES:
            raise ConfigError(f"bench setting data={self.data!r} is not one of {DATA_CHOICES}")
        if self.repeats is not None and self.repeats < 1:
            raise ConfigError(f"bench setting repeats={self.repeats} must be at least 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"bench setting threads={self.threads} must be at least 1")

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @property
    def n_repeats(self) -> int:
        return self.repeats if self.repeats is not None else (1 if self.quick else 5)

    @property
    def model_name(self) -> str:
        if self.model is not None:
            return self.model
        return "minilm" if self.torch_device.type == "cuda" else "tiny"

    @property
    def precision(self) -> str:
        """``auto``: bf16 (or fp16) autocast on CUDA, fp32 on CPU -- for our loop and the Trainer alike."""
        return "auto"

    def model_config(self) -> ModelConfig:
        """A tiny preset by its name, anything else as a Hugging Face name or path (``minilm`` = packaged)."""
        if self.model_name in TINY_PRESETS:
            return ModelConfig(preset=self.model_name)
        return ModelConfig(name_or_path=self.model_name)


def parser(description: str) -> argparse.ArgumentParser:
    """The command line every benchmark entry point shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a pipeline check in seconds")
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="folder for the CSVs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--model", default=None, help="tiny preset name or HF model (default: tiny on CPU, minilm on CUDA)")
    p.add_argument("--data", default="auto", choices=DATA_CHOICES, help="real shared data when present, or synthetic")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved repeats per configuration; the fastest is reported (default 5, 1 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 on CPU)")
    return p


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(out=args.out, quick=args.quick, device=args.device, model=args.model, data=args.data,
                         repeats=args.repeats, seed=args.seed, threads=args.threads)


def bench_threads(settings: BenchSettings) -> int:
    """torch's CPU thread count for the benchmarks: ``settings.threads``; else 1 on CPU, torch's default on CUDA.

    One thread on CPU because on a machine shared with other jobs, intra-op threads that outnumber the free
    cores spin against each other (a tiny model's step took 9x longer with 2 threads than with 1 on the 2-core
    machine of docs/performance.md while a neighbour ran); one thread keeps the ratios between configurations
    stable.
    """
    if settings.threads is not None:
        return settings.threads
    return 1 if settings.torch_device.type == "cpu" else torch.get_num_threads()


@contextlib.contextmanager
def benchmark_process(settings: BenchSettings) -> Iterator[None]:
    """Run the block with :func:`bench_threads` CPU threads and the objects alive now frozen out of the garbage
    collector (so the collections before each measurement scan only what the benchmark made: a full collection
    over the imported libraries took half a second); restore both afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(bench_threads(settings))
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        torch.set_num_threads(before)


def optim_config(batch_size: int) -> OptimConfig:
    """The paper's finetuning optimizer (Table 8 defaults) at ``batch_size``; the Trainer gets the same values."""
    return OptimConfig(batch_size=batch_size)


# -- environment ---------------------------------------------------------------------------------------------


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores"


def context_columns(settings: BenchSettings, data_source: str) -> dict[str, str]:
    """Columns every CSV row carries, so a number is never read without its machine, model and versions."""
    device = settings.torch_device
    return {
        "device": device.type,
        "machine": machine_name(device),
        "threads": str(bench_threads(settings)),
        "model": settings.model_name,
        "data": data_source,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a clock read means the work before it is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- data ----------------------------------------------------------------------------------------------------


def shared_data_dir() -> Path | None:
    """``$ROAD_SHARED_DATA`` or ``<repo>/../shared/data`` when it exists."""
    env = os.environ.get(SHARED_DATA_ENV)
    for candidate in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


def _data_dir(settings: BenchSettings) -> Path | None:
    """The real-data folder to read, or None for synthetic data; ``data=shared`` without one is an error."""
    if settings.data == "synthetic":
        return None
    found = shared_data_dir()
    if found is None and settings.data == "shared":
        raise ConfigError(
            f"bench setting data=shared but no real data was found (${SHARED_DATA_ENV} unset or missing, "
            f"and {REPO_ROOT.parent / 'shared' / 'data'} absent)"
        )
    return found


def pair_examples(settings: BenchSettings, n: int) -> tuple[list[ClassificationExample], str]:
    """``n`` MNLI-style pairs: the real MNLI train data when present, else the synthetic NLI task."""
    root = _data_dir(settings)
    if root is None:
        return synthetic_nli(n, settings.seed), "synthetic_nli"
    return load_examples("mnli", "train", data_dir=root, limit=n)[:n], "mnli train (shared data)"


def qa_examples(settings: BenchSettings, n: int) -> tuple[list[QAExample], str]:
    """``n`` SQuAD-2.0-style questions: the real SQuAD 2.0 train data when present, else synthetic ones."""
    root = _data_dir(settings)
    if root is None:
        return synthetic_squad(n, settings.seed), "synthetic_squad"
    return load_examples("squad_v2", "train", data_dir=root, limit=n)[:n], "squad_v2 train (shared data)"


def qa_training_features(
    settings: BenchSettings, n: int, length: int, doc_stride: int, batch_size: int, max_query_length: int = 64
) -> tuple[dict[str, Tensor], str]:
    """Training windows of ``n`` QA questions at ``length`` tokens with ``doc_stride`` (inputs and span labels
    only), cut to a multiple of ``batch_size`` rows; and the data's name."""
    examples, data = qa_examples(settings, n)
    feats = qa_features(examples, tokenizer_for(settings), max_seq_length=length, doc_stride=doc_stride,
                        max_query_length=max_query_length)
    keys = [k for k in (*MODEL_INPUTS, "start_positions", "end_positions") if k in feats]
    return truncate_rows({k: feats[k] for k in keys}, batch_size), data


def pad_pairs(features: Mapping[str, list], tokenizer: PreTrainedTokenizerBase, length: int) -> dict[str, Tensor]:
    """Unpadded pair features (from ``pair_features``) padded to exactly ``length``, as HF ``run_glue.py``'s
    default ``pad_to_max_length`` does; adds the attention mask, keeps ``labels``."""
    inputs = {k: v for k, v in features.items() if k != "labels"}
    padded = tokenizer.pad(inputs, padding="max_length", max_length=length, return_tensors="pt")
    return {**{k: v.long() for k, v in padded.items()}, "labels": torch.tensor(features["labels"])}


def truncate_rows(features: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Keep the first multiple of ``batch_size`` rows, so every minibatch of every configuration is full."""
    n = len(features["input_ids"])
    keep = n - n % batch_size
    if keep == 0:
        raise DataError(f"only {n} training rows, fewer than one batch of {batch_size}: raise the example count")
    return {k: v[:keep] for k, v in features.items()}


def unpadded_rows(features: Mapping[str, Tensor], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Per-row dicts from right-padded tensors: sequence keys cut to the row's attention length, others as ints."""
    lengths = features["attention_mask"].sum(1).tolist()
    rows = []
    for i, n in enumerate(lengths):
        rows.append({k: features[k][i, :n].tolist() if k in SEQUENCE_KEYS else features[k][i].item() for k in keys})
    return rows


def trim_padding(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Cut a right-padded batch after its longest row: the sequence tensors of :data:`SEQUENCE_KEYS` lose the
    columns that are padding in every row. Exact for an encoder with an attention mask (padding is masked out),
    so fixed-length features (e.g. QA windows at ``max_seq_length``) get dynamic padding for free."""
    mask = batch["attention_mask"]
    length = int(mask.sum(1).max())
    if bool(mask[:, length:].any()):
        raise DataError("trim_padding: the batch is not right-padded (attention mask has ones after the longest row)")
    return {k: v[:, :length].contiguous() if k in SEQUENCE_KEYS else v for k, v in batch.items()}


# -- models --------------------------------------------------------------------------------------------------


def tokenizer_for(settings: BenchSettings) -> PreTrainedTokenizerBase:
    """The benchmark model's tokenizer (loaded once per model name)."""
    return _tokenizer(settings.model_name)


@functools.lru_cache(maxsize=4)
def _tokenizer(model_name: str) -> PreTrainedTokenizerBase:
    return load_tokenizer(BenchSettings(model=model_name).model_config())


def build(settings: BenchSettings, heads: HeadKinds, seed: int) -> RoadModel:
    """A RoadModel of the benchmark's encoder with ``heads``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(settings.model_config(), len(tokenizer_for(settings)), heads)


# -- measuring -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStats:
    """Rows of a batch, its real (attended) tokens, and its padded slots (rows x columns)."""

    examples: int
    tokens: int
    slots: int

    def __add__(self, other: "BatchStats") -> "BatchStats":
        return BatchStats(self.examples + other.examples, self.tokens + other.tokens, self.slots + other.slots)


def batch_stats(batch: Mapping[str, Tensor]) -> BatchStats:
    mask = batch["attention_mask"]
    return BatchStats(int(mask.shape[0]), int(mask.sum()), int(mask.numel()))


@dataclass(frozen=True)
class Measurement:
    """One timed training run over the steps after warmup."""

    examples_per_s: float
    tokens_per_s: float  # real tokens (padding excluded)
    pad_fraction: float  # share of the computed token slots that were padding
    step_ms: float
    peak_mem_mb: float
    mem_kind: str
    steps: int


def summarize(
    marks: Mapping[int, float],
    stats: Mapping[int, BatchStats],
    warmup: int,
    total: int,
    peak_mem_mb: float,
    mem_kind: str,
) -> Measurement:
    """Rates over steps ``warmup .. total-1``: ``marks[s]`` is when step ``s`` began (``marks[total]``: the end)."""
    if not 1 <= warmup < total:
        raise ConfigError(f"warmup={warmup} must lie in 1..{total - 1} (total steps {total})")
    missing = [s for s in (warmup, total) if s not in marks] + [s for s in range(warmup, total) if s not in stats]
    if missing:
        raise DataError(f"timing marks or batch records missing for steps {missing[:5]}")
    seconds = marks[total] - marks[warmup]
    seen = sum((stats[s] for s in range(warmup, total)), BatchStats(0, 0, 0))
    steps = total - warmup
    return Measurement(
        examples_per_s=seen.examples / seconds,
        tokens_per_s=seen.tokens / seconds,
        pad_fraction=1.0 - seen.tokens / seen.slots,
        step_ms=1000.0 * seconds / steps,
        peak_mem_mb=peak_mem_mb,
        mem_kind=mem_kind,
        steps=steps,
    )


def _proc_status_kb(field_name: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


def _release_free_heap() -> None:
    """Give freed heap pages back to the system (glibc), so that RSS starts from what is really in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class PeakMemory:
    """Context manager: the peak memory (MiB) the block adds on ``device`` (see the module docstring)."""

    device: torch.device
    mb: float = 0.0
    kind: str = ""
    _base: int = 0
    _hwm: bool = False

    def __enter__(self) -> "PeakMemory":
        _release_free_heap()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base, self.kind = torch.cuda.memory_allocated(self.device), "cuda max_memory_allocated"
        elif _reset_peak_rss():
            self._hwm, self._base, self.kind = True, 1024 * (_proc_status_kb("VmRSS") or 0), "cpu peak RSS (VmHWM)"
        else:
            self._base, self.kind = 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "cpu ru_maxrss"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._hwm:
            peak = 1024 * (_proc_status_kb("VmHWM") or 0)
        else:
            peak = 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.mb = max(0, peak - self._base) / 2**20


@dataclass
class TimedSource:
    """A step source that stamps when each step starts and records its batches' sizes."""

    source: StepSource
    device: torch.device
    marks: dict[int, float] = field(default_factory=dict)
    stats: dict[int, BatchStats] = field(default_factory=dict)

    def __call__(self, step: int) -> list[Pass]:
        sync(self.device)
        self.marks[step] = time.perf_counter()
        passes = self.source(step)
        self.stats[step] = sum((batch_stats(p.batch) for p in passes), BatchStats(0, 0, 0))
        return passes


def measure_loop(
    model: RoadModel,
    source: StepSource,
    loss_fn: LossFn,
    total: int,
    warmup: int,
    batch_size: int,
    settings: BenchSettings,
) -> Measurement:
    """Train ``model`` with our loop for ``total`` steps and time the steps after ``warmup``."""
    device = settings.torch_device
    timed = TimedSource(source, device)
    model.to(device)  # weights arrive before the memory window opens, as the Trainer places them in __init__
    with PeakMemory(device) as mem:
        train(model, timed, loss_fn, total, optim_config(batch_size), num_layers=model.num_layers, device=device,
              precision=settings.precision, progress=False)
        sync(device)
        timed.marks[total] = time.perf_counter()
    return summarize(timed.marks, timed.stats, warmup, total, mem.mb, mem.kind)


def autocast_dtype(settings: BenchSettings) -> torch.dtype | None:
    """The autocast dtype our loop will use (None: fp32)."""
    return resolve_precision(settings.precision, settings.torch_device)


def interleaved(runs: Mapping[str, Callable[[], Measurement]], repeats: int) -> dict[str, list[Measurement]]:
    """Run every configuration ``repeats`` times, in round-robin order, and collect the measurements."""
    out: dict[str, list[Measurement]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            out[name].append(run())
    return out


def summary_row(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """The fastest of the repeats (noise from other jobs only ever slows a run down -- ``timeit``'s reasoning),
    with the median and slowest rates beside it and ``spread``, the standard deviation of examples/s over the
    repeats relative to the fastest; peak memory is the largest of the repeats."""
    ordered = sorted(measurements, key=lambda m: m.examples_per_s, reverse=True)
    best = ordered[0]
    return {
        "examples_per_s": best.examples_per_s,
        "examples_per_s_median": statistics.median(m.examples_per_s for m in ordered),
        "examples_per_s_min": ordered[-1].examples_per_s,
        "tokens_per_s": best.tokens_per_s,
        "pad_fraction": best.pad_fraction,
        "step_ms": best.step_ms,
        "peak_mem_mb": max(m.peak_mem_mb for m in measurements),
        "mem_kind": best.mem_kind,
        "steps_timed": best.steps,
        "repeats": len(measurements),
        "spread": statistics.pstdev(m.examples_per_s for m in measurements) / best.examples_per_s,
    }


def fresh(template: RoadModel) -> RoadModel:
    """A copy of ``template`` with its exact weights (every configuration starts from the same model)."""
    return copy.deepcopy(template)


# -- output --------------------------------------------------------------------------------------------------


def write_csv(frame: pd.DataFrame, out: Path, name: str) -> Path:
    """``out/<name>.csv``, written atomically."""
    return atomic_write_csv(Path(out) / f"{name}.csv", frame)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def print_table(title: str, frame: pd.DataFrame, columns: Sequence[str], console: Console | None = None) -> None:
    """``columns`` of ``frame`` under ``title``: a rich table on a terminal wide enough to show every cell in
    full; otherwise (a log file, a pipe, a narrow terminal) plain fixed-width text, so no column is ever
    squeezed to ``…``."""
    console = console or Console()
    cells = [[_cell(row[c]) for c in columns] for _, row in frame.iterrows()]
    right = [i for i, c in enumerate(columns) if frame[c].dtype != object]
    text = plain_table(columns, cells, right=right)
    needed = max(len(line) for line in text.splitlines()) + 3 * len(columns) + 1  # rich's borders and padding
    if not console.is_terminal or needed > console.width:
        console.file.write(f"{title}\n{text}\n\n")
        console.file.flush()
        return
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i in right else "left", no_wrap=True)
    for row in cells:
        table.add_row(*row)
    console.print(table)
