"""The run cache: every stage is a run keyed by a hash of its resolved configuration.

``runs/<kind>-<hash>/`` holds ``config.json`` (the resolved config, provenance, data sources and the runtime
this process resolved: device, world size, and the precision ``auto`` became), the run's artifacts,
``metrics.json`` and, written last, ``DONE`` with the SHA-256 of every artifact. Re-running a table
reuses runs whose ``DONE`` verifies; a run without a valid ``DONE`` (killed, torn, tampered with, or
from a different config) is started again from a clean folder, keeping only its training checkpoints so
the loop can resume. A file lock per run lets two processes share one runs folder: the second waits
for the first and then reuses its result instead of training the same stage twice.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock

from road_repro import __version__
from road_repro.experiments.interrupt import doing, sigterm_held
from road_repro.io import atomic_write_json, shared_outcome
from road_repro.log import logger
from road_repro.models.encoder import loaded_commits
from road_repro.train.checkpoint import sha256_file
from road_repro.train.distributed import broadcast_object, is_main, world_size
from road_repro.train.loop import resolve_precision

CHECKPOINTS = "checkpoints"
#: What a restarted run keeps (besides its ``train_log*.csv``): checkpoints to resume from, TensorBoard events.
KEEP_TO_RESUME = (CHECKPOINTS, "tensorboard")


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``config`` (key order and whitespace do not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def git_hash() -> str:
    """The repository's commit (with ``-dirty`` if it has uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """Versions and code revision recorded beside every run's metrics."""
    import datasets
    import torch
    import transformers

    return {
        "road_repro": __version__,
        "git": git_hash(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "cuda": str(torch.version.cuda),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
    }


def runtime_record(precision: str, device: torch.device) -> dict[str, Any]:
    """What ``runtime.precision`` resolved to on ``device`` in this process, for ``config.json``.

    The hashed config keeps the setting (``auto``: the same run on any GPU); the record says what ran:
    ``bf16``, ``fp16`` (with a grad scaler) or ``fp32``, the device, its compute capability and the world size;
    and the hub commit of every model loaded (:func:`~road_repro.models.encoder.loaded_commits`).
    """
    dtype = resolve_precision(precision, device)
    record: dict[str, Any] = {"precision_setting": precision, "device": str(device), "world_size": world_size(),
                              "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype],
                              "grad_scaler": dtype == torch.float16}
    if device.type == "cuda":
        record["compute_capability"] = "%d.%d" % torch.cuda.get_device_capability(device)
    if commits := loaded_commits():
        record["model_commits"] = commits  # the hub revision each model was loaded at
    return record


@dataclass(frozen=True)
class Run:
    """A finished run: its id, folder, config and metrics."""

    run_id: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]


def _artifact_sums(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): sha256_file(p)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "DONE" and CHECKPOINTS not in p.relative_to(path).parts
    }


@dataclass(frozen=True)
class PlannedStage:
    """A stage a dry run found: its kind, run id, whether a finished run is on disk, and for what."""

    kind: str
    run_id: str
    cached: bool
    context: str


@dataclass(frozen=True)
class Progress:
    """Overall progress of a planned multi-table run: how many of its planned stages are finished on disk."""

    run_ids: frozenset[str]
    started: float

    def line(self, root: Path) -> str:
        done = sum((root / run_id / "DONE").is_file() for run_id in self.run_ids)
        minutes, seconds = divmod(int(time.time() - self.started), 60)
        return f"stages {done}/{len(self.run_ids)} done, {minutes}m{seconds:02d}s elapsed"


class RunStore:
    """A folder of cached runs.

    ``dry=True`` computes nothing: :meth:`run` records each stage in :attr:`plan` (with whether a finished
    run is already on disk) and returns a placeholder with no metrics, so a whole table's stages, with their
    real run ids, can be planned without training.
    """

    def __init__(self, root: Path, dry: bool = False):
        self.root = Path(root)
        self.dry = dry
        if not dry:
            self.root.mkdir(parents=True, exist_ok=True)
        self._seen: dict[str, Run] = {}  # runs verified by this process (checksumming large weights is slow)
        self.context = ""  # what the console lines are for, e.g. the table being computed
        self.plan: list[PlannedStage] = []
        self._listed: set[tuple[str, str]] = set()  # (context, run id) pairs in the plan
        self._cached: dict[str, bool] = {}  # dry run: run id -> a DONE marker for its config is on disk
        self.progress: Progress | None = None  # set when a plan of several tables is being worked through
        # What this process resolved (device, precision: :func:`runtime_record`), for each new run's config.json.
        self.runtime: Callable[[], dict[str, Any]] | None = None

    def run_id(self, kind: str, config: dict[str, Any]) -> str:
        return f"{kind}-{config_hash({'kind': kind, **config})[:16]}"

    def finished(self, kind: str, config: dict[str, Any]) -> Run | None:
        """The cached run for ``config`` if its ``DONE`` marker verifies, else None."""
        run_id = self.run_id(kind, config)
        return self._load_done(run_id, self.root / run_id, config)

    def _load_done(self, run_id: str, path: Path, config: dict[str, Any]) -> Run | None:
        return None if self._stale(path, config) else self._read(run_id, path, config)

    @staticmethod
    def _read(run_id: str, path: Path, config: dict[str, Any]) -> Run:
        return Run(run_id, path, config, json.loads((path / "metrics.json").read_text()))

    @staticmethod
    def _stale(path: Path, config: dict[str, Any]) -> str | None:
        """Why the run folder cannot be reused (killed or torn, another config, damaged files), or None."""
        if not path.exists():
            return "not computed yet"
        try:
            done = json.loads((path / "DONE").read_text())
        except (OSError, ValueError):
            return "it has no valid DONE marker (killed or torn)"
        if not isinstance(done, dict):  # a damaged marker that happens to parse
            return "its DONE marker is damaged"
        if done.get("config_hash") != config_hash(config):
            return "its config differs from this one"
        if done.get("files") != _artifact_sums(path):
            return "its files fail their checksums"
        return None

    def _say(self, message: str, *args: Any) -> None:
        overall = f" ({self.progress.line(self.root)})" if self.progress else ""
        logger.info("%s" + message + "%s", f"[{self.context}] " if self.context else "", *args, overall)

    def run(self, kind: str, config: dict[str, Any], fn: Callable[[Path], dict[str, Any]],
            sources: dict[str, str] | None = None) -> Run:
        """Return the cached run for ``config`` or compute it with ``fn(run_dir) -> metrics`` and cache it.

        ``sources`` (which files each split was read from) goes into ``config.json`` beside the provenance,
        outside the hashed config: moving a data directory does not invalidate finished runs.
        """
        run_id = self.run_id(kind, config)
        if self.dry:
            return self._plan(kind, run_id, config)
        if run_id in self._seen:
            return self._seen[run_id]
        self._seen[run_id] = run = self._run(run_id, kind, config, fn, sources or {})
        return run

    def _plan(self, kind: str, run_id: str, config: dict[str, Any]) -> Run:
        """Record a stage in :attr:`plan` once per ``context`` (a stage two tables need is listed under both)."""
        if run_id not in self._seen:
            self._seen[run_id] = Run(run_id, self.root / run_id, config, {})
            self._cached[run_id] = self._done_marker(run_id, config)
        if (self.context, run_id) not in self._listed:
            self._listed.add((self.context, run_id))
            self.plan.append(PlannedStage(kind, run_id, self._cached[run_id], self.context))
        return self._seen[run_id]

    def _done_marker(self, run_id: str, config: dict[str, Any]) -> bool:
        """A DONE marker for this config is on disk (the cheap check of a plan; files are verified at run time)."""
        try:
            return json.loads((self.root / run_id / "DONE").read_text()).get("config_hash") == config_hash(config)
        except (OSError, ValueError, AttributeError):
            return False

    def _run(self, run_id: str, kind: str, config: dict[str, Any], fn: Callable[[Path], dict[str, Any]],
             sources: dict[str, str]) -> Run:
        """Under torchrun, rank 0 holds the lock and decides; every rank computes (DDP); rank 0 writes.

        Only rank 0 verifies a cached run's checksums (hashing every artifact, soft targets included, is
        minutes of I/O at the paper scale); the other ranks wait for its answer and then read the metrics.
        """
        path = self.root / run_id
        lock = FileLock(str(self.root / f".{run_id}.lock"))
        main = is_main()
        if main:
            lock.acquire()
        try:
            with shared_outcome(f"checking the cached run {run_id}"):
                stale = self._stale(path, config) if main else None
            if broadcast_object(stale is None if main else None):
                if main:
                    self._say("%s %s: cached", kind, run_id)
                return self._read(run_id, path, config)
            started = time.time()
            with shared_outcome(f"starting the run {run_id}"):  # rank 0 writes; the others wait for config.json
                if main:
                    resumable = (path / CHECKPOINTS).is_dir()
                    self._say("%s %s: computing%s", kind, run_id, "" if stale == "not computed yet" else
                              f" again: {stale}" + ("; resuming from its checkpoints" if resumable else ""))
                    if path.exists():  # killed, torn or stale: start clean, but keep checkpoints to resume from
                        for child in path.iterdir():
                            if child.name not in KEEP_TO_RESUME and not child.name.startswith("train_log"):
                                shutil.rmtree(child) if child.is_dir() else child.unlink()
                    path.mkdir(parents=True, exist_ok=True)
                    atomic_write_json(path / "config.json", {
                        "kind": kind, "config": config, "provenance": provenance(), "data_sources": sources,
                        "runtime": self.runtime() if self.runtime else None,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
            with doing(f"computing {run_id}" + (f" ({self.context})" if self.context else "")):
                metrics = fn(path)
            # rank 0 writes, the others wait for DONE; a SIGTERM waits too, so that checkpoints go only with a DONE
            with sigterm_held(), shared_outcome(f"finishing the run {run_id}"):
                if main:
                    atomic_write_json(path / "metrics.json", metrics)
                    shutil.rmtree(path / CHECKPOINTS, ignore_errors=True)
                    atomic_write_json(path / "DONE", {"config_hash": config_hash(config),
                                                      "files": _artifact_sums(path)})
                    self._say("%s %s: done in %.1f s", kind, run_id, time.time() - started)
            return Run(run_id, path, config, metrics)
        finally:
            if main:
                lock.release()
