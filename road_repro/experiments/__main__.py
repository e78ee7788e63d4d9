"""``python -m road_repro.experiments TABLE [--profile P] [--output-dir D] [--override k=v ...]``.

The command-line way to compute a table, and the one ``torchrun`` launches for multi-GPU scales
(papermill notebooks cannot be launched by torchrun; after a torchrun pass every stage is cached, so the
notebook then only renders)::

    torchrun --nproc_per_node 8 -m road_repro.experiments table4 --profile paper
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from road_repro.experiments.tables import run_table
from road_repro.train.distributed import cleanup, init_distributed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="a spec under ablations/, e.g. table5")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--output-dir", default="results")
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--override", action="append", default=[], help="dotlist setting, e.g. distill.lam=0.7")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    init_distributed(timeout=timedelta(hours=2))  # a no-op outside torchrun
    try:
        run_table(args.table, args.profile, args.seeds, args.output_dir, args.override, args.runs_dir,
                  progress=not args.no_progress)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
