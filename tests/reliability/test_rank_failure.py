"""Under torchrun, a rank 0 that fails while writing what the other ranks wait for stops them all at once.

Two processes (gloo on the CPU): rank 0 fails writing a table's results, a stage's ``DONE`` marker or a training checkpoint. Before,
the other rank waited at a barrier until the collective timed out (here 30 s; torchrun's default 30 minutes
to the command's 2 hours) with no word of why; now it raises at once, naming rank 0, what it was writing and
its error (:func:`road_repro.io.shared_outcome`).
"""

from __future__ import annotations

import json
import socket
from multiprocessing.context import ForkServerContext

import pytest

from tests.reliability import workers
from tests.reliability.workers import ERROR_EXIT, TIMEOUT_S

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    return workers.forkserver_context()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where, what", [("table", "writing the results of table table5"),
                                         ("run", "finishing the run finetune-"),
                                         ("checkpoint", "writing the checkpoint of step 10")])
def test_every_rank_stops_with_rank_0s_error(forkserver, tmp_path, where, what):
    port = _free_port()
    procs = [forkserver.Process(target=workers.rank_0_fails_writing, args=(where, rank, port, str(tmp_path)))
             for rank in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(TIMEOUT_S)
    assert [proc.exitcode for proc in procs] == [ERROR_EXIT, ERROR_EXIT]
    rank0, rank1 = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2))
    assert rank0["error"] == "OSError: [Errno 28] No space left on device"
    assert rank1["error"].startswith(f"RankFailed: rank 0 failed {what}")
    assert rank1["error"].endswith("OSError: [Errno 28] No space left on device")
    assert rank1["time"] - rank0["time"] < 10  # at once, not at the collective's timeout (30 s here)
