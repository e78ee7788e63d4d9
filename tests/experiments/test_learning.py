"""The smoke scale learns every task it reports: the warm-started smoke encoder, finetuned with the smoke
settings, clears the learning floor of each task type (road_repro.report.floors) -- so a swapped label
order, a head wired to the wrong task or KD targets on the wrong rows shows up as a failure here and as a
flagged row in the report, not as a plausible number."""

from __future__ import annotations

import pytest

from road_repro.report.floors import HAS_ANS_F1, SPAN_MARGIN, accuracy_floor

pytestmark = pytest.mark.slow

#: Task (as the smoke profile names it) -> task type; amazon is the synthetic 5-way sentiment task.
CLASSIFICATION = {"mnli": "nli", "qqp": "paraphrase", "amazon": "sentiment"}


@pytest.mark.parametrize("task", sorted(CLASSIFICATION))
def test_classification_is_learned(smoke_experiment, task):
    run = smoke_experiment.finetune(task, "large", seed=1)
    floor = accuracy_floor(CLASSIFICATION[task])
    assert run.metrics["acc"] > floor, f"{task}: accuracy {run.metrics['acc']:.1f} is not above {floor:.1f}"


def test_span_qa_is_learned(smoke_experiment):
    run = smoke_experiment.finetune("squad_v2", "large", seed=1)
    dev = smoke_experiment.task("squad_v2", "large").dev.examples
    no_answer_f1 = 100.0 * sum(ex.is_impossible for ex in dev) / len(dev)
    assert run.metrics["f1"] > no_answer_f1 + SPAN_MARGIN, (run.metrics["f1"], no_answer_f1)
    assert run.metrics["HasAns_f1"] > HAS_ANS_F1, run.metrics["HasAns_f1"]
