"""Benchmark 3: ROaD multi-task step throughput for pass_step 1, 2, 4, 8 at a constant global batch.

ROaD (Algorithm 1) splits each optimizer step's global batch into ``pass_step`` passes, each on a dataset drawn
at random (:class:`road_repro.data.mixing.RoadSampler`), with one head per task type. The examples a step
trains on stay the same, so throughput in examples/s should stay flat as ``pass_step`` grows; what it costs
is one forward/backward launch per pass and smaller matrices per launch.

Four synthetic datasets (span QA, NLI, sentiment, paraphrase) feed the four heads. Every row is padded to the
same length, so that a pass costs the same per example whichever dataset it draws and the rate isolates the
pass split from the data mix. ``vs_pass_step_1`` is a row's examples/s over pass_step 1's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
from torch import Tensor

from benchmarks.common import (
    BenchSettings,
    benchmark_process,
    build,
    context_columns,
    fresh,
    interleaved,
    measure_loop,
    pad_pairs,
    parser,
    print_table,
    settings_from_args,
    summary_row,
    tokenizer_for,
    write_csv,
)
from road_repro.data.features import pair_features, qa_features
from road_repro.data.mixing import RoadSampler
from road_repro.data.schema import LABELS
from road_repro.data.synthetic import synthetic_squad
from road_repro.data.synthetic_tasks import synthetic_nli, synthetic_paraphrase, synthetic_sentiment
from road_repro.train.loop import MODEL_INPUTS, Pass
from road_repro.train.objectives import Objective, pass_losses

NAME = "mtl_passstep"
PASS_STEPS = (1, 2, 4, 8)
COLUMNS = ("pass_step", "pass_size", "examples_per_s", "step_ms", "vs_pass_step_1", "peak_mem_mb")
#: Dataset -> (head = task type, generator); ROaD shares one head per task type.
DATASETS = {
    "synthetic_squad": ("mrc", synthetic_squad),
    "synthetic_nli": ("nli", synthetic_nli),
    "synthetic_sentiment": ("sentiment", synthetic_sentiment),
    "synthetic_paraphrase": ("paraphrase", synthetic_paraphrase),
}


@dataclass(frozen=True)
class Sizes:
    global_batch: int
    examples: int  # per dataset
    warmup: int
    steps: int
    length: int = 128
    doc_stride: int = 32
    max_query_length: int = 64


FULL = Sizes(global_batch=32, examples=256, warmup=2, steps=12)
QUICK = Sizes(global_batch=8, examples=16, warmup=1, steps=2, length=64, doc_stride=16, max_query_length=16)


def dataset_features(settings: BenchSettings, sizes: Sizes) -> dict[str, dict[str, Tensor]]:
    """Every dataset's training rows as tensors of ``sizes.length`` tokens with their targets."""
    tok = tokenizer_for(settings)
    out = {}
    for name, (task, make) in DATASETS.items():
        examples = make(sizes.examples, settings.seed)
        if task == "mrc":
            feats = qa_features(examples, tok, max_seq_length=sizes.length, doc_stride=sizes.doc_stride,
                                max_query_length=sizes.max_query_length)
            keys = [k for k in (*MODEL_INPUTS, "start_positions", "end_positions") if k in feats]
            out[name] = {k: feats[k] for k in keys}
        else:
            out[name] = pad_pairs(pair_features(examples, tok, max_seq_length=sizes.length), tok, sizes.length)
    return out


def source(
    data: dict[str, dict[str, Tensor]], global_batch: int, pass_step: int, seed: int
) -> Callable[[int], list[Pass]]:
    """ROaD's passes: ``pass_step`` per step, each ``global_batch // pass_step`` rows of a drawn dataset."""
    sizes = {name: len(feats["input_ids"]) for name, feats in data.items()}
    sampler = RoadSampler(sizes, global_batch, pass_step, seed)

    def passes(step: int) -> list[Pass]:
        return [Pass(DATASETS[d.dataset][0], d.dataset, {k: v[d.indices] for k, v in data[d.dataset].items()})
                for d in sampler(step)]

    return passes


def loss_fn(out: dict[str, Tensor], p: Pass, progress: float) -> dict[str, Tensor]:
    """Cross-entropy for whichever head the pass trains (span or classification)."""
    return pass_losses(Objective(), out, p.batch, progress)


def run(settings: BenchSettings) -> pd.DataFrame:
    """Every pass_step, interleaved and repeated; one row each."""
    sizes = QUICK if settings.quick else FULL
    total, g = sizes.warmup + sizes.steps, sizes.global_batch
    with benchmark_process(settings):
        data = dataset_features(settings, sizes)
        heads = {task: "span" if task == "mrc" else len(LABELS[task]) for task, _ in DATASETS.values()}
        template = build(settings, heads, settings.seed)
        runs = {k: (lambda k=k: measure_loop(fresh(template), source(data, g, k, settings.seed), loss_fn, total,
                                             sizes.warmup, g, settings))
                for k in PASS_STEPS}
        results = interleaved(runs, settings.n_repeats)
    frame = pd.DataFrame([{"pass_step": k, "pass_size": g // k, "global_batch": g, "seq_len": sizes.length,
                           **summary_row(results[k])} for k in PASS_STEPS])
    base = frame.set_index("pass_step").loc[1, "examples_per_s"]
    return frame.assign(vs_pass_step_1=frame["examples_per_s"] / base,
                        **context_columns(settings, "+".join(DATASETS)))


def report(frame: pd.DataFrame, settings: BenchSettings) -> None:
    """Write the CSV and print the table."""
    write_csv(frame, settings.out, NAME)
    print_table(f"ROaD MTL step throughput vs pass_step, global batch {frame['global_batch'].iloc[0]} "
                f"({frame['machine'].iloc[0]})", frame, COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from_args(parser(__doc__.splitlines()[0]).parse_args(argv))
    report(run(settings), settings)


if __name__ == "__main__":
    main()
