"""Classification accuracy as a Hugging Face ``evaluate`` metric, scored by road-repro's ``accuracy``.

Unlike the Hub's ``accuracy`` metric (a fraction) the value is in percent, as in the paper's tables.
"""

from __future__ import annotations

import datasets
import evaluate

from road_repro.evaluate.accuracy import accuracy

_DESCRIPTION = "Percentage of examples whose predicted class id equals the label, computed by road_repro."
_INPUTS = """
Args:
    predictions: list of predicted class ids.
    references: list of gold class ids.
Returns:
    accuracy: percent, 0 to 100.
"""


class RoadAccuracy(evaluate.Metric):
    """Accuracy by :func:`road_repro.evaluate.accuracy.accuracy`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        return {"accuracy": accuracy(predictions, references)}
