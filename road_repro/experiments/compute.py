"""Compute estimates for a dry run: GPU-hours per stage from a throughput table (pure functions).

The unit of work is the *parameter-token*: one token passed through one weight of the encoder. A stage's
cost is the sum over the examples it trains on (forward and backward) and the examples it only runs
forward (evaluation, soft targets, prediction, an in-step hidden-state teacher) of

    examples x tokens per example x compute parameters of the encoder,

forward-only work weighted by :data:`FORWARD_COST`, and GPU-hours are that cost divided by a
:class:`Throughput` (parameter-tokens per second per GPU) and 3600. The simplifications, all stated:

* *Compute parameters* are the weights every token passes through: per layer the attention projections
  (4 h^2) and the feed-forward block (2 h i), i.e. ``layers x (4 h^2 + 2 h i)`` (:class:`EncoderShape`).
  Embeddings are a lookup and the task heads are tiny, so neither counts; attention's own sequence-squared
  term is left out (as in the usual 6 x params x tokens estimate), so cost is linear in sequence length.
  ELECTRA-large (24 x 1024, 4096) has 302M of them, ELECTRA-base (12 x 768, 3072) 85M: a base model
  costs 1/3.55 of a large one per token. ALBERT shares its weights across layers but still computes every
  layer, so ALBERT-xlarge (24 x 2048, 8192) counts 1.2G.
* *Tokens per example* are the padded length the loop runs: for span-QA windows ``max_seq_length`` with
  ``features.span_padding: window``, else their real length times the padding of their batches (see "real
  and padded tokens" below: :func:`window_tokens`, :func:`row_tokens`); ``max_pair_length`` for
  sentence(-pair) classification (dynamically padded per batch, so an upper bound). A span-QA example longer
  than one window becomes several (:func:`windows_per_example`).
* *Forward-only passes* cost :data:`FORWARD_COST` = 1/3 of a training step (a backward pass is about
  twice a forward pass).
* *The default throughput* (:func:`paper_default`) comes from the paper: ROaD's MTL, 50,000 steps at batch
  512 with ELECTRA-large at ``max_seq_length`` 512, took "about 12 hours on 8 V100" = 96 V100-hours, so
  50,000 x 512 / (96 x 3600) = **74.1 examples/s (37,900 tokens/s) per V100** for a large encoder at 512
  tokens, scaling losses of the 8-GPU job included. ELECTRA's reference code pads every task's examples to
  ``max_seq_length``, so every one of those examples is taken to be 512 tokens. Our loop pads sentence
  pairs only to the batch's longest (at most ``max_pair_length``, 128 at the paper scale), so the paper
  profile's ROaD MTL stage (5 span-QA and 4 classification datasets, drawn uniformly) estimates
  96 x (5 x 512 + 4 x 128) / 9 / 512 = 64 V100-hours; with ``features.max_pair_length=512`` it is the
  paper's 96. *Caution:* that rate is 6 x 302M x 37,900 = 69 TFLOP/s, 55 % of a V100's 125 TFLOP/s fp16
  tensor-core peak -- high for a V100 -- so the paper's examples were probably shorter on average, or its
  "about 12 hours" generous: read the default as optimistic, by up to about 2x for 512-token work.
* *Memory per GPU* (:func:`stage_memory`): per-GPU rows, micro-batches and the peak-memory estimate of
  :mod:`road_repro.train.memory` for the GPU a run names (``runtime.gpu``, ``--gpu``).
* *A measured throughput* replaces the default when ``make bench`` has run on a GPU
  (:func:`load_throughput`): ``benchmarks/gpu_mfu.py`` writes the examples/s of an ELECTRA-large-shaped
  encoder training in bf16 at 512 tokens on that GPU. It is a single-GPU rate on random full-length
  batches, so it leaves out data loading and multi-GPU communication (optimistic by those).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from road_repro.train.memory import (
    USABLE_FRACTION,
    MemoryEstimate,
    Shape,
    element_bytes,
    estimate_memory,
    gpu_bytes,
    micro_bounds,
    rows_that_fit,
)

#: The paper's MTL run (Table 8 and section 3.3), the basis of the default throughput.
PAPER_MTL_STEPS = 50_000
PAPER_MTL_BATCH = 512
PAPER_SEQ_LEN = 512
PAPER_MTL_HOURS = 12.0
PAPER_GPUS = 8
PAPER_GPU = "V100"

#: Cost of a forward-only pass relative to a training step (forward + backward, backward ~ 2 x forward).
FORWARD_COST = 1.0 / 3.0

#: Word pieces per word-level token (words and punctuation, as MRQA counts them): 162.5 word pieces per
#: SQuAD 2.0 dev context (uncased WordPiece, ELECTRA's vocabulary) against MRQA's 137 tokens for SQuAD.
WORDPIECES_PER_TOKEN = 1.2
#: Word pieces of a typical question (SQuAD 2.0 dev: 12.6), capped by ``max_query_length``.
QUESTION_PIECES = 16
#: Special tokens of a question-context window: [CLS] question [SEP] context [SEP].
SPECIAL_TOKENS = 3

#: File names under ``<results>/bench`` holding a measured GPU throughput, first found wins.
BENCH_FILES = ("gpu.csv", "gpu_mfu.csv")


@dataclass(frozen=True)
class EncoderShape:
    """An encoder's size for compute: layers, hidden width, feed-forward width."""

    layers: int
    hidden: int
    intermediate: int

    @property
    def compute_params(self) -> int:
        """Weights every token passes through: ``layers x (4 h^2 + 2 h i)`` (attention and feed-forward)."""
        return self.layers * (4 * self.hidden**2 + 2 * self.hidden * self.intermediate)

    def first(self, layers: int | None) -> EncoderShape:
        """The shape when only the first ``layers`` layers are kept (``num_layers`` of a model config)."""
        if layers is None or layers >= self.layers:
            return self
        return EncoderShape(layers, self.hidden, self.intermediate)


