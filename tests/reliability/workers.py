"""Process targets for the reliability tests: a tiny smoke finetune stage, and an atomic write that hangs.

The tests start these in processes forked by a multiprocessing *forkserver* that imported this module
(and with it torch, transformers and road_repro) once, so that each killed-and-restarted run costs a fork
instead of a ~10 s interpreter start. Run by hand, ``python tests/reliability/workers.py RUNS_DIR [SEED]``
runs the stage once in a fresh interpreter (the tests' uninterrupted reference run).

:func:`run_stage` appends JSON lines to an optional ``events`` file: ``{"pid", "started"}``, then one
``{"pid", "resumed_from"}`` per training run (the checkpoint step it resumed from, ``null`` for a fresh
start; recorded by wrapping :func:`road_repro.train.loop.load_latest`), then ``{"pid", "finished",
"run_id"}`` or ``{"pid", "error"}`` with the traceback.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from multiprocessing.context import ForkServerContext
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import torch

from road_repro.config import load_profile
from road_repro.errors import TrainingInterrupted
from road_repro.experiments.stages import Experiment
from road_repro.io import atomic_write
from road_repro.train import loop

#: Exit status of a run that SIGTERM stopped cleanly (checkpoint saved, TrainingInterrupted raised).
INTERRUPTED_EXIT = 3
#: Exit status of a run that failed with any other exception (its traceback is in the events file).
ERROR_EXIT = 4
#: Seconds the tests wait for a worker before failing (generous: the CPU may be shared).
TIMEOUT_S = 180

#: Settings that make the smoke finetune tiny: 48 training questions in batches of 8 for 3 epochs
#: (18 optimizer steps), 16 dev questions, a checkpoint after every optimizer step.
OVERRIDES = (
    "models.large.warm_start=null",
    "tasks.squad_v2.train.limit=48",
    "tasks.squad_v2.dev.limit=16",
    "finetune.batch_size=8",
    "finetune.eval_batch_size=16",
    "finetune.epochs=3",
    "runtime.checkpoint_every=1",
    "runtime.progress=false",
    "runtime.device=cpu",
)


def forkserver_context() -> ForkServerContext:
    """The multiprocessing context whose server process preloads this module (and torch with it)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def read_events(events: Path) -> list[dict[str, Any]]:
    """The events written so far (none if the file does not exist yet)."""
    if not events.exists():
        return []
    return [json.loads(line) for line in events.read_text().splitlines() if line.strip()]


def _append(events: Path | None, event: dict[str, Any]) -> None:
    """Append one event line (a single small ``write`` in append mode, so concurrent writers do not interleave)."""
    if events is not None:
        with open(events, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), **event}) + "\n")


def _record_resumes(events: Path) -> None:
    """Wrap the loop's ``load_latest`` so that every training run logs the step it resumed from."""
    load_latest = loop.load_latest

    def load_and_record(folder: Path, model: torch.nn.Module) -> dict[str, Any] | None:
        state = load_latest(folder, model)
        _append(events, {"resumed_from": None if state is None else int(state["step"])})
        return state

    loop.load_latest = load_and_record


def run_stage(runs_dir: str, seed: int, events: str | None = None, start: Barrier | None = None) -> None:
    """Run the tiny finetune stage into ``runs_dir``; exit with :data:`INTERRUPTED_EXIT` on SIGTERM.

    One intra-op thread, so that every process (whatever the machine) does the same float arithmetic
    and results can be compared bit for bit. ``start`` (a barrier) lines up concurrent callers.
    """
    torch.set_num_threads(1)
    log = Path(events) if events else None
    if log is not None:
        _record_resumes(log)
    if start is not None:
        start.wait()
    _append(log, {"started": time.time()})
    experiment = Experiment(load_profile("smoke", OVERRIDES), Path(runs_dir), progress=False)
    try:
        run = experiment.finetune("squad_v2", "large", seed)
    except TrainingInterrupted:
        sys.exit(INTERRUPTED_EXIT)
    except Exception:
        _append(log, {"error": traceback.format_exc()})
        sys.exit(ERROR_EXIT)
    _append(log, {"finished": time.time(), "run_id": run.run_id})


