"""``python -m road_repro.experiments TABLE... [--profile P] [--output-dir D] [--override k=v ...] [--preflight | --plan | --dry-run]``.

The command-line way to compute tables, and the one ``torchrun`` launches for multi-GPU scales
(papermill notebooks cannot be launched by torchrun; after a torchrun pass every stage is cached, so the
notebook then only renders)::

    torchrun --nproc_per_node 8 -m road_repro.experiments table4 --profile paper

Every table named is checked first (the preflight: settings, device, models, every dataset split its
stages read), so a problem in the last table stops the command before the first one trains. The tables
share one Experiment (per resolved profile), so each process loads and tokenizes each split once.
``--preflight`` stops after the checks. ``--nproc N`` outside torchrun starts the same command through
``torchrun --standalone --nproc_per_node N``; ``--gpu`` only sizes a plan (:mod:`road_repro.experiments.launch`).
``--dry-run`` plans the compute and stops: every stage of the
tables (new, shared between tables, already cached), optimizer steps, examples and GPU-hours per stage,
per table and in total, without training or downloading anything (models and data not on disk get
planned ids and a note); it writes ``<output-dir>/<profile>/plan.json``. ``--plan`` prints the same plan
after the full preflight (which may download), as ``make reproduce-all`` does before it runs the tables.
A ``ConfigError`` or ``DataError`` prints one line per problem
(naming the file and row or the setting) and exits with status 2; a loop stopped by SIGTERM prints where its
checkpoint is and exits with 143 (stopped elsewhere, it says what it stopped),
a NaN loss or other training failure with 3 (:mod:`road_repro.errors`);
``--debug`` or ``ROAD_DEBUG=1`` shows the traceback too, with the same status. Any other exception keeps its
traceback (status 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path

from road_repro.errors import EXIT_BAD_INPUT, RoadError, TrainingError, TrainingInterrupted, exit_status
from road_repro.experiments.interrupt import doing, sigterm_stops
from road_repro.experiments.launch import env_nproc, needs_torchrun, run_argv, torchrun_argv
from road_repro.experiments.planning import plan_text
from road_repro.experiments.session import SharedExperiments
from road_repro.experiments.tables import check_tables, plan_tables, run_table
from road_repro.train.distributed import cleanup, init_distributed

__all__ = ["EXIT_BAD_INPUT", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command; a SIGTERM outside training steps too ends it with one line saying what it stopped, status
    143 (:mod:`road_repro.experiments.interrupt`)."""
    with sigterm_stops():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="+", metavar="TABLE", help="specs under ablations/, e.g. table5")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--output-dir", default="results")
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--override", action="append", default=[],
                        help="a setting as KEY=VALUE, e.g. distill.lam=0.7 (KEY=null unsets it; a bare KEY is an error)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--preflight", action="store_true", help="only check settings, models and data, then stop")
    parser.add_argument("--plan", action="store_true",
                        help="check, then list every stage the tables need (shared, cached, new) without training; "
                             "writes <output-dir>/<profile>/plan.json for progress reports")
    parser.add_argument("--dry-run", action="store_true",
                        help="plan the compute and stop: stages, steps, examples and GPU-hours per stage and table, "
                             "without training or downloading (what is not on disk gets a planned id); "
                             "writes <output-dir>/<profile>/plan.json")
    parser.add_argument("--stages", action="store_true", help="with --plan or --dry-run: one line per stage too")
    parser.add_argument("--gpu", default=None, help="only with --plan or --dry-run: the GPU to size memory for "
                        "(runtime.gpu: V100-16GB, V100-32GB, A100-40GB, A100-80GB, H100-80GB, H200-141GB)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="GPUs: a plan is sized for them (runtime.nproc; a plan's default: $NPROC, else the "
                             "profile's); a run outside torchrun starts itself through torchrun on N processes")
    parser.add_argument("--debug", action="store_true", default=bool(os.environ.get("ROAD_DEBUG")),
                        help="show tracebacks of configuration and data errors (also ROAD_DEBUG=1)")
    args = parser.parse_args(argv)
    try:
        if args.plan or args.dry_run:
            nproc = args.nproc if args.nproc is not None else env_nproc()
            args.override += [f"runtime.{key}={value}" for key, value in (("gpu", args.gpu), ("nproc", nproc))
                              if value is not None]
            print(plan_text(plan_tables(args.tables, args.profile, args.seeds, args.override, args.output_dir,
                                        args.runs_dir, offline=args.dry_run), stages=args.stages))
            return 0
        relaunch = needs_torchrun(args.nproc, args.gpu, args.preflight)  # --nproc N outside torchrun
        # One Experiment for every table (per resolved profile): each split is loaded once, by the preflight.
        experiments = SharedExperiments(Path(args.runs_dir) if args.runs_dir else Path(args.output_dir) / "runs",
                                        progress=not args.no_progress)
        with doing("checking the tables before anything trains (the preflight)"):
            check_tables(args.tables, args.profile, args.seeds, args.override, args.output_dir, args.runs_dir,
                         experiments=experiments)
        if args.preflight:
            print(f"preflight: {', '.join(args.tables)} at {args.profile}: "
                  "settings, device, models, data and folders are fine")
            return 0
        if relaunch:  # checked here first: a bad setting is one line, not torchrun's report of N failed workers
            command = torchrun_argv(args.nproc, run_argv(args))
            sys.stdout.flush(), sys.stderr.flush()
            os.execv(command[0], command)
        init_distributed(timeout=timedelta(hours=2))  # a no-op outside torchrun
        try:
            for table in args.tables:
                run_table(table, args.profile, args.seeds, args.output_dir, args.override, args.runs_dir,
                          progress=not args.no_progress, experiments=experiments)
        finally:
            cleanup()
    except RoadError as exc:
        status, word = exit_status(exc)
        if args.debug:
            traceback.print_exc()
        if os.environ.get("RANK", "0") == "0" or isinstance(exc, TrainingError) and not isinstance(exc, TrainingInterrupted):
            # torchrun: settings, data and SIGTERM are the same on every rank, so rank 0 says them once
            hint = "; rerun the same command to resume" if isinstance(exc, TrainingInterrupted) else ""
            lines = list(dict.fromkeys(line.strip() for line in str(exc).splitlines() if line.strip()))
            for line in lines:
                print(f"{word}: {line}{hint if line == lines[-1] else ''}", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
