"""The preflight: everything a table's stages will read or need, checked before the first training step.

At paper scale a bad label in the third task or a misspelled dataset found after two tasks have trained
costs hours of 8-GPU time, so :func:`preflight` runs before any stage and reports *every* problem at once:

* the table against the profile (tasks, dev splits, models, MTL datasets, pass-steps),
* the device (``runtime.device`` names a real device; CUDA present when asked for),
* every model (the preset exists or the checkpoint's config, tokenizer and weights file -- safetensors or
  ``.bin`` -- are found locally or on the hub as allowed; ``num_layers`` fits; its position embeddings hold
  ``max_seq_length``; a cross-model teacher tokenizes like its student),
* every dataset split any stage of the table reads (located, loaded and validated by its loader: names,
  files, columns, labels, answer offsets), with the task types each stage expects; a file that several
  splits read is reported once, naming them all,
* every folder the run writes (runs, features, output, report) can be created and written
  (:func:`folder_problems`, called by ``check_tables`` and ``run_table`` before anything is created).

Loading goes through the :class:`~road_repro.experiments.stages.Experiment` the run then uses, whose
per-process caches of examples and tokenizers make the preflight's pass over the data the run's own.
The profile's numeric settings are range-checked when it is loaded (:func:`road_repro.config.profile_problems`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig

from road_repro.config import ModelConfig, ProfileConfig, SplitConfig, TableSpec
from road_repro.data.registry import get_dataset
from road_repro.errors import ConfigProblems, RoadError
from road_repro.experiments.context import mtl_task
from road_repro.experiments.stages import Experiment
from road_repro.models.encoder import TINY_MAX_POSITIONS, TINY_PRESETS, load_model_config, resolve_weights


class PreflightError(ConfigProblems):
    """Every problem the preflight found, one per line (``problems``)."""


@dataclass
class Needs:
    """What a table's stages read: model keys, task names (``mtl:<name>`` for MTL datasets), cross-model pairs."""

    models: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    cross_model: set[tuple[str, str]] = field(default_factory=set)  # (student, teacher)


def table_problems(spec: TableSpec, profile: ProfileConfig) -> list[str]:
    """The table against the profile: tasks with dev splits, models and MTL settings the rows name."""
    problems = []
    where = f"table {spec.table}"
    for task in spec.evaluate:
        cfg = profile.tasks.get(task)
        if cfg is None:
            problems.append(f"{where}: profile {profile.name!r} has no task {task!r} (has: {sorted(profile.tasks)})")
        elif cfg.dev is None:
            problems.append(f"{where}: task {task!r} has no dev split to score")
        elif cfg.train is None and cfg.predict_with is None:
            problems.append(f"{where}: task {task!r} has neither a train split nor predict_with")
    for i, row in enumerate(spec.rows):
        if row.recipe == "published":
            continue
        source = row.teacher.distilled_from if row.teacher else None
        for key in filter(None, (row.model or spec.model, row.teacher and row.teacher.model, source and source.model)):
            if key not in profile.models:
                problems.append(f"{where} rows[{i}]: profile {profile.name!r} has no model {key!r} "
                                f"(has: {sorted(profile.models)})")
        for mtl in filter(None, (row.mtl, row.teacher and row.teacher.mtl, source and source.mtl)):
            pass_step = mtl.pass_step or profile.mtl.pass_step
            if mtl.mode == "road" and (pass_step < 1 or profile.mtl.optim.batch_size % pass_step):
                problems.append(f"{where} rows[{i}]: pass_step={pass_step} must be >= 1 and divide "
                                f"mtl.optim.batch_size={profile.mtl.optim.batch_size}")
            if not profile.mtl.datasets:
                problems.append(f"{where} rows[{i}] needs MTL but profile {profile.name!r} lists no mtl.datasets")
    return problems


