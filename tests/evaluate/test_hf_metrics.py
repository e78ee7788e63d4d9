"""Our metrics as Hugging Face ``evaluate`` modules: loaded offline from the package, equal to calling our code."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_EVALUATE_OFFLINE"] = "1"
evaluate = pytest.importorskip("evaluate")

from road_repro.evaluate import metric_path  # noqa: E402
from road_repro.evaluate.accuracy import accuracy  # noqa: E402
from road_repro.evaluate.squad_v2 import evaluate as squad_v2_evaluate  # noqa: E402


def _load(name: str) -> evaluate.EvaluationModule:
    assert evaluate.config.HF_EVALUATE_OFFLINE
    return evaluate.load(metric_path(name), keep_in_memory=True)


def _synthetic_predictions(data: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """HF-format predictions (a gold answer, a random context span or an abstention; coarse no-answer
    probabilities, so the threshold sweep meets ties) and references for every question of ``data``."""
    rng = random.Random(seed)
    predictions, references = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            words = paragraph["context"].split()
            for qa in paragraph["qas"]:
                draw = rng.random()
                if draw < 0.4 and qa["answers"]:
                    text = rng.choice(qa["answers"])["text"]
                elif draw < 0.75:
                    start = rng.randrange(len(words))
                    text = " ".join(words[start:start + rng.randint(1, 4)])
                else:
                    text = ""
                predictions.append({"id": qa["id"], "prediction_text": text,
                                    "no_answer_probability": rng.randint(0, 20) / 20})
                references.append({"id": qa["id"], "answers": {
                    "text": [a["text"] for a in qa["answers"]],
                    "answer_start": [a["answer_start"] for a in qa["answers"]]}})
    return predictions, references


@pytest.mark.shared_data
@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_squad_v2_module_equals_direct_on_dev(shared_data: Path, threshold: float) -> None:
    path = shared_data / "squad2" / "dev-v2.0.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    predictions, references = _synthetic_predictions(data, seed=int(threshold * 10))
    direct = squad_v2_evaluate(data, {p["id"]: p["prediction_text"] for p in predictions},
                               {p["id"]: p["no_answer_probability"] for p in predictions}, threshold)
    via_hf = _load("road_squad_v2").compute(predictions=predictions, references=references,
                                            no_answer_threshold=threshold)
    assert list(via_hf) == list(direct)
    assert via_hf == dict(direct)
    assert direct["total"] == 11873 and 0 < direct["f1"] < 100


def test_accuracy_module_equals_direct() -> None:
    metric = _load("road_accuracy")
    for predictions, references in [([0, 1, 2, 2, 1], [0, 1, 1, 2, 0]), ([1, 1, 1], [1, 1, 1]), ([0, 2], [1, 0])]:
        result = metric.compute(predictions=predictions, references=references)
        assert result == {"accuracy": accuracy(predictions, references)}
    assert metric.compute(predictions=[0, 1, 2, 2, 1], references=[0, 1, 1, 2, 0]) == {"accuracy": 60.0}


def test_module_directory_loads_too() -> None:
    folder = str(Path(metric_path("road_accuracy")).parent)
    assert evaluate.load(folder, keep_in_memory=True).compute(predictions=[2], references=[2]) == {"accuracy": 100.0}


def test_metric_path_names_packaged_modules() -> None:
    for name in ("road_squad_v2", "road_accuracy"):
        assert Path(metric_path(name)).is_file()
    with pytest.raises(ValueError, match="unknown metric"):
        metric_path("squad_v2")
