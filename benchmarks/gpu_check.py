"""The GPU check (``make gpu-check``): what this project can only check and measure on a CUDA GPU, in < 8 min.

    python -m benchmarks.gpu_check [--out results/bench] [--data-dir DIR] [--parts tests,bench,table] [--budget 460]

One command, so that it can be handed to a remote GPU machine as it is: ``make gpu-check`` (which installs the
virtual environment first, as ``make test`` does), or ``PYTHONPATH=. python3 -m benchmarks.gpu_check`` with
any Python that can import the project's dependencies. In order:

0. **CUDA.** Without ``torch.cuda.is_available()`` it stops at once (exit status 3) and says why.
1. **tests**: ``pytest -m gpu`` over the test files that mark tests ``gpu`` (``tests/train/test_gpu.py``: every
   precision learns on the GPU, ``torch.compile``, predictions against the CPU's), offline as ``make test``.
2. **bench**: :mod:`benchmarks.gpu_mfu` -- examples/s, tokens/s and MFU of an ELECTRA-large-sized encoder
   training in bf16 at sequence 512, and the GPU-hours the paper's MTL would take at that rate -- writes
   ``<out>/gpu.csv`` (one measure a row: measure, value, unit, gpu, paper_mtl_gpu_hours, context) and
   ``<out>/gpu_mfu.csv``.
3. **table**: paper Table 5 (ROaD MTL, a finetuned teacher, then KD, annealing KD and Weighted KD students:
   training and distillation) at the ``mini`` scale, capped to a few minutes (:data:`TABLE_OVERRIDES`, and
   MTL datasets the shared data folder holds, :data:`MTL_STANDINS`), through ``python -m
   road_repro.experiments`` -> ``<out>/gpu_check/mini_gpu_check/table5*.csv``; with more than one visible GPU
   it is launched through ``torchrun --nproc_per_node <GPUs>`` (:func:`launcher`: the table has an MTL stage),
   so a multi-GPU machine checks the DDP path of the paper runs. It reads the real data folder
   (``--data-dir``, ``$ROAD_SHARED_DATA``, ``<repo>/../shared/data`` or ``<repo>/shared/data``); without one
   it is skipped, saying why.

Each part runs as its own process group under a time limit (:data:`PART_LIMITS_S`, cut to what is left of
``--budget``) and is killed when it runs over, so the whole check ends inside the budget. Each part's output
is shown and kept in ``<out>/gpu_check/logs/<part>.log``. At the end a summary (part, status, seconds, limit,
detail) is printed and written to ``<out>/gpu_check.csv``; the last line printed is the path of ``gpu.csv``.
Exit status: 0 when every part passed or was skipped for a stated reason, 1 when one failed or ran out of
time, 3 without CUDA.

This module imports only the standard library (and torch, for the CUDA check) at the top, so that the
answer without CUDA comes in seconds.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Exit status when there is no CUDA device.
EXIT_NO_CUDA = 3
PARTS = ("tests", "bench", "table")
#: Seconds each part may run (then it is killed); their sum stays inside the default budget.
PART_LIMITS_S = {"tests": 140, "bench": 120, "table": 190}
#: Seconds the whole check may take (``make gpu-check`` holds it to 8 minutes with a margin).
BUDGET_S = 460
#: Seconds kept back from the budget (a killed part's grace, the summary), and the least a part is started with.
RESERVE_S, MIN_PART_S = 15, 30
#: The environment ``make test`` runs the tests in: Hugging Face offline, quiet tokenizers.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}

# -- the capped mini table -------------------------------------------------------------------------------------

#: The cheapest table that exercises training and distillation: one ROaD MTL run, its finetuned single model
#: (the teacher), the teacher ensemble, and three students (KD, annealing KD, Weighted KD).
TABLE = "table5"
BASE_PROFILE = "mini"
PROFILE_NAME = "mini_gpu_check"
#: mini's MTL mixture names datasets the shared data folder does not hold (TriviaQA, Natural Questions, QuAC,
#: QA-ZRE; SNLI, Amazon and QA-SRL without a train split), and a GPU machine may reach no hub: these stand in,
#: as in tests/profiles/mini_ci.yaml -- every task type (mrc, nli, sentiment, paraphrase) keeps a dataset.
MTL_STANDINS = {
    "qa_srl": {"dataset": "qa_srl", "split": "test", "limit": 1600},
    "mnli": {"dataset": "mnli", "split": "train", "limit": 1600},
    "snli": {"dataset": "snli", "split": "test", "limit": 1600},
    "amazon": {"dataset": "amazon", "split": "dev", "limit": 1600},
    "qqp": {"dataset": "qqp", "split": "train", "limit": 1600},
}
#: The caps, as dotlist overrides on top of mini (models, features, learning rates, KD settings stay mini's):
#: one seed and one teacher, 3,000 SQuAD 2.0 train questions (of the shared folder's 4,719) and 1,000 dev ones,
#: 250 finetuning steps at batch 32 (~2.6 epochs), 200 MTL steps at batch 128. Six stages (plan: 1 MTL, 4
#: finetunes, 1 ensemble). MiniLM-L6 at these sizes keeps an H200 busy for seconds; most of the expected 1-2
#: minutes go to start-up, tokenising, SQuAD post-processing and saving each stage (estimated, not yet measured
#: on a GPU; the table part is killed at PART_LIMITS_S["table"]).
TABLE_OVERRIDES = (
    "seeds=[1]",
    "distill.n_teachers=1",
    "tasks.squad_v2.train.limit=3000",
    "tasks.squad_v2.dev.limit=1000",
    "finetune.steps=250",
    "mtl.optim.steps=200",
    "runtime.device=cuda",
    "runtime.checkpoint_every=0",
    "runtime.progress=false",
)


def capped_profile(folder: Path) -> Path:
    """Write ``<folder>/mini_gpu_check.yaml``: the mini profile file with its MTL mixture replaced by
    :data:`MTL_STANDINS` and its name changed (so results never mix with real mini ones); the caps are applied
    on top as :data:`TABLE_OVERRIDES`. Derived from mini.yaml each time, so it follows mini's changes."""
    from omegaconf import OmegaConf

    from road_repro.config import PROFILES_DIR, load_yaml

    profile = load_yaml(PROFILES_DIR / f"{BASE_PROFILE}.yaml")
    profile.name = PROFILE_NAME
    profile.description = f"{BASE_PROFILE}, capped for `make gpu-check` (benchmarks/gpu_check.py)"
    profile.scale_note = ("MINI SCALE CAPPED FOR THE GPU CHECK -- one seed, one teacher, 3,000 training questions, "
                          "250 steps: a pipeline check on a GPU, not a reproduction.")
    profile.mtl.datasets = OmegaConf.create(MTL_STANDINS)  # assigned, not merged: mini's datasets are gone
    path = Path(folder) / f"{PROFILE_NAME}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(profile, path)
    return path


