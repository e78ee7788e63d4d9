"""Data parallelism: 2 gloo processes train exactly what 1 process trains on the same global batches.

The multi-process tests start one job (``torch.multiprocessing.spawn``, 2 CPU ranks, the torchrun
environment variables set by hand) that runs every scenario and saves what each rank saw; each test then
checks one property of those results against a single-process run in the test process.
"""

from __future__ import annotations

import os
import signal
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st

from road_repro.config import OptimConfig
from road_repro.errors import ConfigError, DataError, TrainingError, TrainingInterrupted
from road_repro.train import loop
from road_repro.train.checkpoint import complete_checkpoints
from road_repro.train.distributed import (
    batch_rows,
    cleanup,
    gather_rows,
    init_distributed,
    rank_device,
    shard_bounds,
    shard_rows,
    torchrun_env,
)
from road_repro.train.loop import Pass, predict, resolve_device, train
from road_repro.train.objectives import Objective, pass_losses
from tests.helpers import span_batch, tiny_model

CPU = torch.device("cpu")
WORLD = 2
HEADS = {"a": "span", "b": "span", "unused": "span"}  # "unused" is in no pass: DDP must leave it alone
CFG = OptimConfig(lr=1e-2, warmup_ratio=0.0, max_grad_norm=1.0, adam_eps=1.0)  # eps=1: see test_loop
STEPS = 4
PREDICT_ROWS = 7


def ce(out, p, progress):
    return pass_losses(Objective(), out, p.batch, progress)


def global_passes(step: int) -> list[Pass]:
    """Two passes per step on different heads; pass b has 3 rows (shards 2 + 1) or 1 row (rank 1 gets none)."""
    return [Pass("a", "d0", span_batch(4, seed=step)),
            Pass("b", "d1", span_batch(3 if step % 2 == 0 else 1, seed=100 + step))]


class _Crash(Exception):
    """Stands in for a node failure in the middle of a run."""


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters()}


