"""Kill and resume: a smoke finetune stage killed at random steps finishes bit-identical to an uninterrupted run.

A tiny finetune stage (:mod:`tests.reliability.workers`, 18 optimizer steps, a checkpoint after each) runs
in processes forked from a forkserver that imported torch once. The tests SIGKILL it as soon as the
checkpoint of a randomly drawn step exists (so the kill lands anywhere in the next step, checkpoint
writing included), stop it with SIGTERM, or tear its newest checkpoint; then rerun it to completion. The
final weights, dev logits, predictions, metrics and training log must equal, byte for byte, those of an
uninterrupted run in a fresh interpreter (on CPU, one thread). Every restart must resume from exactly the
newest intact checkpoint (recorded by the worker), so a silent restart from scratch cannot pass.

The kill steps come from ``ROAD_KILL_SEED`` (random when unset; printed in every failure message).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from functools import cached_property
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from road_repro.train.train_log import read_rows
from tests.reliability import workers
from tests.reliability.workers import TIMEOUT_S

pytestmark = pytest.mark.slow

SEED = 1
#: Files of a finished finetune run that must be identical however often it was interrupted.
ARTIFACTS = ("model.safetensors", "dev_logits.safetensors", "metrics.json", "predictions.json", "na_probs.json",
             "train_log.json")
#: Kill windows (checkpoint steps) for the SIGKILL test: one kill drawn in each, all before the last step (18).
KILL_WINDOWS = ((1, 4), (6, 9), (11, 14))
POLL_S = 0.002
KILL_SEED = int(os.environ.get("ROAD_KILL_SEED", random.randrange(2**31)))


class Reference:
    """The uninterrupted run, started in a fresh interpreter as soon as the module starts (runs in parallel)."""

    def __init__(self, runs: Path):
        self.runs = runs
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self._proc = subprocess.Popen([sys.executable, workers.__file__, str(runs), str(SEED)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @cached_property
    def run_dir(self) -> Path:
        """The finished run folder (waits for the run the first time)."""
        out, _ = self._proc.communicate(timeout=TIMEOUT_S)
        assert self._proc.returncode == 0, f"reference run failed:\n{out}"
        return finished_run(self.runs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return Reference(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    return workers.forkserver_context()


def finished_run(runs: Path) -> Path:
    """The one finetune run folder in ``runs``, which must carry its ``DONE`` marker."""
    (run,) = runs.glob("finetune-*")
    assert (run / "DONE").is_file(), f"{run} has no DONE marker"
    return run


def checkpoint_steps(runs: Path) -> list[int]:
    """Steps of the checkpoints that carry a ``COMPLETE`` marker (written last, then renamed into place)."""
    return sorted(int(p.parent.name.split("-")[1]) for p in runs.glob("finetune-*/checkpoints/step-*/COMPLETE"))


def newest_checkpoint(runs: Path) -> Path:
    (folder,) = runs.glob("finetune-*/checkpoints")
    return folder / f"step-{checkpoint_steps(runs)[-1]:08d}"


def start(ctx: ForkServerContext, runs: Path, events: Path) -> BaseProcess:
    proc = ctx.Process(target=workers.run_stage, args=(str(runs), SEED, str(events)))
    proc.start()
    return proc


def wait_for_checkpoint(proc: BaseProcess, runs: Path, events: Path, step: int) -> int:
    """Wait (polling) until a checkpoint of ``step`` or later exists while ``proc`` runs; return the newest step."""
    deadline = time.monotonic() + TIMEOUT_S
    while not (steps := checkpoint_steps(runs)) or steps[-1] < step:
        assert proc.is_alive(), f"run exited ({proc.exitcode}) before checkpoint {step}: {workers.read_events(events)}"
        assert time.monotonic() < deadline, f"no checkpoint {step} after {TIMEOUT_S} s"
        time.sleep(POLL_S)
    return steps[-1]


def finish(proc: BaseProcess, events: Path, expect: int = 0) -> None:
    proc.join(TIMEOUT_S)
    assert proc.exitcode == expect, f"exit status {proc.exitcode}, expected {expect}: {workers.read_events(events)}"


def resumes(events: Path) -> list[int | None]:
    """The step each training run resumed from, in order (None: a fresh start)."""
    return [e["resumed_from"] for e in workers.read_events(events) if "resumed_from" in e]


def differences(run: Path, reference: Path) -> list[str]:
    """What differs between two finished runs: whole files, and for safetensors the tensors that differ."""
    out = []
    for name in ARTIFACTS:
        got, want = (run / name).read_bytes(), (reference / name).read_bytes()
        if got == want:
            continue
        out.append(name)
        if name.endswith(".safetensors"):
            a, b = load_file(run / name), load_file(reference / name)
            out += [f"  {k}: max |diff| {(a[k] - b[k]).abs().max().item():.3g}" for k in b if not a[k].equal(b[k])]
    return out


def test_sigkill_at_random_steps_then_resume_is_bit_identical(forkserver, reference, tmp_path):
    rng = random.Random(KILL_SEED)
    runs, events = tmp_path / "runs", tmp_path / "events.jsonl"
    expected: list[int | None] = [None]  # the first run starts fresh
    newest = 0
    for low, high in KILL_WINDOWS:
        target = max(rng.randint(low, high), newest + 1)
        proc = start(forkserver, runs, events)
        wait_for_checkpoint(proc, runs, events, target)
        proc.kill()
        finish(proc, events, expect=-signal.SIGKILL)
        newest = checkpoint_steps(runs)[-1]
        expected.append(newest)  # the next run must resume from the newest checkpoint the kill left
    finish(start(forkserver, runs, events), events)
    context = f"ROAD_KILL_SEED={KILL_SEED}, events: {workers.read_events(events)}"
    assert resumes(events) == expected, context
    assert not differences(finished_run(runs), reference.run_dir), context
    assert not list(runs.glob("**/.*.tmp*")), "temporary files left in a finished run"
    # the training log holds every step once, with the uninterrupted run's losses, across the kills
    log, ref = (read_rows(run / "train_log.csv") for run in (finished_run(runs), reference.run_dir))
    assert [(r["step"], r["total"], r["datasets"]) for r in log] == [(r["step"], r["total"], r["datasets"]) for r in ref]


def test_sigterm_saves_a_checkpoint_exits_cleanly_and_resumes_identically(forkserver, reference, tmp_path):
    rng = random.Random(KILL_SEED + 1)
    runs, events = tmp_path / "runs", tmp_path / "events.jsonl"
    proc = start(forkserver, runs, events)
    seen = wait_for_checkpoint(proc, runs, events, rng.randint(2, 12))
    proc.terminate()
    finish(proc, events, expect=workers.INTERRUPTED_EXIT)  # TrainingInterrupted after a checkpoint
    stopped_at = checkpoint_steps(runs)[-1]
    context = f"ROAD_KILL_SEED={KILL_SEED}, events: {workers.read_events(events)}"
    assert stopped_at >= seen, context
    assert not list(runs.glob("finetune-*/checkpoints/.step-*")), "a clean stop leaves no temporary checkpoint"
    assert not list(runs.glob("finetune-*/DONE")), "an interrupted run must not be marked done"
    finish(start(forkserver, runs, events), events)
    assert resumes(events) == [None, stopped_at], context
    assert not differences(finished_run(runs), reference.run_dir), context


def test_torn_newest_checkpoint_falls_back_to_the_previous_one(forkserver, reference, tmp_path):
    rng = random.Random(KILL_SEED + 2)
    runs, events = tmp_path / "runs", tmp_path / "events.jsonl"
    proc = start(forkserver, runs, events)
    wait_for_checkpoint(proc, runs, events, rng.randint(3, 12))
    proc.kill()
    finish(proc, events, expect=-signal.SIGKILL)
    *_, previous, newest = checkpoint_steps(runs)
    torn = newest_checkpoint(runs) / rng.choice(("model.safetensors", "state.pt"))
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # a torn write the COMPLETE checksum catches
    finish(start(forkserver, runs, events), events)
    context = f"ROAD_KILL_SEED={KILL_SEED}, tore {torn.name} of step {newest}, events: {workers.read_events(events)}"
    assert resumes(events) == [None, previous], context
    assert not differences(finished_run(runs), reference.run_dir), context
