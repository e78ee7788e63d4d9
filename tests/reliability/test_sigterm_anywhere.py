"""SIGTERM outside training steps (here: while a stage writes its soft targets) ends the command with one line
saying what it stopped and status 143, leaves no half-written file, and the stage is computed again on a rerun.

Before, the process died at once, with no word (status -15), leaving the temporary file of the write.
"""

from __future__ import annotations

import json
import os
import signal
import time
from multiprocessing.context import ForkServerContext

import pytest

from road_repro.errors import EXIT_INTERRUPTED, TrainingInterrupted
from road_repro.experiments.interrupt import doing, sigterm_held, sigterm_stops
from tests.reliability import workers
from tests.reliability.workers import TIMEOUT_S


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    return workers.forkserver_context()


@pytest.mark.slow
def test_sigterm_while_writing_a_stage_says_what_it_stopped_and_leaves_no_partial_file(forkserver, tmp_path):
    proc = forkserver.Process(target=workers.sigterm_while_writing_a_stage, args=(str(tmp_path),))
    proc.start()
    proc.join(TIMEOUT_S)
    assert proc.exitcode == 0, f"the worker died with status {proc.exitcode}"
    result = json.loads((tmp_path / "result.json").read_text())
    (run,) = (tmp_path / "results" / "runs").glob("soft_targets-*")
    assert result["status"] == EXIT_INTERRUPTED == 143
    assert result["stderr"].splitlines()[-1] == (f"interrupted: SIGTERM while computing {run.name} (table5 smoke); "
                                                 "finished stages are kept; rerun the same command to resume")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # no DONE, no temporary file


def test_a_held_sigterm_waits_for_the_end_of_the_block():
    steps = []
    with sigterm_stops(), pytest.raises(TrainingInterrupted, match="SIGTERM while finishing a run; finished"):
        with doing("finishing a run"), sigterm_held():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("metrics")
            os.kill(os.getpid(), signal.SIGTERM)  # a second one changes nothing
            steps.append("DONE")
    assert steps == ["metrics", "DONE"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again


def test_a_forked_worker_still_dies_of_sigterm():
    """A pool of forked workers (``datasets.map(num_proc=...)`` building features) is stopped with SIGTERM: the
    inherited handler must not turn that into an exception running on in the worker."""
    with sigterm_stops():
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                time.sleep(30)
            finally:
                os._exit(0)
        time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