ELECTRA_LARGE = EncoderShape(24, 1024, 4096)
ELECTRA_BASE = EncoderShape(12, 768, 3072)

#: Shapes of the checkpoints the profiles name, for planning without their configs on disk.
KNOWN_SHAPES: dict[str, EncoderShape] = {
    "google/electra-large-discriminator": ELECTRA_LARGE,
    "google/electra-base-discriminator": ELECTRA_BASE,
    "google/electra-small-discriminator": EncoderShape(12, 256, 1024),
    "google-bert/bert-large-uncased": ELECTRA_LARGE,
    "bert-large-uncased": ELECTRA_LARGE,
    "google-bert/bert-base-uncased": ELECTRA_BASE,
    "bert-base-uncased": ELECTRA_BASE,
    "albert/albert-xlarge-v2": EncoderShape(24, 2048, 8192),
    "albert-xlarge-v2": EncoderShape(24, 2048, 8192),
    "FacebookAI/roberta-large": ELECTRA_LARGE,
    "roberta-large": ELECTRA_LARGE,
    "FacebookAI/roberta-base": ELECTRA_BASE,
    "roberta-base": ELECTRA_BASE,
    "microsoft/deberta-large": ELECTRA_LARGE,
    "microsoft/deberta-base": ELECTRA_BASE,
    "microsoft/deberta-v3-large": ELECTRA_LARGE,
    "microsoft/deberta-v3-base": ELECTRA_BASE,
}

#: Shapes guessed from a size word in an unknown checkpoint's name (most specific first).
SIZE_WORDS: tuple[tuple[str, EncoderShape], ...] = (
    ("xxlarge", EncoderShape(12, 4096, 16384)),
    ("xlarge", EncoderShape(24, 2048, 8192)),
    ("large", ELECTRA_LARGE),
    ("base", ELECTRA_BASE),
    ("small", EncoderShape(12, 256, 1024)),
)


def shape_from_name(name: str) -> tuple[EncoderShape, bool]:
    """The shape of checkpoint ``name``: (shape, exact). Known names are exact; otherwise a size word in the
    name decides, and with none the large shape is assumed (the conservative choice)."""
    if name in KNOWN_SHAPES:
        return KNOWN_SHAPES[name], True
    lower = name.lower()
    for word, shape in SIZE_WORDS:
        if re.search(rf"(^|[^a-z]){word}([^a-z]|$)", lower):
            return shape, False
    return ELECTRA_LARGE, False


