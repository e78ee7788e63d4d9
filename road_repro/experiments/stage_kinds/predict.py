"""The predict stage: a finished model scored on another task's dev set (NewsQA with the SQuAD 2.0 model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from road_repro.errors import ConfigError
from road_repro.experiments.context import Context
from road_repro.experiments.runs import Run
from road_repro.io import atomic_write


def run(exp: Context, model_run: Run, source_task: str, task: str, model_key: str) -> Run:
    """Score ``model_run`` (finetuned on ``source_task``) on ``task``'s dev set without training on it."""
    config = {"stage": "predict", "model_run": model_run.run_id, **exp._base_config(task, model_key)}

    def make(path: Path) -> dict[str, Any]:
        source, target = exp.task(source_task, model_key), exp.task(task, model_key)
        if source.task_type != target.task_type:
            raise ConfigError(f"cannot predict {task!r} ({target.task_type}) with a {source.task_type} model")
        model = exp._load_finished(model_run, model_key, source)
        logits = exp._predict(model, target, target.dev)
        atomic_write(path / "dev_logits.safetensors", lambda tmp: save_file(logits, str(tmp)))
        return exp._score(target, logits, path)

    return exp.store.run("predict", config, make, exp._sources(source_task, task))
