"""Benchmark 2: what knowledge distillation costs per training step, cached soft targets vs online teachers.

On SQuAD-style span QA (the task of paper Table 5), with the finetune stage's batches (length-grouped windows
padded per batch, padding masked out of every span softmax: ``features.span_padding: batch``), three ways to
train one student:

* ``ce`` -- plain cross-entropy (the baseline step);
* ``kd_cached`` -- the KD objective (T = 5, lambda = 0.9) against the mean of 3 teachers' logits taken from
  the soft-target cache: the teachers ran once, before training, and each batch carries its rows' cached
  logits (our design; goal: <= 1.10x the CE step time);
* ``kd_online_3`` -- the same objective with the 3 teachers run on every batch (what TextBrewer does).

Teachers share the student's architecture (ROaD distils ELECTRA-large teachers into an ELECTRA-large
student) and differ by their initialisation seed. ``cost_vs_ce`` is a row's step time over the CE step's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from benchmarks.common import (
    BenchSettings,
    benchmark_process,
    build,
    context_columns,
    fresh,
    interleaved,
    measure_loop,
    parser,
    print_table,
    qa_training_features,
    settings_from_args,
    summary_row,
    write_csv,
)
from road_repro.data.batching import LengthGroupedBatches
from road_repro.distill import mean_teacher_logits
from road_repro.models.model import RoadModel
from road_repro.train.loop import LossFn, Pass, forward, predict
from road_repro.train.objectives import Objective, pass_losses

NAME = "kd_cost"
HEAD = "mrc"
N_TEACHERS = 3
KD = Objective(distill="kd", temperature=5.0, lam=0.9, mask_padding=True)
CE = Objective(mask_padding=True)
CONFIGS = ("ce", "kd_cached", "kd_online_3")
COLUMNS = ("config", "examples_per_s", "step_ms", "cost_vs_ce", "peak_mem_mb")
SPAN_LOGITS = ("start_logits", "end_logits")


@dataclass(frozen=True)
class Sizes:
    batch_size: int
    qa_examples: int
    warmup: int
    steps: int
    length: int = 384
    doc_stride: int = 128


FULL = Sizes(batch_size=16, qa_examples=160, warmup=2, steps=6)
QUICK = Sizes(batch_size=4, qa_examples=12, warmup=1, steps=3, length=128, doc_stride=32)


def cached_targets(
    teachers: Sequence[RoadModel], features: dict[str, Tensor], settings: BenchSettings
) -> dict[str, Tensor]:
    """What the soft-target cache holds for a mean-of-teachers student: each row's averaged teacher logits."""
    device = settings.torch_device
    outs = [predict(t, features, HEAD, 64, device, settings.precision) for t in teachers]
    return {f"teacher_{k}": mean_teacher_logits(torch.stack([o[k] for o in outs])) for k in SPAN_LOGITS}


def ce_loss(out: dict[str, Tensor], p: Pass, progress: float) -> dict[str, Tensor]:
    """Plain cross-entropy against the gold spans."""
    return pass_losses(CE, out, p.batch, progress)


def cached_kd_loss(out: dict[str, Tensor], p: Pass, progress: float) -> dict[str, Tensor]:
    """The KD loss against the cached teacher logits the batch carries."""
    return pass_losses(KD, out, p.batch, progress)


def online_loss(teachers: Sequence[RoadModel]) -> LossFn:
    """The KD loss with every teacher run on the pass's batch (no gradient), their logits averaged."""

    def loss(out: dict[str, Tensor], p: Pass, progress: float) -> dict[str, Tensor]:
        with torch.no_grad():
            outs = [forward(t, p.batch, HEAD) for t in teachers]
        targets = {f"teacher_{k}": mean_teacher_logits(torch.stack([o[k] for o in outs])) for k in SPAN_LOGITS}
        return pass_losses(KD, out, {**p.batch, **targets}, progress)

    return loss


def source(features: dict[str, Tensor], batch_size: int, seed: int) -> Callable[[int], list[Pass]]:
    """Length-grouped windows padded to their batch's longest (cached teacher logits cut alike), as the
    finetune stage trains on them."""
    lengths = features["attention_mask"].sum(1)
    batches = LengthGroupedBatches(lengths.tolist(), batch_size, seed)

    def step(k: int) -> list[Pass]:
        rows = batches(k)
        width = int(lengths[rows].max())
        return [Pass(HEAD, "squad", {key: v[rows][:, :width] if v.dim() == 2 else v[rows] for key, v in features.items()})]

    return step


def run(settings: BenchSettings) -> pd.DataFrame:
    """The three configurations, interleaved and repeated; one row each."""
    sizes = QUICK if settings.quick else FULL
    device, bs, total = settings.torch_device, sizes.batch_size, sizes.warmup + sizes.steps
    with benchmark_process(settings):
        features, data = qa_training_features(settings, sizes.qa_examples, sizes.length, sizes.doc_stride, bs)
        student = build(settings, {HEAD: "span"}, settings.seed)
        teachers = [build(settings, {HEAD: "span"}, settings.seed + 1 + i).to(device).eval() for i in range(N_TEACHERS)]
        with_targets = {**features, **cached_targets(teachers, features, settings)}
        runs = {
            "ce": lambda: measure_loop(fresh(student), source(features, bs, settings.seed), ce_loss, total,
                                       sizes.warmup, bs, settings),
            "kd_cached": lambda: measure_loop(fresh(student), source(with_targets, bs, settings.seed), cached_kd_loss,
                                              total, sizes.warmup, bs, settings),
            "kd_online_3": lambda: measure_loop(fresh(student), source(features, bs, settings.seed),
                                                online_loss(teachers), total, sizes.warmup, bs, settings),
        }
        results = interleaved(runs, settings.n_repeats)
    frame = pd.DataFrame([{"task": "squad_qa", "config": name, "batch_size": bs,
                           "teachers": N_TEACHERS if name != "ce" else 0, **summary_row(results[name])}
                          for name in CONFIGS])
    ce_ms = frame.set_index("config").loc["ce", "step_ms"]
    return frame.assign(cost_vs_ce=frame["step_ms"] / ce_ms, **context_columns(settings, data))


def report(frame: pd.DataFrame, settings: BenchSettings) -> None:
    """Write the CSV and print the table."""
    write_csv(frame, settings.out, NAME)
    print_table(f"Cost of KD per step, span QA ({frame['machine'].iloc[0]})", frame, COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from_args(parser(__doc__.splitlines()[0]).parse_args(argv))
    report(run(settings), settings)


if __name__ == "__main__":
    main()
