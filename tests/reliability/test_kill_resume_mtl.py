"""Kill and resume a ROaD MTL stage: SIGKILLed at a random step, rerun, it ends bit-identical to a clean run.

The MTL data order (dataset draw per pass, per-dataset cursors) is a pure function of the step, so a resumed
stage replays exactly the passes an uninterrupted one sees; this checks it end to end on the tiny stage of
:func:`tests.reliability.workers.run_mtl_stage` (12 steps, a checkpoint after each).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.reliability import workers
from tests.reliability.workers import TIMEOUT_S

pytestmark = pytest.mark.slow

ARTIFACTS = ("model.safetensors", "encoder.safetensors", "metrics.json", "train_log.json")
KILL_SEED = int(os.environ.get("ROAD_KILL_SEED", random.randrange(2**31)))


def _steps(runs: Path) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in runs.glob("mtl-*/checkpoints/step-*/COMPLETE"))


def _run(ctx, runs: Path, kill_at: int | None = None) -> None:
    proc = ctx.Process(target=workers.run_mtl_stage, args=(str(runs), str(runs.parent / f"{runs.name}.events")))
    proc.start()
    if kill_at is not None:
        deadline = time.monotonic() + TIMEOUT_S
        while not (steps := _steps(runs)) or steps[-1] < kill_at:
            assert proc.is_alive() and time.monotonic() < deadline, f"no checkpoint {kill_at} (exit {proc.exitcode})"
            time.sleep(0.002)
        proc.kill()
    proc.join(TIMEOUT_S)
    assert proc.exitcode == (-signal.SIGKILL if kill_at is not None else 0), proc.exitcode


def test_mtl_stage_killed_mid_run_resumes_bit_identical(tmp_path):
    ctx = workers.forkserver_context()
    reference, runs = tmp_path / "reference", tmp_path / "runs"
    _run(ctx, reference)
    kill_at = random.Random(KILL_SEED).randint(2, 9)
    _run(ctx, runs, kill_at=kill_at)
    assert not list(runs.glob("mtl-*/DONE"))
    newest = _steps(runs)[-1]
    _run(ctx, runs)
    resumed = [e["resumed_from"] for e in workers.read_events(tmp_path / "runs.events") if "resumed_from" in e]
    assert resumed == [None, newest], resumed  # the rerun continued from the newest checkpoint, not from scratch
    (done,), (ref,) = runs.glob("mtl-*"), reference.glob("mtl-*")
    assert (done / "DONE").is_file()
    different = [name for name in ARTIFACTS if (done / name).read_bytes() != (ref / name).read_bytes()]
    assert not different, f"ROAD_KILL_SEED={KILL_SEED} kill at {kill_at}: {different} differ"