def hang_in_atomic_write(path: str, partial: str, written: Event) -> None:
    """Start an atomic write of ``path``, write ``partial`` to its temporary file, signal, and hang (to be killed)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            fh.write(partial)
            fh.flush()
            written.set()
            time.sleep(600)

    atomic_write(Path(path), write)


def rank_0_fails_writing(where: str, rank: int, port: int, out: str) -> None:
    """Rank ``rank`` of two (gloo on the CPU): rank 0 fails while writing what the other rank waits for, either
    ``"table"`` (a table's first CSV: ``run_table`` with the table's computation stubbed out), ``"run"`` (a
    stage's ``DONE`` marker) or ``"checkpoint"`` (a training checkpoint, as a full disk at hour 10). Each rank records its error and the time in ``<out>/rank<rank>.json``; rank 0
    then lives on, as a notebook that caught the error would, until rank 1 has recorded (at most 60 s)."""
    from datetime import timedelta

    import pandas as pd

    import road_repro.experiments.rows as rows
    import road_repro.experiments.runs as runs
    import road_repro.experiments.tables as tables
    from road_repro.report import claims, plots, summary
    from road_repro.train.distributed import init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    init_distributed("cpu", timeout=timedelta(seconds=30))
    root = Path(out)

    def disk_full(*args: Any, **kwargs: Any) -> None:
        if rank == 0:
            raise OSError(28, "No space left on device")

    try:
        if where == "table":
            rows.TableRunner.compute = lambda self: pd.DataFrame(columns=rows.TIDY_COLUMNS)
            rows.TableRunner.no_answer_baselines = lambda self: {}
            summary.summarize = lambda frame, spec: frame
            plots.plot_table = lambda *args: None
            claims.evaluate_claims = lambda frame, spec: frame
            tables.atomic_write_csv = disk_full
            tables.run_table("table5", "smoke", output_dir=root / "results", progress=False)
        elif where == "run":
            real = runs.atomic_write_json
            runs.atomic_write_json = lambda path, obj: disk_full() if path.name == "DONE" else real(path, obj)
            runs.RunStore(root / "runs").run("finetune", {"seed": 1}, lambda path: {"f1": 1.0})
        else:  # a training checkpoint
            import torch

            import road_repro.train.loop as loop
            from road_repro.train.distributed import init_distributed as info_of

            model = torch.nn.Linear(2, 2)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
            loop.save_checkpoint = disk_full
            scaler = loop.grad_scaler(None, torch.device("cpu"))
            loop._checkpoint(root / "checkpoints", 10, model, optimizer, scheduler, scaler, loop.TrainResult(),
                             info_of("cpu"))
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    (root / f"rank{rank}.json").write_text(json.dumps({"error": error, "time": time.time()}))
    if rank == 0:
        deadline = time.time() + 60
        while not (root / "rank1.json").exists() and time.time() < deadline:
            time.sleep(0.1)
    os._exit(ERROR_EXIT if error else 0)  # no process-group teardown: a peer may be gone


def sigterm_while_writing_a_stage(out: str) -> None:
    """``python -m road_repro.experiments table5`` in this process, its table stubbed to one stage whose artifact
    gets SIGTERM half-way through being written (as a preempted job stopped while writing soft targets; the
    preflight is skipped). Records the command's status and stderr in ``<out>/result.json``."""
    import contextlib
    import io
    import signal

    import road_repro.experiments.rows as rows
    from road_repro.experiments import __main__ as cli

    def half_then_sigterm(tmp: Path) -> None:
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)

    def compute(self: rows.TableRunner) -> None:
        self.exp.store.run("soft_targets", {"teacher": 1},
                           lambda path: atomic_write(path / "soft_targets.safetensors", half_then_sigterm) and {})

    rows.TableRunner.compute = compute
    cli.check_tables = lambda *args, **kwargs: None
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = cli.main(["table5", "--output-dir", str(Path(out) / "results"), "--no-progress"])
    (Path(out) / "result.json").write_text(json.dumps({"status": status, "stderr": stderr.getvalue()}))


if __name__ == "__main__":
    run_stage(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)


#: Settings for a tiny ROaD MTL stage: 12 optimizer steps of 2 passes over four synthetic datasets.
MTL_OVERRIDES = (
    "models.large.warm_start=null",
    "mtl.optim.steps=12",
    "mtl.optim.batch_size=8",
    "mtl.datasets.synthetic_squad_warmup.limit=40",
    "mtl.datasets.synthetic_nli.limit=40",
    "mtl.datasets.synthetic_sentiment.limit=40",
    "mtl.datasets.synthetic_paraphrase.limit=40",
    "runtime.checkpoint_every=1",
    "runtime.progress=false",
    "runtime.device=cpu",
)


def run_mtl_stage(runs_dir: str, events: str) -> None:
    """Run the tiny ROaD MTL stage (pass_step 2) into ``runs_dir``, one thread, logging resumes to ``events``."""
    torch.set_num_threads(1)
    _record_resumes(Path(events))
    experiment = Experiment(load_profile("smoke", MTL_OVERRIDES), Path(runs_dir), progress=False)
    experiment.mtl("large", "road", pass_step=2)