def _worker(rank: int, port: int, out_dir: Path, device: str) -> None:
    """One rank of the job: every scenario, results saved to ``out_dir/rank<r>.pt``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    info = init_distributed(device, timeout=timedelta(seconds=60))
    res: dict = {"info": [info.rank, info.local_rank, info.world_size, info.device.type], "out_dir": str(out_dir)}

    model = tiny_model(heads=HEADS)
    res["log"] = train(model, global_passes, ce, STEPS, CFG, num_layers=2, device=info.device, progress=False).log
    res["plain"] = _params(model)
    micro = tiny_model(heads=HEADS)  # every shard in micro-batches of 1 row: DDP syncs on the step's last one only
    train(micro, global_passes, ce, STEPS, CFG, num_layers=2, device=info.device, progress=False, max_rows_per_device=1)
    res["micro"] = _params(micro)

    saves: list[int] = []
    real_save = loop.save_checkpoint
    loop.save_checkpoint = lambda folder, step, *a, **k: saves.append(step) or real_save(folder, step, *a, **k)
    ckpt = out_dir / "checkpoints"

    def crash_at_3(step: int) -> list[Pass]:
        if step == 3:
            raise _Crash
        return global_passes(step)

    try:
        train(tiny_model(heads=HEADS), crash_at_3, ce, STEPS, CFG, num_layers=2, device=info.device,
              checkpoint_dir=ckpt, checkpoint_every=2, progress=False)
    except _Crash:
        pass
    resumed = tiny_model(heads=HEADS)
    result = train(resumed, global_passes, ce, STEPS, CFG, num_layers=2, device=info.device, checkpoint_dir=ckpt,
                   checkpoint_every=2, progress=False)
    loop.save_checkpoint = real_save
    state = torch.load(complete_checkpoints(ckpt)[-1] / "state.pt", weights_only=True)
    res.update(saves=saves, resumed_from=result.resumed_from, resumed=_params(resumed),
               rank_rng=[s["cpu"] for s in state["rank_rng"]])

    def sigterm_to_rank_1_in_step_1(step: int) -> list[Pass]:
        if step == 1 and rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return global_passes(step)

    try:
        train(tiny_model(heads=HEADS), sigterm_to_rank_1_in_step_1, ce, STEPS, CFG, num_layers=2, device=info.device,
              checkpoint_dir=out_dir / "preempted", progress=False)
        res["preempted"] = "no stop"
    except TrainingInterrupted as exc:
        res["preempted"] = str(exc)

    features = span_batch(PREDICT_ROWS, seed=9)
    res["predict"] = predict(tiny_model(seed=3, heads=HEADS), features, "a", 2, info.device)
    res["predict_one_row"] = predict(tiny_model(seed=3, heads=HEADS), span_batch(1, seed=9), "a", 2, info.device)
    res["gathered"] = gather_rows(torch.arange(rank + 2, device=info.device) + 10 * rank).cpu()

    def disagreeing(step: int) -> list[Pass]:
        return [Pass("a" if rank == 0 else "b", "d0", span_batch(4, seed=step))]

    try:
        train(tiny_model(heads=HEADS), disagreeing, ce, 1, CFG, num_layers=2, device=info.device, progress=False)
        res["disagreement"] = "no error"
    except TrainingError as exc:
        res["disagreement"] = str(exc)
    cleanup()
    torch.save(res, out_dir / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_job(out_dir: Path, device: str) -> list[dict]:
    """Run the 2-rank job on ``device`` ("cpu": gloo, "cuda": NCCL) and load what each rank saved.

    CPU ranks are forked (no second import of torch and transformers, the bulk of the test's time); CUDA
    cannot be forked once initialised, so GPU ranks are spawned.
    """
    method = "spawn" if device == "cuda" else "fork"
    mp.start_processes(_worker, args=(_free_port(), out_dir, device), nprocs=WORLD, join=True, start_method=method)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def single_process_params() -> dict[str, torch.Tensor]:
    """What one process trains from the same initialisation on the same global batches."""
    model = tiny_model(heads=HEADS)
    log = train(model, global_passes, ce, STEPS, CFG, num_layers=2, device=CPU, progress=False).log
    return {"log": log, **_params(model)}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> list[dict]:
    return run_job(tmp_path_factory.mktemp("ddp"), "cpu")


@pytest.fixture(scope="module")
def reference() -> dict:
    return single_process_params()


def assert_same_training(ranks: list[dict], reference: dict, key: str, atol: float = 1e-5) -> None:
    """Every rank holds identical weights, equal to the single-process ones to float tolerance."""
    for name, value in ranks[0][key].items():
        assert torch.equal(value, ranks[1][key][name]), f"ranks differ on {name}"
        torch.testing.assert_close(value, reference[name], rtol=0, atol=atol, msg=name)


@pytest.mark.slow
def test_ranks_report_their_place_from_the_torchrun_environment(job):
    assert [r["info"] for r in job] == [[0, 0, 2, "cpu"], [1, 1, 2, "cpu"]]


@pytest.mark.slow
def test_two_processes_train_the_same_weights_as_one(job, reference):
    assert_same_training(job, reference, "plain")
    unused = [name for name in reference if name.startswith("heads.unused")]
    assert unused and all(torch.equal(job[0]["plain"][n], tiny_model(heads=HEADS).state_dict()[n]) for n in unused)


@pytest.mark.slow
def test_two_processes_in_micro_batches_train_the_same_weights_as_one(job, reference):
    assert_same_training(job, reference, "micro")


def test_logged_losses_are_global_batch_means(job, reference):
    for rank in job:
        got = [row["total"] for row in rank["log"]]
        want = [row["total"] for row in reference["log"]]
        assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints_and_all_ranks_resume_from_it(job, reference):
    assert job[0]["saves"] == [2, 4] and job[1]["saves"] == []
    assert [r["resumed_from"] for r in job] == [2, 2]
    assert_same_training(job, reference, "resumed")


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_after_the_same_step_with_a_checkpoint(job):
    assert [r["preempted"] for r in job] == [f"SIGTERM after step 2 of {STEPS}; checkpoint saved in "
                                             f"{job[0]['out_dir']}/preempted"] * WORLD
    assert [p.name for p in complete_checkpoints(Path(job[0]["out_dir"]) / "preempted")] == ["step-00000002"]


@pytest.mark.slow
def test_checkpoints_keep_each_ranks_own_rng_stream(job):
    streams = job[0]["rank_rng"]
    assert len(streams) == WORLD and not torch.equal(streams[0], streams[1])


@pytest.mark.slow
def test_predict_gathers_rows_back_in_order(job):
    model = tiny_model(seed=3, heads=HEADS)
    want = predict(model, span_batch(PREDICT_ROWS, seed=9), "a", 2, CPU)
    want_one = predict(model, span_batch(1, seed=9), "a", 2, CPU)
    for rank in job:
        for key in want:
            torch.testing.assert_close(rank["predict"][key], want[key], rtol=0, atol=1e-6)
            torch.testing.assert_close(rank["predict_one_row"][key], want_one[key], rtol=0, atol=1e-6)
        assert rank["gathered"].tolist() == [0, 1, 10, 11, 12]


@pytest.mark.slow
def test_ranks_that_disagree_on_the_passes_stop_with_a_clear_error(job):
    for rank in job:
        assert "ranks disagree on the passes of step 0" in rank["disagreement"]


# -- single-process pieces -------------------------------------------------------------------------------


@given(rows=st.integers(0, 200), world=st.integers(1, 16))
def test_shards_are_contiguous_near_equal_and_cover_the_batch_in_order(rows, world):
    bounds = [shard_bounds(rows, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == rows
    assert all(hi == next_lo for (_, hi), (next_lo, _) in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_rows_slices_every_tensor_and_concatenates_back():
    batch = span_batch(5)
    shards = [shard_rows(batch, r, 2) for r in range(2)]
    assert [batch_rows(s) for s in shards] == [3, 2]
    for key, value in batch.items():
        assert torch.equal(torch.cat([s[key] for s in shards]), value)


def test_batches_whose_tensors_disagree_on_rows_are_rejected_naming_them():
    batch = {**span_batch(4), "start_positions": torch.zeros(3, dtype=torch.long)}
    with pytest.raises(DataError, match="'start_positions': 3"):
        shard_rows(batch, 0, 2)
    with pytest.raises(ConfigError, match="rank 2 is outside a world of 2"):
        shard_bounds(4, 2, 2)


def test_without_torchrun_everything_is_a_single_process(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_env() is None
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.device, info.is_main, info.distributed) == (0, 1, CPU, True, False)
    assert not torch.distributed.is_initialized()
    x = torch.arange(3)
    assert gather_rows(x) is x


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert torchrun_env() == (3, 1, 4)
    assert resolve_device("cpu") == CPU
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ConfigError, match="RANK=4, LOCAL_RANK=1, WORLD_SIZE=4"):
        torchrun_env()
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ConfigError, match="only RANK, LOCAL_RANK is set"):
        torchrun_env()


def test_each_rank_needs_its_own_gpu(monkeypatch):
    with pytest.raises(ConfigError, match="pins every rank to one GPU"):
        rank_device(torch.device("cuda:0"), 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert rank_device(torch.device("cuda"), 1) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="--nproc_per_node must not exceed the GPUs per node"):
        rank_device(torch.device("cuda"), 2)


def test_a_step_without_passes_is_an_error():
    with pytest.raises(TrainingError, match="no passes for step 0"):
        train(tiny_model(), lambda step: [], ce, 1, CFG, num_layers=2, device=CPU, progress=False)