def table_overrides(data_dir: Path, device: str = "cuda") -> list[str]:
    """:data:`TABLE_OVERRIDES` reading ``data_dir``, on ``device`` (``cuda``, as the check runs the table)."""
    return [o for o in TABLE_OVERRIDES if not o.startswith("runtime.device=")] + [
        f"runtime.device={device}", f"data_dir={Path(data_dir).resolve()}"]


def has_mtl_stage(table: str) -> bool:
    """Whether a row of ``table`` (or its teacher, or the teacher's source) starts from multi-task pretraining."""
    from road_repro.config import load_table_spec

    rows = [r for r in load_table_spec(table).rows if r.recipe != "published"]
    teachers = [r.teacher for r in rows if r.teacher is not None]
    return any(x.mtl for x in [*rows, *teachers, *(t.distilled_from for t in teachers if t.distilled_from)])


def launcher(python: str, gpus: int, table: str = TABLE) -> list[str]:
    """How the capped table is started: through torchrun, one process per visible GPU, when there is more than
    one GPU and the table has an MTL stage (the multi-pass DDP step, soft targets and checkpoints written by
    rank 0 and read by every rank: what a multi-GPU paper run depends on); else one process."""
    if gpus > 1 and has_mtl_stage(table):
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                "-m", "road_repro.experiments"]
    return [python, "-m", "road_repro.experiments"]


