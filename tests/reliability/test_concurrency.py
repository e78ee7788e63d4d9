"""Results are never torn or mixed: one training per stage across processes, re-runs of damaged cached runs,
and atomic writes that leave either the old file or the new one.

* Two processes call the same finetune stage on one runs folder at the same moment: the run's file lock
  makes one train and the other wait and reuse its result.
* A cached run whose artifact, ``config.json``, ``metrics.json`` or ``DONE`` marker is damaged (or that
  gained a stray file) fails its checksums and is computed again from a clean folder.
* :mod:`road_repro.io` writes: a writer that fails, or is SIGKILLed, half-way leaves the old file intact; a
  reader polling a CSV that is being rewritten only ever parses complete versions.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from pathlib import Path

import pandas as pd
import pytest

from road_repro.experiments.runs import RunStore, config_hash
from road_repro.io import atomic_write, atomic_write_csv
from road_repro.train.checkpoint import sha256_file
from tests.reliability import workers
from tests.reliability.workers import TIMEOUT_S

CONFIG = {"stage": "finetune", "seed": 1}


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    return workers.forkserver_context()


# -- two processes, one stage ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_on_one_runs_folder_train_the_stage_once(forkserver, tmp_path):
    runs, events = tmp_path / "runs", tmp_path / "events.jsonl"
    barrier = forkserver.Barrier(2)  # both call the stage at the same moment
    procs = [forkserver.Process(target=workers.run_stage, args=(str(runs), 1, str(events), barrier)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(TIMEOUT_S)
    log = workers.read_events(events)
    assert [p.exitcode for p in procs] == [0, 0], log
    trained = [e for e in log if "resumed_from" in e]
    finished = [e for e in log if "finished" in e]
    assert len(trained) == 1, f"the stage trained {len(trained)} times: {log}"
    assert len(finished) == 2 and len({e["run_id"] for e in finished}) == 1, log
    first_done = min(e["finished"] for e in finished)
    assert all(e["started"] < first_done for e in log if "started" in e), f"the calls did not overlap: {log}"
    (run,) = runs.glob("finetune-*")
    done = json.loads((run / "DONE").read_text())
    assert done["files"] == {name: sha256_file(run / name) for name in done["files"]}
    on_disk = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file() and p.name != "DONE")
    assert sorted(done["files"]) == on_disk


# -- damaged cached runs are re-run ---------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE: dict[str, Callable[[Path], None]] = {
    "artifact bit flip": lambda run: _flip_byte(run / "weights.bin"),
    "artifact truncated": lambda run: _truncate(run / "weights.bin"),
    "artifact deleted": lambda run: (run / "weights.bin").unlink(),
    "config.json corrupted": lambda run: (run / "config.json").write_text("{not json"),
    "config.json edited": lambda run: (run / "config.json").write_text(json.dumps({"kind": "finetune", "config": {}})),
    "metrics.json truncated": lambda run: _truncate(run / "metrics.json"),
    "metrics.json edited": lambda run: (run / "metrics.json").write_text(json.dumps({"f1": 99.9})),
    "DONE garbage": lambda run: (run / "DONE").write_text("\x00garbage"),
    "DONE not an object": lambda run: (run / "DONE").write_text("[]"),
    "DONE of another config": lambda run: (run / "DONE").write_text(json.dumps(
        {**json.loads((run / "DONE").read_text()), "config_hash": config_hash({"seed": 2})})),
    "DONE deleted": lambda run: (run / "DONE").unlink(),
    "stray file added": lambda run: (run / "stray.txt").write_text("from another run"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_cached_run_is_computed_again(damage: str, tmp_path: Path):
    calls: list[Path] = []

    def compute(path: Path) -> dict:
        assert [p.name for p in path.iterdir()] == ["config.json"], "a re-run starts from a clean folder"
        calls.append(path)
        (path / "weights.bin").write_bytes(bytes(range(256)) * 64)
        return {"f1": 50.0}

    run = RunStore(tmp_path).run("finetune", CONFIG, compute)
    DAMAGE[damage](run.path)
    store = RunStore(tmp_path)  # a new process: nothing verified yet
    assert store.finished("finetune", CONFIG) is None
    again = store.run("finetune", CONFIG, compute)
    assert len(calls) == 2 and again.metrics == {"f1": 50.0}
    assert RunStore(tmp_path).finished("finetune", CONFIG) == again


# -- atomic writes --------------------------------------------------------------------------------------

OLD = pd.DataFrame({"row": ["a", "b"], "value": [1.0, 2.0]})


class Unprintable:
    """A cell that cannot be written: ``to_csv`` fails on it after writing the rows before it."""

    def __str__(self) -> str:
        raise RuntimeError("writer died mid-frame")


def _only_target_left(path: Path) -> None:
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temporary files left behind"
    pd.testing.assert_frame_equal(pd.read_csv(path), OLD)


def test_failing_write_callback_leaves_the_old_file_and_no_temp_file(tmp_path: Path):
    path = atomic_write_csv(tmp_path / "table5.csv", OLD)

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("row,value\na,1.0\nb,")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    _only_target_left(path)


def test_csv_writer_dying_mid_frame_leaves_the_old_file(tmp_path: Path):
    path = atomic_write_csv(tmp_path / "table5.csv", OLD)
    rows = 50_000  # several of pandas' write chunks, so part of the frame reaches the file first
    frame = pd.DataFrame({"row": ["x"] * (rows - 1) + [Unprintable()], "value": range(rows)})
    with pytest.raises(RuntimeError, match="mid-frame"):
        atomic_write_csv(path, frame)
    _only_target_left(path)


@pytest.mark.slow
def test_sigkilled_writer_leaves_the_old_file(forkserver, tmp_path: Path):
    path = atomic_write_csv(tmp_path / "table5.csv", OLD)
    written = forkserver.Event()
    proc = forkserver.Process(target=workers.hang_in_atomic_write, args=(str(path), "row,value\nx,", written))
    proc.start()
    assert written.wait(TIMEOUT_S), "the writer never wrote"
    proc.kill()
    proc.join(TIMEOUT_S)
    assert proc.exitcode == -signal.SIGKILL
    pd.testing.assert_frame_equal(pd.read_csv(path), OLD)
    # Nothing can clean up after SIGKILL: the partial temporary file stays, hidden and never read as the target.
    (leftover,) = [p for p in tmp_path.iterdir() if p != path]
    assert leftover.name.startswith(".table5.csv.") and leftover.name.endswith(".tmp")


def test_reader_never_sees_a_partial_csv(tmp_path: Path):
    path, rows, versions = tmp_path / "results.csv", 20_000, 30
    atomic_write_csv(path, pd.DataFrame({"version": [0] * rows}))
    seen: list[int] = []
    torn: list[str] = []
    stop = threading.Event()

    def read_until_stopped() -> None:
        while not stop.is_set():
            try:
                frame = pd.read_csv(path)
            except Exception as exc:  # an empty or half-written file fails to parse
                torn.append(repr(exc))
                continue
            if len(frame) != rows or frame["version"].nunique() != 1:
                torn.append(f"{len(frame)} rows, versions {sorted(frame['version'].unique())[:5]}")
            seen.append(int(frame["version"].iloc[0]) if len(frame) else -1)

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    try:
        for version in range(1, versions + 1):
            atomic_write_csv(path, pd.DataFrame({"version": [version] * rows}))
    finally:
        stop.set()
        reader.join()
    assert not torn, torn[:3]
    assert len(seen) > 5 and len(set(seen)) > 1, "the reader should have seen several versions"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
