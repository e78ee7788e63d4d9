"""Run every benchmark, print a compact table of each and write ``<out>/*.csv`` (``make bench``).

    python -m benchmarks.run_all [--quick] [--out results/bench] [--device auto] [--model tiny] [--data auto]

``--quick`` shrinks every size to a seconds-long pipeline check (what the test suite runs); the full CPU run
takes a few minutes. The GPU benchmark is skipped, with a message, where there is no CUDA device. Besides the
CSVs, ``<out>/summary.csv`` gathers the headline ratios against their goals.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from benchmarks import data_path, finetune_vs_trainer, gpu_mfu, kd_cost, mtl_passstep
from benchmarks.common import BenchSettings, parser, print_table, settings_from_args, write_csv

SUMMARY_COLUMNS = ("measure", "value", "goal", "meets_goal")


def headline(finetune: pd.DataFrame, kd: pd.DataFrame, mtl: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """The ratios the issue sets goals for, one row each: measured value, goal, and whether it is met."""
    rows = []
    for row in finetune[finetune["config"] == "ours_stage"].itertuples():  # the finetune stage's own loop
        rows.append((f"{row.task}: finetune stage (ours_stage) / best Trainer", row.vs_trainer_best, 1.0))
        rows.append((f"{row.task}: finetune stage (ours_stage) / default Trainer", row.vs_trainer_default, 1.5))
    cost = kd.set_index("config")["cost_vs_ce"]
    rows.append(("KD step time, cached soft targets / CE", cost["kd_cached"], 1.10))
    rows.append(("KD step time, 3 online teachers / CE", cost["kd_online_3"], float("nan")))
    flat = mtl["vs_pass_step_1"]
    rows.append(("MTL examples/s, slowest pass_step / pass_step 1", flat.min(), 1.0))
    for row in data[data["goal"].notna()].itertuples():  # the data path's goals (benchmarks/data_path.py)
        value = row.ratio if row.measure.startswith(("(a)", "(c)")) else row.value
        rows.append((row.measure.split(":")[0] if row.measure.startswith("(a)") else row.measure, value, row.goal))
    frame = pd.DataFrame(rows, columns=["measure", "value", "goal"])
    lower_is_better = frame["measure"].str.startswith(("KD", "(b)", "(c)"))
    meets = (frame["value"] <= frame["goal"]).where(lower_is_better, frame["value"] >= frame["goal"])
    return frame.assign(meets_goal=meets.where(frame["goal"].notna(), other=pd.NA))


def run_all(settings: BenchSettings, peak_tflops: float | None = None) -> dict[str, pd.DataFrame]:
    """Every benchmark in turn, each reported (CSV + table) as soon as it finishes; returns the frames by name."""
    frames: dict[str, pd.DataFrame] = {}
    for module in (finetune_vs_trainer, kd_cost, mtl_passstep, data_path):
        frames[module.NAME] = module.run(settings)
        module.report(frames[module.NAME], settings)
    gpu = gpu_mfu.run(settings, peak_tflops)
    gpu_mfu.report(gpu, settings)
    if gpu is not None:
        frames[gpu_mfu.NAME] = gpu
    summary = headline(frames[finetune_vs_trainer.NAME], frames[kd_cost.NAME], frames[mtl_passstep.NAME],
                       frames[data_path.NAME])
    frames["summary"] = summary
    write_csv(summary, settings.out, "summary")
    print_table("Headline ratios (measured in this run)", summary, SUMMARY_COLUMNS)
    return frames


def main(argv: Sequence[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--peak-tflops", type=float, default=None, help="assumed dense bf16 peak of the GPU (gpu_mfu)")
    args = p.parse_args(argv)
    run_all(settings_from_args(args), args.peak_tflops)


if __name__ == "__main__":
    main()