def table_command(python: str, profile: Path, data_dir: Path, out: Path, gpus: int = 1) -> list[str]:
    """The capped table, as ``python -m road_repro.experiments`` runs it (results and runs under ``out``), under
    torchrun over ``gpus`` GPUs where :func:`launcher` says so."""
    command = [*launcher(python, gpus), TABLE, "--profile", str(profile), "--output-dir", str(out),
               "--runs-dir", str(out / "runs"), "--no-progress"]
    for override in table_overrides(data_dir):
        command += ["--override", override]
    return command


def find_data_dir(explicit: Path | None = None) -> tuple[Path | None, str]:
    """The real data folder and where it came from, or (None, why there is none)."""
    if explicit is not None:
        return (explicit, "--data-dir") if explicit.is_dir() else (None, f"--data-dir {explicit} does not exist")
    env = os.environ.get("ROAD_SHARED_DATA")
    candidates = ([(Path(env), "$ROAD_SHARED_DATA")] if env else []) + [
        (REPO.parent / "shared" / "data", "../shared/data"), (REPO / "shared" / "data", "./shared/data")]
    for path, source in candidates:
        if path.is_dir():
            return path, source
    tried = ", ".join(str(p) for p, _ in candidates)
    return None, (f"no real data folder (tried {tried}): the mini table reads real SQuAD 2.0, MNLI, ... files. "
                  "Copy the shared data folder next to the checkout or into ./shared/data, or pass --data-dir")


# -- running the parts ---------------------------------------------------------------------------------------


@dataclass
class PartResult:
    part: str
    status: str  # passed | failed | timed out | skipped
    seconds: float
    limit_s: float
    detail: str


