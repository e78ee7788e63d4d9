"""Atomic, verifiable training checkpoints.

A checkpoint is a folder ``step-<n>/`` holding ``model.safetensors`` and ``state.pt`` (optimizer,
scheduler, grad scaler, RNG states, step) and, written last, ``COMPLETE`` with the SHA-256 of both.
It is written under a temporary name and renamed, so a kill leaves either the old set or the new one;
a folder whose ``COMPLETE`` is missing or whose checksums differ is torn and skipped on resume.
``state.pt`` is read with ``torch.load(weights_only=True, map_location="cpu")``: under torchrun every rank loads
the same file, and tensors saved from ``cuda:0`` would otherwise all land on GPU 0; the optimizer's
``load_state_dict`` then moves its state to the device of each rank's parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from road_repro.models.model import load_weights, save_weights

_FILES = ("model.safetensors", "state.pt")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, step: int, model: nn.Module, trainer_state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``folder/step-<step>`` atomically and keep only the newest ``keep`` marked checkpoints.

    Temporary folders of an earlier process killed mid-save are removed first.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    for stale in folder.glob(".step-*.tmp-*"):  # left by a process killed mid-save (one writer per folder)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder / f".step-{step:08d}.tmp-{os.getpid()}"
    tmp.mkdir()
    save_weights(model, tmp / "model.safetensors")
    torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "state.pt")
    sums = {name: sha256_file(tmp / name) for name in _FILES}
    (tmp / "COMPLETE").write_text(json.dumps(sums))
    for name in (*_FILES, "COMPLETE"):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in _marked_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _marked_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders that carry a ``COMPLETE`` marker, oldest first, without re-hashing them.

    Pruning after every save uses this cheap check: hashing every kept checkpoint on every save would
    read ``keep + 1`` full checkpoints (gigabytes at the paper scale) per save. The checkpoint just
    written is always among the kept ones, so at least one verified checkpoint survives any pruning;
    full verification happens on resume (:func:`load_latest`).
    """
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("step-*")) if (p / "COMPLETE").is_file()]


def is_complete(ckpt: Path) -> bool:
    """True if ``ckpt`` has its ``COMPLETE`` marker and every file matches its recorded checksum."""
    marker = ckpt / "COMPLETE"
    try:
        sums = json.loads(marker.read_text())
        return all(sha256_file(ckpt / name) == sums[name] for name in _FILES)
    except (OSError, ValueError, KeyError):
        return False


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in ``folder``, oldest first (torn ones are skipped)."""
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("step-*")) if p.is_dir() and is_complete(p)]


def load_latest(folder: Path, model: nn.Module) -> dict[str, Any] | None:
    """Load the newest complete checkpoint into ``model`` and return its trainer state (None if none)."""
    candidates = sorted(folder.glob("step-*"), reverse=True) if folder.is_dir() else []
    latest = next((p for p in candidates if p.is_dir() and is_complete(p)), None)
    if latest is None:
        return None
    load_weights(model, latest / "model.safetensors")
    return torch.load(latest / "state.pt", weights_only=True, map_location="cpu")
