"""The MTL stage: multi-task pretraining, ROaD (Algorithm 1: ``pass_step`` passes per step, each on a randomly
drawn dataset, gradients averaged; one head per task type) or MT-DNN (one dataset per step, drawn in proportion
to its minibatches; one head per dataset); optionally with KD from a teacher finetuned per dataset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from road_repro.config import to_dict
from road_repro.data.mixing import MtdnnSampler, RoadSampler
from road_repro.errors import ConfigError
from road_repro.experiments.context import Context, mtl_task, set_seed
from road_repro.experiments.runs import Run
from road_repro.experiments.stage_kinds.soft_targets import teacher_targets
from road_repro.experiments.tasks import head_kind
from road_repro.models.encoder import attention_kind
from road_repro.train.loop import Pass
from road_repro.train.objectives import Objective


def run(exp: Context, model_key: str, mode: str, pass_step: int | None = None, kd: bool = False,
        steps_fraction: float = 1.0, seed: int | None = None) -> Run:
    """Multi-task pretraining on the profile's MTL datasets (ROaD or MT-DNN), optionally with KD; ``seed``
    (one of ``mtl.seeds``) instead of ``mtl.seed``."""
    m = exp.profile.mtl if seed is None else replace(exp.profile.mtl, seed=seed)
    if not 0 < steps_fraction <= 1:
        raise ConfigError(f"mtl steps_fraction={steps_fraction} must lie in (0, 1]")
    m = replace(m, optim=replace(m.optim, steps=max(1, round(m.optim.steps * steps_fraction))))
    if not m.datasets:
        raise ConfigError(f"profile {exp.profile.name!r} lists no mtl.datasets")
    pass_step = (pass_step or m.pass_step) if mode == "road" else 1
    if m.optim.batch_size % pass_step:
        raise ConfigError(f"pass_step={pass_step} does not divide mtl.optim.batch_size={m.optim.batch_size}")
    names = sorted(m.datasets)
    data = {name: exp.task(mtl_task(name), model_key) for name in names}
    teachers = ({name: exp.finetune(mtl_task(name), model_key, m.seed, epochs=m.teacher_epochs) for name in names}
                if kd else {})
    draws = m.draws if mode == "road" else "with_replacement"
    objective = Objective("kd", m.kd_temperature, m.kd_lam, exp.profile.distill.t2_scale) if kd else Objective()
    objective = replace(objective, mask_padding=exp.per_batch)
    config = {
        "stage": "mtl", "mode": mode, "pass_step": pass_step, "draws": draws, "kd": kd,
        "data": {n: to_dict(m.datasets[n]) for n in names},
        "fingerprints": {n: data[n].train.fingerprint for n in names},
        "model": to_dict(exp.model_config(model_key)), "features": to_dict(exp.profile.features),
        "optim": to_dict(m.optim), "seed": m.seed, "precision": exp.profile.runtime.precision,
        "teachers": {n: t.run_id for n, t in teachers.items()}, "warm_start": exp._warm_start_id(model_key, None),
        "kd_settings": {"temperature": m.kd_temperature, "lam": m.kd_lam, "t2_scale": objective.t2_scale} if kd else None,
    }

    def head(name: str) -> str:
        return data[name].task_type if mode == "road" else name  # task-shared vs per-dataset heads

    def make(path: Path) -> dict[str, Any]:
        set_seed(m.seed)
        heads = {head(n): head_kind(data[n].task_type) for n in names}
        model = exp._new_model(model_key, heads)
        extra = {n: teacher_targets(exp, mtl_task(n), model_key, model_key, objective, (t,))
                 for n, t in teachers.items()}
        sizes = {n: len(data[n].train) for n in names}
        sampler = (RoadSampler(sizes, m.optim.batch_size, pass_step, m.seed, draws) if mode == "road"
                   else MtdnnSampler(sizes, m.optim.batch_size, m.seed))

        def step_source(step: int) -> list[Pass]:
            return [Pass(head(d.dataset), d.dataset,
                         data[d.dataset].batch(data[d.dataset].train, d.indices, extra.get(d.dataset)))
                    for d in sampler(step)]

        log = exp._train(model, step_source, objective, m.optim.steps, m.optim, path,
                          f"MTL {mode} pass_step {pass_step}{' + KD' if kd else ''}")
        counts: dict[str, int] = {}
        for step in range(m.optim.steps):
            for d in sampler(step):
                counts[d.dataset] = counts.get(d.dataset, 0) + 1
        return {"steps": m.optim.steps, "final_loss": log[-1]["total"], "passes_per_dataset": counts,
                "attention": attention_kind(model.encoder)}

    return exp.store.run("mtl", config, make, exp._sources(*(mtl_task(n) for n in names)))
