"""SQuAD 2.0 as a Hugging Face ``evaluate`` metric, scored by road-repro's re-implementation of the official script.

Inputs follow the Hub's ``squad_v2`` metric: predictions ``{id, prediction_text, no_answer_probability}`` and
references ``{id, answers: {text, answer_start}}``; ``compute(..., no_answer_threshold=1.0)``. The
probabilities are float64 (the Hub metric stores float32), so the best-threshold keys equal those of
:func:`road_repro.evaluate.squad_v2.evaluate` called directly.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from road_repro.evaluate.squad_v2 import evaluate as squad_v2_evaluate

_DESCRIPTION = (
    "SQuAD 2.0 exact match and F1 (percent), with HasAns_/NoAns_ splits and, from the no-answer probabilities, "
    "the best-threshold scores -- the official v2.0 evaluation script's output, computed by road_repro."
)
_CITATION = """@inproceedings{rajpurkar-etal-2018-know,
  title = {Know What You Don't Know: Unanswerable Questions for {SQ}u{AD}},
  author = {Rajpurkar, Pranav and Jia, Robin and Liang, Percy},
  booktitle = {Proceedings of ACL},
  year = {2018}
}"""
_INPUTS = """
Args:
    predictions: list of {"id": str, "prediction_text": str ("" = no answer), "no_answer_probability": float}.
    references: list of {"id": str, "answers": {"text": list[str], "answer_start": list[int]}}; no answers =
        unanswerable.
    no_answer_threshold: a question whose no-answer probability exceeds it is scored as "" (default 1.0).
Returns:
    exact, f1, total, HasAns_*/NoAns_* (where present), best_exact, best_exact_thresh, best_f1, best_f1_thresh.
"""


class RoadSquadV2(evaluate.Metric):
    """SQuAD 2.0 scoring by :func:`road_repro.evaluate.squad_v2.evaluate`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({
                "predictions": {
                    "id": datasets.Value("string"),
                    "prediction_text": datasets.Value("string"),
                    "no_answer_probability": datasets.Value("float64"),
                },
                "references": {
                    "id": datasets.Value("string"),
                    "answers": datasets.Sequence(
                        {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
                },
            }),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(
        self, predictions: list[dict[str, Any]], references: list[dict[str, Any]], no_answer_threshold: float = 1.0
    ) -> dict[str, Any]:
        qas = [{"id": ref["id"], "answers": [{"text": text, "answer_start": start} for text, start in
                                             zip(ref["answers"]["text"], ref["answers"]["answer_start"])]}
               for ref in references]
        return dict(squad_v2_evaluate(
            [{"paragraphs": [{"qas": qas}]}],
            {p["id"]: p["prediction_text"] for p in predictions},
            {p["id"]: p["no_answer_probability"] for p in predictions},
            no_answer_threshold,
            where="road_squad_v2",
        ))
