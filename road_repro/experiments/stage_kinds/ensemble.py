"""The ensemble stage: the mean of the members' dev logits, scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from road_repro.experiments.context import Context
from road_repro.experiments.runs import Run


def run(exp: Context, task: str, model_key: str, teachers: tuple[Run, ...]) -> Run:
    """Score the ensemble that averages the members' dev logits (finetune runs, or ``predict`` runs for a
    task scored through another task's models, e.g. NewsQA through the SQuAD 2.0 models)."""
    config = {"stage": "ensemble", "teachers": [t.run_id for t in teachers], **exp._base_config(task, model_key)}

    def make(path: Path) -> dict[str, Any]:
        logits = [load_file(str(t.path / "dev_logits.safetensors")) for t in teachers]
        mean = {k: torch.stack([l[k] for l in logits]).mean(0) for k in logits[0]}
        return exp._score(exp.task(task, model_key), mean, path)

    return exp.store.run("ensemble", config, make, exp._sources(task))