def _kill_group(proc: subprocess.Popen) -> None:
    """End the part's process group (its own session, so nothing else): TERM, then KILL after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 3)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_limited(command: Sequence[str], limit_s: float, log: Path, env: dict[str, str]) -> tuple[int | None, float]:
    """Run ``command`` in its own session under ``limit_s``, its output shown and written to ``log``.
    Returns (exit status, or None when it was killed at the limit; seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as sink:
        sink.write("$ " + " ".join(command) + "\n")
        proc = subprocess.Popen(list(command), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, text=True, errors="replace", bufsize=1)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                sink.write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            status: int | None = proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            status = None
        except BaseException:  # Ctrl-C, or SIGTERM (make's timeout): the part's group is not ours to leave behind
            _kill_group(proc)
            raise
        reader.join(timeout=5)
    return status, time.monotonic() - started


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def tests_detail(log: Path) -> str:
    """pytest's closing line ("7 passed, 1 skipped in 41.2s"), or nothing."""
    lines = [ln.strip("= \n") for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    found = [ln for ln in lines if re.search(r"\b(passed|failed|error|errors|skipped|deselected)\b.* in [\d.]+s", ln)]
    return found[-1] if found else ""


def bench_detail(gpu_csv: Path) -> str:
    """The headline figures of ``gpu.csv`` in one line."""
    rows = {r["measure"]: r for r in _read_csv(gpu_csv)}
    value = {m: _float(r["value"]) for m, r in rows.items()}
    gpu = next(iter(rows.values()))["gpu"] if rows else "?"
    return (f"{gpu}: {value.get('examples_per_s', float('nan')):,.1f} examples/s, "
            f"{value.get('tokens_per_s', float('nan')):,.0f} tokens/s, MFU {value.get('mfu', float('nan')):.3f}, "
            f"paper MTL {value.get('paper_mtl_gpu_hours', float('nan')):,.1f} GPU-hours at this rate "
            f"(paper: {value.get('paper_mtl_gpu_hours_reported', float('nan')):.0f} V100-hours)")


def table_detail(summary_csv: Path) -> str:
    """Each row's mean of the table's first metric (SQuAD 2.0 dev F1), in one line."""
    rows = [r for r in _read_csv(summary_csv) if r.get("n") not in ("", "0")]
    if not rows:
        return "no rows computed"
    first = (rows[0]["dataset"], rows[0]["metric"])
    means = [f"{r['method']} {_float(r['mean']):.1f}" for r in rows if (r["dataset"], r["metric"]) == first]
    return f"{first[0]} dev {first[1]}: " + "; ".join(means)


def _status(code: int | None) -> str:
    return "timed out" if code is None else ("passed" if code == 0 else "failed")


def gpu_test_files(root: Path = REPO / "tests") -> list[str]:
    """The test files that mark tests ``gpu`` (relative to the repository). Collecting only these, not all of
    ``tests/``, keeps the part quick and independent of what the other tests import (a GPU machine's Python
    may lack their extras)."""
    return sorted(str(f.relative_to(REPO)) for f in root.rglob("test_*.py") if "mark.gpu" in f.read_text("utf-8"))


def part_tests(python: str, logs: Path, limit_s: float, env: dict[str, str]) -> PartResult:
    log = logs / "tests.log"
    files = gpu_test_files()
    if not files:
        return PartResult("tests", "failed", 0.0, limit_s, "no test file under tests/ marks a test gpu")
    code, seconds = run_limited([python, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", *files],
                                limit_s, log, env)
    detail = tests_detail(log) or f"pytest exit status {code}"
    if code == 0 and not re.search(r"\d+ passed", detail):  # every GPU test skipped: CUDA not seen by pytest
        return PartResult("tests", "failed", seconds, limit_s, f"no GPU test passed: {detail}")
    status = "failed" if code == 5 else _status(code)  # 5: no GPU test was collected
    return PartResult("tests", status, seconds, limit_s, detail)


def part_bench(python: str, out: Path, logs: Path, limit_s: float, env: dict[str, str]) -> PartResult:
    gpu_csv = out / "gpu.csv"
    started = time.time()
    code, seconds = run_limited([python, "-m", "benchmarks.gpu_mfu", "--out", str(out), "--device", "cuda"],
                                limit_s, logs / "bench.log", env)
    fresh = gpu_csv.is_file() and gpu_csv.stat().st_mtime >= started
    if code == 0 and not fresh:
        return PartResult("bench", "failed", seconds, limit_s, f"exit status 0 but {gpu_csv} was not written")
    detail = bench_detail(gpu_csv) if fresh else f"exit status {code}; see {logs / 'bench.log'}"
    return PartResult("bench", _status(code), seconds, limit_s, detail)


def part_table(python: str, out: Path, logs: Path, limit_s: float, env: dict[str, str],
               data_dir: Path | None, why_no_data: str) -> PartResult:
    if data_dir is None:
        return PartResult("table", "skipped", 0.0, limit_s, why_no_data)
    import torch

    folder = out / "gpu_check"
    gpus = torch.cuda.device_count()
    command = table_command(python, capped_profile(folder), data_dir, folder, gpus)
    print(f"gpu-check: {' '.join(command[:command.index('road_repro.experiments') + 2])} ...", flush=True)
    code, seconds = run_limited(command, limit_s, logs / "table.log", env)
    summary = folder / PROFILE_NAME / f"{TABLE}_summary.csv"
    if code == 0 and summary.is_file():
        detail = f"{table_detail(summary)} ({summary})"
    else:
        detail = f"exit status {code}; see {logs / 'table.log'}"
    where = f"torchrun over {gpus} GPUs" if "torch.distributed.run" in command else "1 GPU"
    return PartResult("table", _status(code), seconds, limit_s,
                      f"{TABLE} at {PROFILE_NAME} on {where}, data {data_dir}: {detail}")


# -- the check -----------------------------------------------------------------------------------------------


def cuda_or_exit() -> str:
    """The GPU's name; without CUDA, say why and exit with :data:`EXIT_NO_CUDA`."""
    try:
        import torch
    except ImportError as exc:
        print(f"gpu-check: cannot import torch ({exc}); run `make gpu-check`, which installs the environment first",
              file=sys.stderr)
        sys.exit(EXIT_NO_CUDA)
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}, built for CUDA {torch.version.cuda}" if torch.version.cuda else (
            f"torch {torch.__version__}, a CPU-only build")
        print(f"gpu-check: no CUDA GPU here: torch.cuda.is_available() is False ({build}, "
              f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). The GPU check needs one "
              "NVIDIA GPU; nothing was run.", file=sys.stderr)
        sys.exit(EXIT_NO_CUDA)
    name = torch.cuda.get_device_name(0)
    from road_repro.train.loop import resolve_precision

    major, minor = torch.cuda.get_device_capability(0)
    auto = "bf16" if resolve_precision("auto", torch.device("cuda", 0)) == torch.bfloat16 else "fp16 + grad scaler"
    print(f"gpu-check: {torch.cuda.device_count()} CUDA device(s), using {name} (compute capability {major}.{minor}: "
          f"precision auto -> {auto}); torch {torch.__version__} (CUDA {torch.version.cuda})", flush=True)
    return name


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def write_summary(results: Sequence[PartResult], gpu: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["part", "status", "seconds", "limit_s", "gpu", "detail"])
        for r in results:
            writer.writerow([r.part, r.status, f"{r.seconds:.1f}", f"{r.limit_s:.0f}", gpu, r.detail])
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="folder for gpu.csv and the rest")
    p.add_argument("--data-dir", type=Path, default=None, help="the real data folder for the mini table")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds the whole check may take")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}; choose from {','.join(PARTS)}")

    previous = signal.signal(signal.SIGTERM, _terminated)  # so that a part in flight is ended with the check
    try:
        return _check(args, parts)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check(args: argparse.Namespace, parts: Sequence[str]) -> int:
    started = time.monotonic()
    gpu = cuda_or_exit()
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    logs = out / "gpu_check" / "logs"
    env = {**os.environ, **OFFLINE_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    data_dir, data_source = find_data_dir(args.data_dir)
    python = sys.executable

    results: list[PartResult] = []
    for part in parts:
        left = args.budget - (time.monotonic() - started) - RESERVE_S
        limit = min(PART_LIMITS_S[part], left)
        if limit < MIN_PART_S:
            results.append(PartResult(part, "skipped", 0.0, max(limit, 0), f"only {left:.0f} s of the budget left"))
            continue
        print(f"\n== gpu-check: {part} (at most {limit:.0f} s)", flush=True)
        part_started = time.monotonic()
        try:
            if part == "tests":
                results.append(part_tests(python, logs, limit, env))
            elif part == "bench":
                results.append(part_bench(python, out, logs, limit, env))
            else:
                results.append(part_table(python, out, logs, limit, env, data_dir, data_source))
        except Exception as exc:  # noqa: BLE001 -- a broken part is reported in the summary, the others still run
            results.append(PartResult(part, "failed", time.monotonic() - part_started, limit,
                                      f"{type(exc).__name__}: {exc}"))

    summary = write_summary(results, gpu, out / "gpu_check.csv")
    total = time.monotonic() - started
    print(f"\n== gpu-check summary ({gpu}, {total:.0f} s in all; {summary})")
    for r in results:
        print(f"  {r.part:<6} {r.status:<9} {r.seconds:6.1f} s of {r.limit_s:4.0f}  {r.detail}")
    gpu_csv = out / "gpu.csv"
    bench = next((r for r in results if r.part == "bench"), None)
    print(f"gpu.csv: {gpu_csv}" if bench is not None and bench.status == "passed" else
          f"gpu.csv: not written by this run ({'bench not run' if bench is None else 'bench ' + bench.status})")
    return 0 if all(r.status in ("passed", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
