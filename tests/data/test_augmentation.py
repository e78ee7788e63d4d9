"""Negative-question augmentation: entity spans, replacement rules, determinism, real SQuAD questions."""

from __future__ import annotations

import re

import pytest

from road_repro.data.augmentation import capitalised_spans, negative_questions
from road_repro.data.schema import Answer, QAExample
from road_repro.data.squad_v2 import load_squad_v2_json
from road_repro.data.synthetic import NAMES, synthetic_squad
from road_repro.errors import ConfigError


def _spans(question: str) -> list[str]:
    return [question[a:b] for a, b in capitalised_spans(question)]


@pytest.mark.parametrize(
    "question, entities",
    [
        ("When did Beyonce start becoming popular?", ["Beyonce"]),
        ("Which NFL team won Super Bowl 50?", ["NFL", "Super Bowl"]),
        ("What did Destiny's Child release?", ["Destiny's Child"]),
        ("Who met Jay-Z, Kelly and Michelle Williams?", ["Jay-Z", "Kelly", "Michelle Williams"]),
        ("Beyonce was born where?", []),
        ('Is "Crazy In Love" a song by Beyoncé?', ["Crazy In Love", "Beyoncé"]),
    ],
)
def test_capitalised_spans(question, entities):
    assert _spans(question) == entities


CONTEXT_A = "Beyonce rose to fame in the late 1990s as lead singer of Destiny's Child."
CONTEXT_B = "Frederic Chopin was a Polish composer who lived in Paris."
EXAMPLES = [
    QAExample("a1", CONTEXT_A, "When did Beyonce rise to fame?", (Answer("late 1990s", 28),)),
    QAExample("a2", CONTEXT_A, "Which group did Beyonce lead?", (Answer("Destiny's Child", 57),)),
    QAExample("b1", CONTEXT_B, "Where did Chopin live?", (Answer("Paris", 51),)),
    QAExample("b2", CONTEXT_B, "What nationality was Chopin?"),  # unanswerable: never a source
]


def test_hand_made_negatives():
    negatives = negative_questions(EXAMPLES, rate=1.0, seed=0)
    assert [n.id for n in negatives] == ["a1-neg0", "a2-neg0", "b1-neg0"]
    by_id = {ex.id: ex for ex in EXAMPLES}
    expected = {
        "a1-neg0": "When did Chopin rise to fame?",
        "a2-neg0": "Which group did Chopin lead?",
        "b1-neg0": "Where did Beyonce live?",
    }
    for neg in negatives:
        source = by_id[neg.id.removesuffix("-neg0")]
        assert neg.is_impossible and neg.context == source.context
        assert neg.question == expected[neg.id]


def test_no_negative_without_a_valid_replacement():
    # x's only other entity ("Beyonce") occurs in x's context, so no negative may be made from x
    examples = [
        QAExample("x", "Beyonce met Chopin.", "Whom did Chopin meet?", (Answer("Beyonce", 0),)),
        QAExample("y", "Beyonce sang.", "Who is Beyonce?", (Answer("Beyonce", 0),)),
    ]
    for seed in range(5):
        expected = [QAExample("y-neg0", "Beyonce sang.", "Who is Chopin?")]
        assert negative_questions(examples, rate=1.0, seed=seed) == expected


def test_rate_seed_and_multiple_rounds():
    assert negative_questions(EXAMPLES, rate=0.0, seed=0) == []
    one = negative_questions(EXAMPLES, rate=1 / 3, seed=1)
    assert len(one) == 1 and one == negative_questions(EXAMPLES, rate=1 / 3, seed=1)
    with pytest.raises(ConfigError, match="rate must be >= 0"):
        negative_questions(EXAMPLES, rate=-0.1, seed=0)


def test_entity_pool_for_lowercase_synthetic_data():
    examples = synthetic_squad(200, seed=0)
    negatives = negative_questions(examples, rate=0.5, seed=3, entities=NAMES)
    answerable = sum(not ex.is_impossible for ex in examples)
    assert len(negatives) == round(0.5 * answerable)  # 40 names, <=3 per context: a free name is always found
    by_id = {ex.id: ex for ex in examples}
    for neg in negatives:
        source = by_id[neg.id.removesuffix("-neg0")]
        old_name = source.question.split()[-1].rstrip("?")
        new_name = neg.question.split()[-1].rstrip("?")
        assert neg.is_impossible and new_name in NAMES and new_name != old_name
        assert new_name not in re.findall(r"\w+", neg.context)
        assert neg.question.replace(new_name, old_name) == source.question
    twice = negative_questions(examples[:20], rate=2.0, seed=0, entities=NAMES)
    ids = [ex.id for ex in examples[:20] if not ex.is_impossible]
    assert [n.id for n in twice] == [f"{i}-neg{k}" for i in ids for k in (0, 1)]
    assert all(twice[j].question != twice[j + 1].question for j in range(0, len(twice), 2))
    with pytest.raises(ConfigError, match="entities pool is empty"):
        negative_questions(examples, rate=0.5, seed=3, entities=[" "])


def test_real_squad_train_subset(shared_data):
    examples = load_squad_v2_json(shared_data / "squad2" / "train-v2.0.first10articles.json")
    negatives = negative_questions(examples, rate=0.3, seed=7)
    assert negatives == negative_questions(examples, rate=0.3, seed=7)
    assert negatives != negative_questions(examples, rate=0.3, seed=8)
    answerable = sum(not ex.is_impossible for ex in examples)
    assert 0.5 * 0.3 * answerable < len(negatives) <= round(0.3 * answerable)
    pool = {q[a:b] for q in (ex.question for ex in examples) for a, b in capitalised_spans(q)}
    by_id = {ex.id: ex for ex in examples}
    for neg in negatives:
        source = by_id[neg.id.removesuffix("-neg0")]
        assert neg.is_impossible and not source.is_impossible and neg.context == source.context
        assert _replacements(source, neg, pool), f"{neg.question!r} is not {source.question!r} with one entity swapped"
        assert all(e.lower() not in neg.context.lower() for e in _replacements(source, neg, pool))
    assert len({n.id for n in negatives}) == len(negatives)


def _replacements(source: QAExample, neg: QAExample, pool: set[str]) -> list[str]:
    """Pool entities E such that ``neg.question`` is ``source.question`` with one entity span replaced by E."""
    found = []
    for a, b in capitalised_spans(source.question):
        tail = source.question[b:]
        if neg.question.startswith(source.question[:a]) and neg.question.endswith(tail):
            entity = neg.question[a : len(neg.question) - len(tail)]
            if entity in pool and entity != source.question[a:b]:
                found.append(entity)
    return found