def shape_from_config(config: Any) -> EncoderShape | None:
    """The shape of a loaded Hugging Face config (None when it lacks the usual fields)."""
    layers = getattr(config, "num_hidden_layers", None)
    hidden = getattr(config, "hidden_size", None)
    if not layers or not hidden:
        return None
    return EncoderShape(int(layers), int(hidden), int(getattr(config, "intermediate_size", None) or 4 * hidden))


@dataclass(frozen=True)
class Throughput:
    """Training speed of one GPU: ``examples_per_s`` of an encoder of ``shape`` at ``seq_len`` tokens."""

    examples_per_s: float
    seq_len: int
    shape: EncoderShape
    device: str
    source: str

    @property
    def param_tokens_per_s(self) -> float:
        """Parameter-tokens trained per second (the rate every estimate divides by)."""
        return self.examples_per_s * self.seq_len * self.shape.compute_params

    @property
    def unit(self) -> str:
        """What an hour of the estimate is, e.g. ``V100-h``."""
        return f"{self.device}-h"


def paper_default() -> Throughput:
    """Per-GPU examples/s of ELECTRA-large at 512 tokens from the paper's MTL: 50,000 x 512 / (8 x 12 h)."""
    rate = PAPER_MTL_STEPS * PAPER_MTL_BATCH / (PAPER_GPUS * PAPER_MTL_HOURS * 3600)
    return Throughput(rate, PAPER_SEQ_LEN, ELECTRA_LARGE, PAPER_GPU,
                      f"default from the paper: ROaD MTL, {PAPER_MTL_STEPS:,} steps x {PAPER_MTL_BATCH} examples at "
                      f"{PAPER_SEQ_LEN} tokens (ELECTRA-large) in about {PAPER_MTL_HOURS:g} h on {PAPER_GPUS} "
                      f"{PAPER_GPU} = {rate:.2f} examples/s per {PAPER_GPU}")


def _device_word(gpu: str) -> str:
    """A short name for a GPU model, the unit of its hours: ``NVIDIA H200`` -> ``H200``, ``NVIDIA
    A100-SXM4-80GB`` -> ``A100``, ``NVIDIA GeForce RTX 4090`` -> ``RTX 4090``."""
    words = [w for w in re.split(r"[\s_]+", gpu.strip()) if w and w.upper() not in ("NVIDIA", "TESLA", "GEFORCE")]
    kept = []
    for word in words:
        if any(c.isdigit() for c in word):
            kept.append(word.split("-")[0])
            break
        kept.append(word)
    return " ".join(kept) or "GPU"