def table_needs(spec: TableSpec, profile: ProfileConfig) -> Needs:
    """The models, tasks and cross-model teacher pairs every stage of ``spec`` will use."""
    needs = Needs()
    train_tasks = set()
    for task in spec.evaluate:
        if task in profile.tasks:  # a missing task is reported by table_problems
            needs.tasks.add(task)
            train_tasks.add(profile.tasks[task].predict_with or task)
    needs.tasks |= train_tasks & set(profile.tasks)
    for row in spec.rows:
        if row.recipe == "published":
            continue
        student = row.model or spec.model
        needs.models.add(student)
        chain = [(student, row.teacher and row.teacher.model),
                 (row.teacher and row.teacher.model, row.teacher and row.teacher.distilled_from and
                  row.teacher.distilled_from.model)]
        for pupil, teacher in chain:
            if teacher:
                needs.models.add(teacher)
                if teacher != pupil:
                    needs.cross_model.add((pupil, teacher))
        mtls = [row.mtl, row.teacher and row.teacher.mtl, row.teacher and row.teacher.distilled_from and
                row.teacher.distilled_from.mtl]
        if any(mtls):
            needs.tasks |= {mtl_task(name) for name in profile.mtl.datasets}
    return needs


def device_problems(profile: ProfileConfig) -> list[str]:
    """``runtime.device`` asks for hardware this machine has."""
    device = str(profile.runtime.device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return [f"runtime.device={device!r} but no CUDA device is available here "
                    "(torch.cuda.is_available() is False); use auto or cpu"]
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            return [f"runtime.device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist"]
    if device == "mps" and not torch.backends.mps.is_available():
        return ["runtime.device='mps' but no Apple MPS device is available here; use auto or cpu"]
    return []


def model_problems(exp: Experiment, needs: Needs, load_config: Callable[[ModelConfig], Any] = load_model_config
                   ) -> list[str]:
    """Each model loads (config and tokenizer), fits ``max_seq_length``; cross-model teachers share a vocabulary.
    ``load_config`` reads a checkpoint's config (a dry run passes one that never asks the hub)."""
    problems = []
    p = exp.profile
    longest = max(p.features.max_seq_length, p.features.max_pair_length)
    for key in sorted(needs.models):
        if key not in p.models:
            continue  # reported by table_problems
        cfg = p.models[key]
        try:
            exp.tokenizer(key)
            if cfg.preset is not None:
                if cfg.preset not in TINY_PRESETS:
                    problems.append(f"models.{key}.preset={cfg.preset!r} is not a preset (known: {', '.join(TINY_PRESETS)})")
                    continue
                config = BertConfig(max_position_embeddings=TINY_MAX_POSITIONS, **TINY_PRESETS[cfg.preset])
            else:
                config = load_config(cfg)
        except RoadError as exc:
            problems.append(f"models.{key}: {exc}")
            continue
        positions = usable_positions(config)
        if positions is not None and longest > positions:
            problems.append(f"features: sequences of up to {longest} tokens (max_seq_length={p.features.max_seq_length}, "
                            f"max_pair_length={p.features.max_pair_length}) but models.{key} ({cfg.name_or_path or 'preset ' + str(cfg.preset)}) "
                            f"has {positions} positions")
        layers = getattr(config, "num_hidden_layers", None)
        if cfg.num_layers is not None and layers is not None and cfg.num_layers > layers:
            problems.append(f"models.{key}.num_layers={cfg.num_layers} but {cfg.name_or_path} has {layers} layers")
    for student, teacher in sorted(needs.cross_model):
        try:
            exp.check_same_tokenization(student, teacher)
        except RoadError as exc:
            problems.append(str(exc))
    return problems


def weights_problems(profile: ProfileConfig, needs: Needs) -> list[str]:
    """Each pretrained model's weights file is there (a folder, the cache, or the hub where allowed), not only
    its config: an offline machine whose cache lacks the weights stops here, naming what is missing."""
    problems = []
    for key in sorted(needs.models & set(profile.models)):
        cfg = profile.models[key]
        if cfg.preset is None:
            try:
                resolve_weights(cfg)
            except RoadError as exc:
                problems.append(f"models.{key}: {exc}")
    return problems


def usable_positions(config) -> int | None:
    """How many tokens a checkpoint's position embeddings hold (None: relative positions only, no limit)."""
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v2/v3: relative positions
        return None
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return positions


def data_problems(exp: Experiment, needs: Needs) -> list[str]:
    """Every split every stage reads: located, loaded and validated; task types as the stages expect."""
    problems = []
    p = exp.profile
    splits: dict[tuple[str, str, int | None, int | None], tuple[str, SplitConfig]] = {}
    for task in sorted(needs.tasks):
        try:
            cfg = exp.task_config(task)
        except RoadError as exc:
            problems.append(str(exc))
            continue
        types = set()
        for name, split in (("train", cfg.train), ("dev", cfg.dev)):
            if split is None:
                continue
            where = f"mtl.datasets.{task[4:]}" if task.startswith("mtl:") else f"tasks.{task}.{name}"
            splits.setdefault((split.dataset, split.split, split.limit, split.cap), (where, split))
            try:
                types.add(get_dataset(split.dataset).task)
            except RoadError as exc:
                problems.append(f"{where}: {exc}")
        if len(types) > 1:
            problems.append(f"tasks.{task}: its splits mix task types {sorted(types)}")
        if cfg.predict_with and cfg.predict_with in p.tasks and types:
            source = p.tasks[cfg.predict_with]
            source_types = {get_dataset(s.dataset).task for s in (source.train, source.dev)
                            if s is not None and _known(s.dataset)}
            if source_types and source_types != types:
                problems.append(f"tasks.{task}.predict_with={cfg.predict_with!r}: a {sorted(source_types)[0]} model "
                                f"cannot predict a {sorted(types)[0]} task")
    for key in sorted(needs.models):
        ws = p.models[key].warm_start if key in p.models else None
        if ws is not None:
            where = f"models.{key}.warm_start"
            splits.setdefault((ws.dataset, ws.split, ws.limit, None), (where, SplitConfig(ws.dataset, ws.split, ws.limit)))
            if _known(ws.dataset) and get_dataset(ws.dataset).task != "mrc":
                problems.append(f"{where}.dataset={ws.dataset!r} must be a span-QA (mrc) dataset")
    failed: dict[str, list[str]] = {}  # one message per broken file, naming every split that reads it
    for where, split in splits.values():
        if not _known(split.dataset):
            continue  # reported above
        try:
            exp.examples(split)
        except RoadError as exc:
            failed.setdefault(str(exc), []).append(f"{where} ({split.dataset}:{split.split})")
    return problems + [f"{', '.join(wheres)}: {message}" for message, wheres in failed.items()]


def run_folders(output_dir: str | Path, runs_dir: str | Path | None, profile: str) -> dict[str, Path]:
    """Every folder a table run writes, by what it holds (the same defaults as ``run_table`` and ``Experiment``:
    runs in ``<output_dir>/runs``, the feature store beside the runs folder, results and report per profile)."""
    runs = Path(runs_dir) if runs_dir else Path(output_dir) / "runs"
    out = Path(output_dir) / profile
    return {"runs": runs, "features": runs.parent / "features", "output": out, "report": out / "report"}


#: The option (command line, notebook parameter) that moves each folder of :func:`run_folders` elsewhere.
_FOLDER_OPTION = {"runs": "--runs-dir", "features": "--runs-dir", "output": "--output-dir", "report": "--output-dir"}


def folder_problems(folders: dict[str, Path]) -> list[str]:
    """Each folder can be created and written: the folder, or its nearest existing parent, is a folder in which
    a file can be made (a real probe, so read-only mounts and ACLs count; the probe file is removed at once).
    Folders blocked by the same parent make one problem."""
    blocked: dict[str, list[str]] = {}  # why -> the folders it blocks
    for what, folder in folders.items():
        existing = Path(os.path.abspath(folder))
        while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            why = f"{existing} is {'a broken link' if existing.is_symlink() else 'not a folder'}"
        else:
            try:
                with tempfile.TemporaryFile(dir=existing, prefix=".road-write-check-"):
                    continue
            except OSError as exc:
                why = f"cannot write in {existing} ({exc.strerror or exc})"
        blocked.setdefault(why, []).append(what)
    problems = []
    for why, whats in blocked.items():
        options = " or ".join(dict.fromkeys(_FOLDER_OPTION.get(w, w) for w in whats))
        names = ", ".join(f"{w} folder {folders[w]}" for w in whats)
        problems.append(f"{names}: {why}; choose another with {options}, or make that a writable folder")
    return problems


def _known(dataset: str) -> bool:
    try:
        get_dataset(dataset)
        return True
    except RoadError:
        return False


def preflight(spec: TableSpec, exp: Experiment) -> None:
    """Check the table, device, models and data of every stage; raise one :class:`PreflightError` listing all."""
    needs = table_needs(spec, exp.profile)
    problems = (table_problems(spec, exp.profile) + device_problems(exp.profile) + model_problems(exp, needs)
                + weights_problems(exp.profile, needs) + data_problems(exp, needs))
    if problems:
        raise PreflightError(list(dict.fromkeys(problems)))
