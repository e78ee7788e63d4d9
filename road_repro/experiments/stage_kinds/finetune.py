"""The finetune stage: train on a task (from the pretrained, warm-started or MTL encoder, with fresh heads) with
plain CE, a KD objective or hidden-state KD, then score on dev; saves weights, dev logits, predictions, metrics."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from road_repro.config import AugmentSpec, HiddenKDSpec, to_dict
from road_repro.data.augmentation import entity_pool, resolve_ner
from road_repro.errors import ConfigError
from road_repro.experiments.context import Context, set_seed, training_batches
from road_repro.experiments.runs import Run
from road_repro.experiments.stage_kinds.soft_targets import teacher_targets
from road_repro.experiments.tasks import head_kind
from road_repro.io import atomic_write
from road_repro.models.encoder import attention_kind
from road_repro.train.hidden_kd import attach_hidden_kd, make_hidden_kd_loss_fn
from road_repro.train.loop import Pass
from road_repro.train.objectives import Objective


def run(
    exp: Context, task: str, model_key: str, seed: int, objective: Objective = Objective(),
    teachers: tuple[Run, ...] = (), init: Run | None = None, epochs: float | None = None,
    teacher_model: str | None = None, hidden: HiddenKDSpec | None = None, augment: AugmentSpec | None = None,
) -> Run:
    """Finetune (and, with teachers, distil) one model on ``task`` from ``init``'s encoder or the pretrained one.

    ``teacher_model`` is the teachers' model key when it differs from ``model_key`` (cross-model KD).
    ``hidden``: hidden-state KD from the one teacher, added to the logits objective (blog 4.3); the teacher
    runs inside each step. ``augment``: negative questions added to the training split (paper Table 3).
    """
    if objective.distill is not None and not teachers:
        raise ConfigError(f"objective {objective.distill!r} needs teachers")
    if teachers and objective.distill is None and hidden is None:
        raise ConfigError("teachers given but neither a distill objective nor hidden-state KD")
    if hidden is not None and len(teachers) != 1:
        raise ConfigError(f"hidden-state KD needs exactly one teacher, got {len(teachers)}")
    if augment is not None and objective.distill is not None:
        raise ConfigError("negative-question augmentation with KD is not supported (soft targets cover the "
                          "original training features only)")
    optim = exp.profile.finetune if epochs is None else replace(exp.profile.finetune, epochs=epochs)
    config = {
        "stage": "finetune", **exp._base_config(task, model_key, augment), "optim": to_dict(optim), "seed": seed,
        "objective": objective.settings(), "teachers": [t.run_id for t in teachers],
        "weighted_w": exp.profile.distill.w if objective.distill == "weighted" else None,
        "init": init.run_id if init else None, "warm_start": exp._warm_start_id(model_key, init),
    }
    if hidden is not None:
        config["hidden_kd"] = to_dict(hidden)
    if augment is not None:
        config["augment"] = {**to_dict(augment), "ner": resolve_ner(augment.ner, entity_pool(
            exp.task_config(task).train.dataset))}

    def make(path: Path) -> dict[str, Any]:
        data = exp.task(task, model_key, augment)
        if data.train is None:
            raise ConfigError(f"task {task!r} has no train split to finetune on")
        set_seed(seed)
        model = exp._new_model(model_key, {data.task_type: head_kind(data.task_type)}, init)
        loss_objective = replace(objective, mask_padding=data.is_span and data.per_batch)
        extra = (teacher_targets(exp, task, teacher_model or model_key, model_key, objective, teachers)
                 if objective.distill else {})
        loss_fn, teacher = None, None
        if hidden is not None:
            teacher = exp._load_finished(teachers[0], teacher_model or model_key, exp.task(task, teacher_model or model_key))
            loss_fn = make_hidden_kd_loss_fn(loss_objective, attach_hidden_kd(model, teacher, hidden.last_layer_only),
                                             teacher, hidden.weight)
        batches = training_batches(data, optim.batch_size, seed)
        total = optim.steps or math.ceil(optim.epochs * batches.steps_per_epoch)
        log = exp._train(
            model, lambda step: [Pass(data.task_type, task, data.batch(data.train, batches(step), extra))],
            loss_objective, total, optim, path,
            f"{task} seed {seed} {objective.distill or 'ce'}{' + hidden-state KD' if hidden else ''}", loss_fn,
            in_step_teacher=teacher,
        )
        metrics: dict[str, Any] = {"steps": total, "final_loss": log[-1]["total"],
                                   "attention": attention_kind(model.encoder)}
        if data.dev is not None:
            logits = exp._predict(model, data, data.dev)
            atomic_write(path / "dev_logits.safetensors", lambda tmp: save_file(logits, str(tmp)))
            metrics.update(exp._score(data, logits, path))
        return metrics

    return exp.store.run("finetune", config, make, exp._sources(task))
