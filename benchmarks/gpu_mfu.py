"""Benchmark 4 (GPU only): throughput and MFU of an ELECTRA-large-sized encoder training in bf16 at sequence 512.

The encoder is built from its config (``transformers.ElectraConfig``: hidden 1024, 24 layers, 16 heads,
intermediate 4096 -- ELECTRA-large's shape, randomly initialised, nothing downloaded) with a span head, and
trained by our loop on random full-length token batches (no padding, so every token is real work).

* MFU = 6 x params x tokens/s / peak FLOP/s, params counting every trainable parameter (embeddings included;
  the 6 covers a forward and a backward pass, attention's own FLOPs are left out, as in the usual estimate).
  The assumed dense bf16 peak per GPU model is :data:`PEAK_BF16_TFLOPS`; ``--peak-tflops`` overrides it.
* The paper's MTL (Table 8: 50,000 steps at batch 512; "about 12 hours on 8 V100", i.e. 96 GPU-hours) would
  take ``50,000 x 512 / (examples/s) / 3600`` GPU-hours at the measured single-GPU rate (perfect scaling).

Writes ``<out>/gpu_mfu.csv`` (one wide row) and ``<out>/gpu.csv``, the same figures one measure a row
(:data:`GPU_CSV_COLUMNS`: measure, value, unit, the GPU's name, the paper's MTL in GPU-hours at this rate, and
the context) -- the file ``make gpu-check`` (:mod:`benchmarks.gpu_check`) reports. On a machine without CUDA
it prints why it is skipped and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import ElectraConfig, ElectraModel

from benchmarks.common import (
    BenchSettings,
    autocast_dtype,
    benchmark_process,
    context_columns,
    measure_loop,
    parser,
    print_table,
    settings_from_args,
    summary_row,
    write_csv,
)
from road_repro.errors import DataError
from road_repro.models.model import RoadModel
from road_repro.train.loop import Pass
from road_repro.train.objectives import Objective, pass_losses

NAME = "gpu_mfu"
HEAD = "mrc"
#: ELECTRA-large's encoder shape (Clark et al., 2020), with BERT's uncased vocabulary.
ELECTRA_LARGE = dict(vocab_size=30522, embedding_size=1024, hidden_size=1024, num_hidden_layers=24,
                     num_attention_heads=16, intermediate_size=4096, max_position_embeddings=512)
#: Dense bf16 tensor-core peak (TFLOP/s) by GPU model name fragment, most specific first; V100 has no bf16,
#: its fp16 tensor-core peak is given (the paper's GPUs).
PEAK_BF16_TFLOPS: dict[str, float] = {
    "GH200": 989.0, "H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0,
    "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0, "V100": 125.0,
}  # fmt: skip
PAPER_MTL_STEPS = 50_000
PAPER_MTL_BATCH = 512
PAPER_MTL_GPU_HOURS = 12 * 8  # "about 12 hours on 8 GPUs" (V100 32 GB)
COLUMNS = ("gpu", "batch_size", "seq_len", "examples_per_s", "tokens_per_s", "tflops", "mfu", "paper_mtl_gpu_hours")
#: ``gpu.csv``: one row per measure, these columns first (then the context columns of the wide row).
GPU_CSV = "gpu"
GPU_CSV_COLUMNS = ("measure", "value", "unit", "gpu", "paper_mtl_gpu_hours", "encoder", "params", "dtype",
                   "batch_size", "seq_len", "peak_tflops_assumed")
#: The measures of ``gpu.csv``, in order: (column of the wide row, unit).
GPU_MEASURES = (
    ("examples_per_s", "examples/s"),
    ("tokens_per_s", "tokens/s"),
    ("tflops", "model TFLOP/s (6 x params x tokens/s)"),
    ("mfu", "fraction of the assumed dense bf16 peak"),
    ("step_ms", "ms per optimizer step"),
    ("peak_mem_mb", "MiB (cuda max_memory_allocated)"),
    ("paper_mtl_gpu_hours", "GPU-hours for the paper's MTL (50,000 steps x 512) at this rate"),
    ("paper_mtl_gpu_hours_reported", "GPU-hours the paper reports (about 12 h on 8 V100)"),
)


@dataclass(frozen=True)
class Sizes:
    batch_size: int = 32
    seq_len: int = 512
    warmup: int = 5
    steps: int = 20


FULL = Sizes()
QUICK = Sizes(batch_size=8, warmup=2, steps=3)


def peak_tflops(device_name: str) -> float | None:
    """The assumed dense bf16 peak of a GPU from its name (first matching fragment), or None if unknown."""
    upper = device_name.upper()
    return next((peak for fragment, peak in PEAK_BF16_TFLOPS.items() if fragment in upper), None)


def model_flops_per_s(params: int, tokens_per_s: float) -> float:
    """Training FLOP/s by the 6 x params x tokens estimate."""
    return 6.0 * params * tokens_per_s


def paper_mtl_gpu_hours(examples_per_s: float, steps: int = PAPER_MTL_STEPS, batch: int = PAPER_MTL_BATCH) -> float:
    """GPU-hours the paper's MTL would take at ``examples_per_s`` per GPU."""
    return steps * batch / examples_per_s / 3600.0


