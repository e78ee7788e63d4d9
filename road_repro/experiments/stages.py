"""Stages of an experiment, each a cached run (see :mod:`road_repro.experiments.runs`).

* ``warm_start`` (smoke only): train a tiny preset's encoder once, a stand-in for self-supervised pretraining.
* ``mtl``: multi-task pretraining, ROaD (Algorithm 1: ``pass_step`` passes per step, each on a randomly drawn
  dataset, gradients averaged; one head per task type) or MT-DNN (one dataset per step, drawn in proportion to
  its minibatches; one head per dataset); optionally with KD from a teacher finetuned per dataset.
* ``finetune``: train on a task (from the pretrained, warm-started or MTL encoder, with fresh heads) with plain
  CE or a KD objective, then score on dev; saves weights, dev logits, predictions and metrics.
* ``soft_targets``: run a finished teacher once over the training features and cache its logits.
* ``ensemble``: average the teachers' dev logits and score the ensemble.
* ``predict``: score a finished model on another task's dev set (NewsQA with the SQuAD 2.0 model).

Each stage kind is one module under :mod:`road_repro.experiments.stage_kinds` over the shared
:class:`~road_repro.experiments.context.Context`; :class:`Experiment` is that context with one method per kind.
Run configs include data fingerprints, so changed data or tokenization means a new run.
"""

from __future__ import annotations

from road_repro.config import AugmentSpec, HiddenKDSpec
from road_repro.experiments.context import Context
from road_repro.experiments.runs import Run
from road_repro.experiments.stage_kinds import ensemble, finetune, mtl, predict, soft_targets, warm_start
from road_repro.train.objectives import Objective


class Experiment(Context):
    """Everything a table needs to run stages at one scale: the shared context and one method per stage kind."""

    def warm_start(self, model_key: str) -> Run | None:
        """See :func:`road_repro.experiments.stage_kinds.warm_start.run`."""
        return warm_start.run(self, model_key)

    def finetune(
        self, task: str, model_key: str, seed: int, objective: Objective = Objective(),
        teachers: tuple[Run, ...] = (), init: Run | None = None, epochs: float | None = None,
        teacher_model: str | None = None, hidden: HiddenKDSpec | None = None, augment: AugmentSpec | None = None,
    ) -> Run:
        """See :func:`road_repro.experiments.stage_kinds.finetune.run`."""
        return finetune.run(self, task, model_key, seed, objective, teachers, init, epochs, teacher_model, hidden,
                            augment)

    def soft_targets(self, task: str, model_key: str, teacher: Run) -> Run:
        """See :func:`road_repro.experiments.stage_kinds.soft_targets.run`."""
        return soft_targets.run(self, task, model_key, teacher)

    def ensemble(self, task: str, model_key: str, teachers: tuple[Run, ...]) -> Run:
        """See :func:`road_repro.experiments.stage_kinds.ensemble.run`."""
        return ensemble.run(self, task, model_key, teachers)

    def predict(self, run: Run, source_task: str, task: str, model_key: str) -> Run:
        """See :func:`road_repro.experiments.stage_kinds.predict.run`."""
        return predict.run(self, run, source_task, task, model_key)

    def mtl(self, model_key: str, mode: str, pass_step: int | None = None, kd: bool = False,
            steps_fraction: float = 1.0, seed: int | None = None) -> Run:
        """See :func:`road_repro.experiments.stage_kinds.mtl.run`."""
        return mtl.run(self, model_key, mode, pass_step, kd, steps_fraction, seed)
