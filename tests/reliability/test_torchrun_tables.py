"""``torchrun --nproc_per_node 2`` (gloo, CPU) computes two MTL tables from an empty results folder like one process.

What a user with 8 GPUs runs first, at test size: ``torchrun ... -m road_repro.experiments blog_teacher table5``
(ROaD MTL, finetuning, KD / annealing / Weighted KD from same-model teachers, cross-model KD from the large
model to the base one, an ensemble; 14 stages) into an empty folder, so that every feature folder, soft-target file,
checkpoint and run folder is built under torchrun, by whichever rank gets there first. Then:

* the CSVs equal a one-process run's (same rows, stages and run ids; dropout is off at the smoke scale, so
  values agree up to floating-point reduction order), and that one process loaded each split once for both
  tables (one Experiment per command);
* one rank of a rerun is SIGKILLed in the middle of the ROaD MTL stage (its run folder removed first), and
  the next rerun resumes that stage from its checkpoint and finishes, with the same final loss.

Before the writers' rule (road_repro/io.py) the first torchrun failed on rank 1 with ``FileNotFoundError:
.../features/<fingerprint>-train/manifest.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import road_repro.experiments.context as context
from road_repro.experiments.__main__ import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("blog_teacher", "table5")
#: Test size: no warm starts, one seed and one teacher, 12-32 examples per split, 1 epoch at batch 8, ROaD MTL
#: 12 steps (a checkpoint after each, so a rank can be killed in the middle of the stage).
ARGS = ["--profile", "smoke", "--seeds", "1", "--no-progress"] + [f"--override={o}" for o in (
    "models.large.warm_start=null", "models.base.warm_start=null", "distill.n_teachers=1",
    "tasks.squad_v2.train.limit=32", "tasks.squad_v2.dev.limit=12",
    "finetune.batch_size=8", "finetune.eval_batch_size=16", "finetune.epochs=1",
    "mtl.optim.steps=12", "mtl.optim.batch_size=8",
    "mtl.datasets.synthetic_squad_warmup.limit=16", "mtl.datasets.synthetic_nli.limit=16",
    "mtl.datasets.synthetic_sentiment.limit=16", "mtl.datasets.synthetic_paraphrase.limit=16",
    "runtime.checkpoint_every=1",
)]
TIMEOUT_S = 300


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _torchrun(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "road_repro.experiments", *TABLES, "--output-dir", str(out), *ARGS]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, output[-4000:]
    return output


def _csv(out: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(out / "smoke" / f"{table}.csv")


def _road_mtl(runs: Path) -> Path:
    """The ROaD MTL run (of the large model): shared by both tables."""
    (path,) = runs.glob("mtl-*")
    return path


def _rank_pid(agent: int, rank: int) -> int | None:
    """The pid of torchrun's worker ``rank`` (a child of the agent process whose environment says RANK=rank)."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or f"PPid:\t{agent}\n" not in (proc / "status").read_text():
                continue
            if f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except OSError:
            continue
    return None


def test_torchrun_from_an_empty_folder_matches_one_process_and_resumes_after_a_killed_rank(tmp_path, monkeypatch):
    single, multi = tmp_path / "single", tmp_path / "multi"
    launched = _torchrun(multi)  # from an empty folder; runs while this process computes the reference

    loads = Counter()
    real_load = context.load_examples
    monkeypatch.setattr(context, "load_examples", lambda dataset, split, **kw: loads.update(
        [(dataset, split, kw.get("limit"))]) or real_load(dataset, split, **kw))
    assert main([*TABLES, "--output-dir", str(single), *ARGS]) == 0
    assert loads and set(loads.values()) == {1}, f"splits loaded more than once for {TABLES}: {loads}"

    _finish(launched)
    assert list((multi / "features").glob("*/manifest.json")), "no feature folder was built"
    for table in TABLES:
        one, two = _csv(single, table), _csv(multi, table)
        key = ["row", "method", "seed", "metric", "dataset", "run_id"]
        assert one[key].equals(two[key]), f"{table}: rows or stages differ between 1 and 2 processes"
        assert (one["value"] - two["value"]).abs().max() < 1e-6, f"{table}: values differ"
    runs = multi / "runs"
    configs = [json.loads(p.read_text()) for p in runs.glob("*/config.json")]
    assert configs and all(c["runtime"]["world_size"] == 2 and c["runtime"]["precision"] == "fp32" for c in configs)
    assert all((p.parent / "DONE").is_file() for p in runs.glob("*/config.json"))

    finished = {table: _csv(multi, table) for table in TABLES}
    mtl = _road_mtl(runs)
    expected_loss = json.loads((mtl / "metrics.json").read_text())["final_loss"]
    shutil.rmtree(mtl)
    killed = _torchrun(multi)
    deadline = time.monotonic() + TIMEOUT_S
    while not list(mtl.glob("checkpoints/step-00000003/COMPLETE")):
        assert killed.poll() is None and time.monotonic() < deadline, "the rerun never checkpointed the MTL stage"
        time.sleep(0.005)
    pid = _rank_pid(killed.pid, 1)
    assert pid is not None, "rank 1 not found among torchrun's workers"
    os.kill(pid, signal.SIGKILL)
    killed.communicate(timeout=TIMEOUT_S)
    assert killed.returncode != 0 and not (mtl / "DONE").exists(), "the MTL stage was not killed mid-run"

    output = _finish(_torchrun(multi))
    assert f"{mtl.name}: computing again" in output and "resuming from its checkpoints" in output, output[-3000:]
    assert (mtl / "DONE").is_file()
    assert json.loads((mtl / "metrics.json").read_text())["final_loss"] == pytest.approx(expected_loss, rel=1e-5)
    for table in TABLES:
        assert _csv(multi, table).equals(finished[table]), f"{table}: the resumed run changed the table"