def from_bench_csv(path: Path) -> Throughput | None:
    """The measured rate in a CSV of ``benchmarks/gpu_mfu.py``: ``gpu.csv`` (one measure a row: ``measure``,
    ``value``, ``gpu``, ``encoder``, ``dtype``, ``seq_len``, ...) or the wide ``gpu_mfu.csv`` (an
    ``examples_per_s`` column). The encoder's shape is read from ``encoder`` (``electra h1024 L24``); the
    fastest row wins when there are several. None if the file is missing or holds no usable row."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return None
    best: tuple[float, dict[str, str]] | None = None
    for row in rows:
        if "measure" in row and row["measure"] != "examples_per_s":
            continue
        try:
            rate = float((row.get("value") if "measure" in row else row.get("examples_per_s")) or "nan")
        except ValueError:
            continue
        if rate > 0 and (best is None or rate > best[0]):
            best = (rate, row)
    if best is None:
        return None
    rate, row = best
    seq_len = int(float(row.get("seq_len") or PAPER_SEQ_LEN))
    shape = ELECTRA_LARGE
    match = re.search(r"h(\d+)\s+L(\d+)", row.get("encoder") or "")
    if match:
        hidden, layers = int(match.group(1)), int(match.group(2))
        shape = EncoderShape(layers, hidden, 4 * hidden)
    gpu = row.get("gpu") or "GPU"
    dtype = row.get("dtype") or "?"
    return Throughput(rate, seq_len, shape, _device_word(gpu),
                      f"measured by make bench: {path} ({gpu}, {dtype}, {rate:.2f} examples/s of an encoder "
                      f"{shape.layers} x {shape.hidden} at {seq_len} tokens, one GPU)")


def load_throughput(bench_dir: Path | None) -> Throughput:
    """The measured rate under ``bench_dir`` (``gpu.csv``, then ``gpu_mfu.csv``) or else :func:`paper_default`."""
    if bench_dir is not None:
        for name in BENCH_FILES:
            measured = from_bench_csv(Path(bench_dir) / name)
            if measured is not None:
                return measured
    return paper_default()


def windows_per_example(context_tokens: float | None, max_seq_length: int, doc_stride: int,
                        max_query_length: int) -> float:
    """Estimated span-QA windows per example for a mean context of ``context_tokens`` word-level tokens.

    A window holds ``room = max_seq_length - question - 3`` context word pieces (question:
    :data:`QUESTION_PIECES`, at most ``max_query_length``); consecutive windows overlap by ``doc_stride``, so
    each further window adds ``room - doc_stride``. On the mean context length that is
    ``1 + max(0, pieces - room) / (room - doc_stride)`` -- an estimate: it ignores the spread of lengths
    (SQuAD 2.0 dev measured 1.022 windows per question at 384/128 and 1.008 at 512/128, where this gives 1.0).
    None (unknown length) gives 1.
    """
    if not context_tokens:
        return 1.0
    room = max_seq_length - min(QUESTION_PIECES, max_query_length) - SPECIAL_TOKENS
    step = room - doc_stride
    if room < 1 or step < 1:
        return 1.0
    pieces = context_tokens * WORDPIECES_PER_TOKEN
    return 1.0 + max(0.0, pieces - room) / step


def finetune_steps(rows: int, batch_size: int, epochs: float, steps: int | None = None) -> int:
    """Optimizer steps of a finetuning run: ``steps`` when set, else ``ceil(epochs x ceil(rows / batch))``
    (as :class:`road_repro.train.loop.EpochBatches` and ``Experiment.finetune`` count them)."""
    if steps:
        return int(steps)
    if rows <= 0:
        return 0
    return math.ceil(epochs * math.ceil(rows / batch_size))


def examples_processed(rows: int, batch_size: int, steps: int) -> int:
    """Examples the optimizer steps see: whole epochs of ``rows`` (the last batch of an epoch is short) and
    the part of the last epoch the remaining steps cover."""
    if rows <= 0 or steps <= 0:
        return 0
    per_epoch = math.ceil(rows / batch_size)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * rows + min(rest * batch_size, rows)


@dataclass(frozen=True)
class Work:
    """The compute of one stage in parameter-tokens: trained (forward and backward) and forward-only."""

    train: float = 0.0
    forward: float = 0.0

    def __add__(self, other: Work) -> Work:
        return Work(self.train + other.train, self.forward + other.forward)


def work(examples: float, tokens: float, shape: EncoderShape, forward_only: bool = False) -> Work:
    """``examples`` of ``tokens`` tokens each through an encoder of ``shape``, trained or forward only."""
    amount = float(examples) * float(tokens) * shape.compute_params
    return Work(forward=amount) if forward_only else Work(train=amount)


def gpu_hours(stage: Work, throughput: Throughput) -> float:
    """GPU-hours of one stage at ``throughput``: (trained + FORWARD_COST x forward-only) / rate / 3600."""
    return (stage.train + FORWARD_COST * stage.forward) / throughput.param_tokens_per_s / 3600.0


def total_gpu_hours(stages: Iterable[Work], throughput: Throughput) -> float:
    """GPU-hours of several stages (each counted as given: pass every shared stage once)."""
    return sum(gpu_hours(stage, throughput) for stage in stages)


@dataclass(frozen=True)
class StageMemory:
    """What one GPU holds in a stage: its rows of the largest pass, the micro-batches they run as, the peak.

    ``rows_per_gpu``: a training pass's global rows over the GPUs (rounded up), or a forward-only stage's
    rows per batch on each GPU (``eval_batch_size``); ``micro_batches`` of at most ``micro_rows`` rows each
    (:func:`road_repro.train.memory.micro_bounds`); ``estimate``: the peak of one micro-batch
    (:func:`road_repro.train.memory.estimate_memory`); ``fits``: within :data:`~road_repro.train.memory.USABLE_FRACTION`
    of the GPU's memory.
    """

    rows_per_gpu: int
    micro_batches: int
    micro_rows: int
    seq_len: int
    estimate: MemoryEstimate
    budget: int

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.budget


def stage_memory(shape: Shape, rows: int, seq_len: int, *, nproc: int, gpu: str, precision: str,
                 max_rows_per_device: int = 0, checkpointing: bool = False, train: bool = True,
                 teacher: Shape | None = None) -> StageMemory:
    """Per-GPU rows, micro-batches and estimated peak memory of a stage on ``nproc`` x ``gpu``.

    A training pass of ``rows`` global rows gives each GPU ``ceil(rows / nproc)``; they run as micro-batches
    of at most ``max_rows_per_device`` (0: automatic, as the training loop chooses it --
    :func:`road_repro.train.memory.rows_that_fit`: the most rows whose estimate, hidden-state KD's in-step
    ``teacher`` included, fits the GPU). Forward-only stages run ``rows`` per GPU at a time and are not split.
    """
    elem = element_bytes(precision, gpu)
    budget = int(gpu_bytes(gpu) * USABLE_FRACTION)
    if not train:
        per_gpu = limit = rows
    else:
        per_gpu = math.ceil(rows / nproc)
        limit = max_rows_per_device or rows_that_fit(shape, seq_len, elem, budget, checkpointing=checkpointing,
                                                     teacher=teacher, upper=per_gpu)
    parts = micro_bounds(per_gpu, limit)
    micro_rows = max(hi - lo for lo, hi in parts)
    peak = estimate_memory(shape, micro_rows, seq_len, elem, checkpointing=checkpointing, train=train, teacher=teacher)
    return StageMemory(per_gpu, len(parts), micro_rows, seq_len, peak, budget)


#: The GPUs and counts of the "What fits where" table in docs/distributed.md.
FITS_GPUS = ("V100-32GB", "A100-80GB")
FITS_NPROCS = (1, 4, 8)


def fits_table(profile_name: str = "paper") -> str:
    """docs/distributed.md's "What fits where" (markdown): each stage kind of ``profile_name`` at its batch
    sizes and lengths, on 1, 4 and 8 of each of :data:`FITS_GPUS`, with automatic ``max_rows_per_device``:
    rows per GPU per pass = micro-batches x rows, and the estimated peak per GPU. ELECTRA-large, the
    student of hidden-state KD ELECTRA-base with a large teacher. ``python -m road_repro.experiments.compute``."""
    from road_repro.config import load_profile  # the profile's settings; compute itself needs no config

    p = load_profile(profile_name)
    large, base = Shape(24, 1024, 4096, 16), Shape(12, 768, 3072, 12)
    f, ft, m = p.features, p.finetune.batch_size, p.mtl.optim.batch_size
    kinds = [
        ("finetune, span QA", large, ft, f.max_seq_length, True, None),
        ("finetune, sentence pairs", large, ft, f.max_pair_length, True, None),
        ("hidden-state KD (base student, large teacher)", base, ft, f.max_seq_length, True, large),
        (f"ROaD MTL pass (batch {m} / pass_step {p.mtl.pass_step})", large, m // p.mtl.pass_step,
         f.max_seq_length, True, None),
        (f"MT-DNN step (batch {m}, one pass)", large, m, f.max_seq_length, True, None),
        ("soft targets / prediction (forward)", large, p.finetune.eval_batch_size, f.max_seq_length, False, None),
    ]
    head = ["stage kind (rows x tokens per pass)"] + [f"{n} x {g}" for g in FITS_GPUS for n in FITS_NPROCS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, shape, rows, seq, train, teacher in kinds:
        cells = [f"{name}: {rows} x {seq}"]
        for gpu in FITS_GPUS:
            for nproc in FITS_NPROCS:
                s = stage_memory(shape, rows, seq, nproc=nproc, gpu=gpu, precision=p.runtime.precision,
                                 train=train, teacher=teacher)
                split = f"{s.micro_batches} x {s.micro_rows}" if s.micro_batches > 1 else f"{s.rows_per_gpu}"
                cells.append(f"{split}, {s.estimate.gib:.1f} GiB" + ("" if s.fits else " (too big)"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- real and padded tokens (features.span_padding) ------------------------------------------------------------
#
# A stage is priced by the tokens it runs, padding included. With ``span_padding: window`` every span-QA
# window runs at ``max_seq_length``; with ``batch`` a window runs at the longest window of its batch, which is
# the window's real length times a padding factor that depends on how batches are formed. The factors were
# measured on SQuAD 2.0 dev windows (every third question, 3,990 windows at 512/128, packaged MiniLM WordPiece
# tokenizer, mean 180.5 real tokens): length-grouped training batches of 32 (HF ``get_length_grouped_indices``,
# :class:`road_repro.data.batching.LengthGroupedBatches`) pad 4.8 %, length-sorted inference groups of 64 pad
# 2.0 %, shuffled batches of 128 (an MTL pass at batch 512 / pass_step 4) run 2.72x the real tokens. They are
# applied to every span dataset (an assumption for the others) and capped at ``max_seq_length``. Sentence pairs
# are counted at ``max_pair_length``, real and computed alike: the loop pads them to their batch's longest, but
# their lengths are not documented, so their cost is an upper bound and the padding share leaves them out (the
# plan's header says so, docs/dry_run.md).

#: Padded tokens / real tokens of span windows, by how their batches are formed (measured, see above).
PADDING_FACTOR = {"grouped": 1.048, "sorted": 1.020, "shuffled": 2.72}


@dataclass(frozen=True)
class Tokens:
    """Tokens a stage runs: ``real`` ones and ``padded`` (what the encoder computes, real ones included)."""

    real: float = 0.0
    padded: float = 0.0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(self.real + other.real, self.padded + other.padded)

    def __mul__(self, rows: float) -> Tokens:
        return Tokens(self.real * rows, self.padded * rows)

    @property
    def padding_share(self) -> float:
        """The share of the computed tokens that is padding (0 when nothing runs)."""
        return 1.0 - self.real / self.padded if self.padded else 0.0


def window_tokens(context_tokens: float | None, max_seq_length: int, doc_stride: int,
                  max_query_length: int) -> float | None:
    """Mean real tokens of a span-QA window for a mean context of ``context_tokens`` word-level tokens: the
    question and special tokens plus the context word pieces the windows hold (overlaps counted in every
    window that holds them), shared over :func:`windows_per_example` windows. None for an unknown length.
    (SQuAD 2.0 dev at 512/128: 183 estimated from 137 context tokens, 180.5 measured.)"""
    if not context_tokens:
        return None
    windows = windows_per_example(context_tokens, max_seq_length, doc_stride, max_query_length)
    held = context_tokens * WORDPIECES_PER_TOKEN + (windows - 1) * doc_stride
    return min(float(max_seq_length), min(QUESTION_PIECES, max_query_length) + SPECIAL_TOKENS + held / windows)


def row_tokens(real: float | None, max_len: int, per_batch: bool, batching: str) -> Tokens:
    """Real and padded tokens of one row of mean ``real`` tokens (None: unknown, counted as ``max_len``):
    padded to ``max_len`` unless ``per_batch``, else by the :data:`PADDING_FACTOR` of ``batching``."""
    if real is None:
        return Tokens(float(max_len), float(max_len))
    if not per_batch:
        return Tokens(real, float(max_len))
    return Tokens(real, min(float(max_len), real * PADDING_FACTOR[batching]))


if __name__ == "__main__":
    print(fits_table())