def electra_model(config: ElectraConfig) -> RoadModel:
    """An ELECTRA encoder built from ``config`` (SDPA attention) with a span head."""
    config._attn_implementation = "sdpa"
    return RoadModel(ElectraModel(config), {HEAD: "span"})


def random_source(vocab_size: int, batch_size: int, seq_len: int, seed: int) -> Callable[[int], list[Pass]]:
    """Full-length batches of random tokens and span labels, a pure function of the step."""

    def passes(step: int) -> list[Pass]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        batch = {
            "input_ids": torch.randint(1, vocab_size, (batch_size, seq_len), generator=gen),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
            "start_positions": torch.randint(0, seq_len, (batch_size,), generator=gen),
            "end_positions": torch.randint(0, seq_len, (batch_size,), generator=gen),
        }
        return [Pass(HEAD, "random", batch)]

    return passes


def loss_fn(out: dict[str, torch.Tensor], p: Pass, progress: float) -> dict[str, torch.Tensor]:
    """Span cross-entropy (random labels: only the cost matters here)."""
    return pass_losses(Objective(), out, p.batch, progress)


def measure(config: ElectraConfig, settings: BenchSettings, sizes: Sizes, peak: float | None) -> dict:
    """Train the encoder of ``config`` with our loop and derive tokens/s, model TFLOP/s, MFU and GPU-hours."""
    torch.manual_seed(settings.seed)
    model = electra_model(config)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    source = random_source(config.vocab_size, sizes.batch_size, sizes.seq_len, settings.seed)
    rows = [measure_loop(model, source, loss_fn, sizes.warmup + sizes.steps, sizes.warmup, sizes.batch_size, settings)
            for _ in range(settings.n_repeats)]
    row = summary_row(rows)
    flops = model_flops_per_s(params, row["tokens_per_s"])
    dtype = autocast_dtype(settings)
    return {
        "encoder": f"electra h{config.hidden_size} L{config.num_hidden_layers}", "params": params,
        "dtype": str(dtype).removeprefix("torch.") if dtype is not None else "float32",
        "batch_size": sizes.batch_size, "seq_len": sizes.seq_len, **row, "tflops": flops / 1e12,
        "peak_tflops_assumed": peak if peak is not None else float("nan"),
        "mfu": flops / (peak * 1e12) if peak else float("nan"),
        "paper_mtl_gpu_hours": paper_mtl_gpu_hours(row["examples_per_s"]),
        "paper_mtl_gpu_hours_reported": PAPER_MTL_GPU_HOURS,
    }


def run(settings: BenchSettings, peak_override: float | None = None) -> pd.DataFrame | None:
    """The measurement on CUDA; None (after saying why) elsewhere."""
    device = settings.torch_device
    if device.type != "cuda":
        print(f"{NAME}: skipped -- needs a CUDA GPU (device is {device.type}); it measures an ELECTRA-large-sized "
              "encoder training in bf16 at sequence 512")
        return None
    name = torch.cuda.get_device_name(device)
    peak = peak_override if peak_override is not None else peak_tflops(name)
    if peak is None:
        print(f"{NAME}: no assumed peak for GPU {name!r} (known: {', '.join(PEAK_BF16_TFLOPS)}); MFU left empty, "
              "pass --peak-tflops")
    with benchmark_process(settings):
        row = measure(ElectraConfig(**ELECTRA_LARGE), settings, QUICK if settings.quick else FULL, peak)
    context = {**context_columns(settings, "random tokens"),
               "model": f"{row['encoder']} (ELECTRA-large shape, random init)"}
    return pd.DataFrame([{"gpu": name, **row, **context, "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z")}])


def gpu_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``gpu.csv`` from the wide frame of :func:`run`: one row per measure of :data:`GPU_MEASURES` and GPU row,
    with the columns of :data:`GPU_CSV_COLUMNS` first and the rest of the wide row's context after them."""
    missing = sorted(({c for c, _ in GPU_MEASURES} | set(GPU_CSV_COLUMNS[3:])) - set(frame.columns))
    if missing:
        raise DataError(f"{NAME}: the measurement lacks the columns {missing} that gpu.csv needs")
    measured = {c for c, _ in GPU_MEASURES}
    context = [c for c in frame.columns if c not in measured and c not in GPU_CSV_COLUMNS]
    rows = [{"measure": measure, "value": float(wide[measure]), "unit": unit,
             **{c: wide[c] for c in GPU_CSV_COLUMNS[3:]}, **{c: wide[c] for c in context}}
            for _, wide in frame.iterrows() for measure, unit in GPU_MEASURES]
    return pd.DataFrame(rows, columns=[*GPU_CSV_COLUMNS, *context])


def report(frame: pd.DataFrame | None, settings: BenchSettings) -> None:
    """Write the CSVs (``gpu_mfu.csv`` wide, ``gpu.csv`` one measure a row) and print the table (nothing when
    the benchmark was skipped)."""
    if frame is None:
        return
    write_csv(frame, settings.out, NAME)
    write_csv(gpu_csv_frame(frame), settings.out, GPU_CSV)
    print_table(f"ELECTRA-large-sized encoder, bf16, our loop ({frame['gpu'].iloc[0]})", frame, COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--peak-tflops", type=float, default=None, help="assumed dense bf16 peak of this GPU")
    args = p.parse_args(argv)
    settings = settings_from_args(args)
    report(run(settings, args.peak_tflops), settings)


if __name__ == "__main__":
    main()
