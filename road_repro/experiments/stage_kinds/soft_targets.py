"""The soft-targets stage (a finished teacher's logits on every training feature, cached once per teacher and
dataset) and the per-batch teacher targets a KD student reads from those caches."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from road_repro.distill import SOFT_TARGET_DTYPE, TeacherTargets, dtype_name, open_soft_targets, write_soft_targets
from road_repro.errors import ConfigError
from road_repro.experiments.context import Context
from road_repro.experiments.runs import Run
from road_repro.train.objectives import Objective


def run(exp: Context, task: str, model_key: str, teacher: Run) -> Run:
    """Cache a teacher's logits on every training feature (generated once per teacher and dataset).

    Stored as ``SOFT_TARGET_DTYPE`` (float16: half the bytes of float32 at 2^-11 relative precision, see
    :mod:`road_repro.distill.cache`); the dtype is in the config (another dtype is another cache), the
    file's metadata and the metrics. Students read the file per batch through memory maps.

    Written as the teacher runs: each ``PREDICT_CHUNK``-row chunk of logits goes straight to its rows of
    the file (:func:`road_repro.distill.write_soft_targets`), so no process ever holds a whole teacher's
    logits. Under torchrun every rank runs its share of each chunk; only rank 0 writes the file.
    """
    data = exp.task(task, model_key)
    dtype = dtype_name(SOFT_TARGET_DTYPE)
    config = {"stage": "soft_targets", "teacher": teacher.run_id, "train_fingerprint": data.train.fingerprint,
              "dtype": dtype}

    def make(path: Path) -> dict[str, Any]:
        model = exp._load_finished(teacher, model_key, data)
        chunks = exp._predict_chunks(model, data, data.train)
        first = next(chunks, None)  # the first chunk's trailing shapes size the file
        shapes = {} if first is None else {k: (len(data.train), *v.shape[1:]) for k, v in first[1].items()}
        write_soft_targets(path / "soft_targets.safetensors", shapes,
                           {"teacher": teacher.run_id, "train_fingerprint": data.train.fingerprint,
                            "features": str(len(data.train))},
                           itertools.chain([] if first is None else [first], chunks), SOFT_TARGET_DTYPE)
        return {"features": len(data.train), "dtype": dtype}

    return exp.store.run("soft_targets", config, make, exp._sources(task))


def teacher_targets(exp: Context, task: str, teacher_model: str, student_model: str, objective: Objective,
                    teachers: tuple[Run, ...]) -> dict[str, TeacherTargets]:
    """Teacher logits per training feature, read per batch: mean of the teachers, or Weighted KD (Algorithm 2).

    One :class:`TeacherTargets` per batch key (``teacher_logits``, or ``teacher_start_logits`` and
    ``teacher_end_logits``, each weighted against its own gold positions); ``TaskData.batch`` indexes it
    with a batch's rows, so only those rows of the teachers' memory-mapped caches are ever read.
    """
    data = exp.task(task, student_model)
    if teacher_model != student_model:
        exp.check_same_tokenization(student_model, teacher_model)
        if exp.task(task, teacher_model).train.fingerprint != data.train.fingerprint:
            raise ConfigError(f"teacher model {teacher_model!r} and student {student_model!r} give different "
                              f"training features for {task!r}; per-feature soft targets need identical features")
    caches = [open_soft_targets(exp.soft_targets(task, teacher_model, t).path / "soft_targets.safetensors",
                                expect={"teacher": t.run_id, "train_fingerprint": data.train.fingerprint})
              for t in teachers]
    gold = data.labels(data.train)
    mode = "weighted" if objective.distill == "weighted" else "mean"
    sides = ((("teacher_start_logits", "start_logits", "start_positions"),
              ("teacher_end_logits", "end_logits", "end_positions")) if data.is_span
             else (("teacher_logits", "logits", "labels"),))
    return {key: TeacherTargets(caches, name, mode, gold[target], exp.profile.distill.w)
            for key, name, target in sides}
