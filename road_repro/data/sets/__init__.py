"""One small declarative module per dataset; importing this package registers them all.

MTL datasets of paper Table 1: TriviaQA, Natural Questions, QuAC, QA-SRL, QA-ZRE (MRC), MNLI, SNLI (NLI),
Amazon (sentiment), QQP (paraphrase). Evaluation sets: SQuAD 2.0, MNLI-m, QQP, NewsQA. The generated
smoke-scale datasets live in :mod:`road_repro.data.synthetic_tasks`, imported here so that they
register too.
"""

from road_repro.data import synthetic_tasks
from road_repro.data.sets import (
    amazon,
    mnli,
    natural_questions,
    newsqa,
    qa_srl,
    qa_zre,
    qqp,
    quac,
    snli,
    squad_v2,
    triviaqa,
)

__all__ = [
    "amazon",
    "mnli",
    "natural_questions",
    "newsqa",
    "qa_srl",
    "qa_zre",
    "qqp",
    "quac",
    "snli",
    "squad_v2",
    "synthetic_tasks",
    "triviaqa",
]
