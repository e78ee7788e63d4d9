"""How ``--nproc`` and ``--gpu`` of ``python -m road_repro.experiments`` (and ``road-repro run``) take effect.

``--gpu`` and ``runtime.gpu`` only size a plan's memory (``--plan`` / ``--dry-run``): a run uses the GPUs it
runs on, so ``--gpu`` anywhere else is an error rather than a flag that does nothing. ``--nproc N`` plans for
N GPUs, and runs on N: outside torchrun a run with ``N > 1`` passes the preflight in its own process, then
starts itself again through ``torchrun --standalone --nproc_per_node N`` (:func:`torchrun_argv`, as ``make
reproduce-all NPROC=N`` launches each table); under torchrun N must be the job's ``WORLD_SIZE``.
``$NPROC`` (set by ``make ... NPROC=N``) is a plan's default only: the Makefile starts torchrun itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from road_repro.errors import ConfigError
from road_repro.train.distributed import torchrun_env


def env_nproc() -> int | None:
    """``$NPROC`` as a number of GPUs (None when unset or empty); a clear error when it is not a number."""
    value = os.environ.get("NPROC", "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"NPROC={value!r} in the environment must be a number of GPUs") from None


def torchrun_argv(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``python -m road_repro.experiments ARGV`` as ``nproc`` processes on this node
    (torchrun as a module of this interpreter: no ``torchrun`` script on PATH needed). ``argv`` must hold no
    option torchrun's own parser would claim: it reads abbreviations anywhere on the line (``--nproc`` is
    ambiguous there), so :func:`run_argv` rebuilds a run's options in full, without ``--nproc``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "road_repro.experiments", *argv]


def run_argv(args: argparse.Namespace) -> list[str]:
    """The options of a run (tables, profile, folders, seeds, overrides, progress, debug) spelt out in full,
    for the command torchrun starts (:func:`torchrun_argv`); ``--nproc`` is torchrun's ``WORLD_SIZE`` there."""
    argv = [*args.tables, "--profile", args.profile, "--output-dir", args.output_dir]
    if args.runs_dir:
        argv += ["--runs-dir", args.runs_dir]
    if args.seeds is not None:
        argv += ["--seeds", *map(str, args.seeds)]
    for item in args.override:
        argv += ["--override", item]
    return argv + (["--no-progress"] if args.no_progress else []) + (["--debug"] if args.debug else [])


def needs_torchrun(nproc: int | None, gpu: str | None, preflight: bool) -> bool:
    """Whether a run (not a plan) given ``--nproc nproc`` and ``--gpu gpu`` must start itself through torchrun;
    a :class:`ConfigError` for a flag that would change nothing or contradict the torchrun job it runs in."""
    if gpu is not None:
        raise ConfigError(f"--gpu {gpu} only sizes a plan's memory: use it with --plan or --dry-run (a run uses "
                          "the GPUs it runs on)")
    if nproc is None:
        return False
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: the number of GPUs must be at least 1")
    if preflight:
        raise ConfigError(f"--nproc {nproc} with --preflight: the preflight starts no processes; use --nproc with a "
                          "run, --plan or --dry-run")
    env = torchrun_env()
    if env is not None:
        if env[2] != nproc:
            raise ConfigError(f"--nproc {nproc} but this torchrun job has WORLD_SIZE={env[2]}: drop --nproc or make "
                              "them agree")
        return False
    return nproc > 1
