"""Negative-question augmentation: entity spans, typed swaps with a spaCy recogniser, replacement rules,
the fraction added, determinism, the synthetic entity pool, real SQuAD 2.0 dev questions."""

from __future__ import annotations

import re

import pytest

from road_repro.data import augmentation
from road_repro.data.augmentation import HEURISTIC, augment_negative_questions, capitalised_spans
from road_repro.data.schema import Answer, QAExample
from road_repro.data.squad_v2 import load_squad_v2_json
from road_repro.data.synthetic import NAMES, synthetic_squad
from road_repro.errors import ConfigError

Entity = tuple[int, int, str]


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


def _heuristic_entities(question: str) -> list[Entity]:
    return [(a, b, "ENT") for a, b in capitalised_spans(question)]


def _swaps(source: QAExample, neg: QAExample, entities: list[Entity]) -> list[tuple[str, str, str]]:
    """(old, new, type) for each entity span of the source question whose replacement by ``new`` gives the
    negative's question, i.e. the two questions differ only in that span."""
    found = []
    for a, b, label in entities:
        head, tail = source.question[:a], source.question[b:]
        q = neg.question
        if len(q) > len(head) + len(tail) and q.startswith(head) and q.endswith(tail):
            new = q[a : len(q) - len(tail)]
            if new != source.question[a:b]:
                found.append((source.question[a:b], new, label))
    return found


def _check_negatives(
    examples: list[QAExample], out: list[QAExample], entities_of, pool: dict[str, set[str]]
) -> list[tuple[str, str, str]]:
    """Assert the augmentation invariants; return the (old, new, type) swap of every negative."""
    assert out[: len(examples)] == examples
    negatives = out[len(examples) :]
    by_id = {ex.id: ex for ex in examples}
    assert len({ex.id for ex in out}) == len(out)
    swaps = []
    for neg in negatives:
        source_id, k = neg.id.rsplit("-neg", 1)
        source = by_id[source_id]
        assert k.isdigit() and not source.is_impossible
        assert neg.is_impossible and neg.answers == () and neg.context == source.context
        valid = [
            (old, new, label)
            for old, new, label in _swaps(source, neg, entities_of(source.question))
            if new in pool[label] and new.lower() not in neg.context.lower()
        ]
        assert valid, f"{neg.question!r} is not {source.question!r} with one entity swapped for a fresh one"
        swaps.append(valid[0])
    return swaps


CONTEXT_A = "Beyonce rose to fame in the late 1990s as lead singer of Destiny's Child."
CONTEXT_B = "Frederic Chopin was a Polish composer who lived in Paris."
EXAMPLES = [
    QAExample("a1", CONTEXT_A, "When did Beyonce rise to fame?", (Answer("late 1990s", 28),)),
    QAExample("a2", CONTEXT_A, "Which group did Beyonce lead?", (Answer("Destiny's Child", 57),)),
    QAExample("b1", CONTEXT_B, "Where did Chopin live?", (Answer("Paris", 51),)),
    QAExample("b2", CONTEXT_B, "What nationality was Chopin?"),  # unanswerable: never a source
]


def test_hand_made_negatives():
    out, info = augment_negative_questions(EXAMPLES, fraction=1.0, seed=0, ner="heuristic")
    assert info == {"ner": HEURISTIC, "fraction": 1.0, "answerable": 3, "candidates": 3, "added": 3}
    assert out[:4] == EXAMPLES
    assert out[4:] == [
        QAExample("a1-neg0", CONTEXT_A, "When did Chopin rise to fame?"),
        QAExample("a2-neg0", CONTEXT_A, "Which group did Chopin lead?"),
        QAExample("b1-neg0", CONTEXT_B, "Where did Beyonce live?"),
    ]


def test_no_negative_without_a_valid_replacement():
    # x's only other entity ("Beyonce") occurs in x's context, so no negative may be made from x
    examples = [
        QAExample("x", "Beyonce met Chopin.", "Whom did Chopin meet?", (Answer("Beyonce", 0),)),
        QAExample("y", "Beyonce sang.", "Who is Beyonce?", (Answer("Beyonce", 0),)),
    ]
    for seed in range(5):
        out, info = augment_negative_questions(examples, fraction=1.0, seed=seed, ner="heuristic")
        assert out[2:] == [QAExample("y-neg0", "Beyonce sang.", "Who is Chopin?")]
        assert (info["candidates"], info["added"]) == (2, 1)


def test_fraction_seed_and_settings(monkeypatch):
    out, info = augment_negative_questions(EXAMPLES, fraction=0.0, seed=0, ner="heuristic")
    assert out == EXAMPLES and info["added"] == 0
    one, info = augment_negative_questions(EXAMPLES, fraction=1 / 3, seed=1, ner="heuristic")
    assert len(one) == 5 and info["added"] == 1
    assert one == augment_negative_questions(EXAMPLES, fraction=1 / 3, seed=1, ner="heuristic")[0]
    monkeypatch.setattr(augmentation, "AUTO_PIPELINES", ("road_repro_no_such_pipeline",))
    assert augment_negative_questions(EXAMPLES, fraction=1.0, seed=0)[1]["ner"] == HEURISTIC
    with pytest.raises(ConfigError, match="fraction must be >= 0"):
        augment_negative_questions(EXAMPLES, fraction=-0.1, seed=0)
    with pytest.raises(ConfigError, match="unknown 'bert'"):
        augment_negative_questions(EXAMPLES, fraction=0.5, seed=0, ner="bert")
    with pytest.raises(ConfigError, match="road_repro_no_such_pipeline"):
        augment_negative_questions(EXAMPLES, fraction=0.5, seed=0, ner="spacy:road_repro_no_such_pipeline")
    with pytest.raises(ConfigError, match="not both"):
        augment_negative_questions(EXAMPLES, fraction=0.5, seed=0, ner="heuristic", entities=["Chopin"])


def test_entity_pool_for_lowercase_synthetic_data():
    examples = synthetic_squad(200, seed=0)
    out, info = augment_negative_questions(examples, fraction=0.5, seed=3, entities=NAMES)
    answerable = sum(not ex.is_impossible for ex in examples)
    # 40 names, <= 3 per context: a free name is always found
    assert info == {"ner": "entity pool", "fraction": 0.5, "answerable": answerable, "candidates": answerable,
                    "added": round(0.5 * answerable)}  # fmt: skip
    assert len(out) == len(examples) + info["added"]
    swaps = _check_negatives(examples, out, lambda q: [(m.start(), m.end(), "ENT") for m in re.finditer(r"\w+", q)],
                             {"ENT": set(NAMES)})  # fmt: skip
    assert all(old in NAMES and old != new for old, new, _ in swaps)
    twice, info = augment_negative_questions(examples[:20], fraction=2.0, seed=0, entities=NAMES)
    ids = [ex.id for ex in examples[:20] if not ex.is_impossible]
    assert [n.id for n in twice[20:]] == [f"{i}-neg{k}" for i in ids for k in (0, 1)]
    assert all(twice[j].question != twice[j + 1].question for j in range(20, len(twice), 2))
    with pytest.raises(ConfigError, match="entities pool is empty"):
        augment_negative_questions(examples, fraction=0.5, seed=3, entities=[" "])


# -- typed swaps: a blank English spaCy pipeline with an entity_ruler (no model download) -------------

PATTERNS = {
    "PERSON": ["Frederic Chopin", "Chopin", "Beyonce", "Marie Curie", "Curie", "Einstein"],
    "GPE": ["Poland", "Paris", "Houston", "Warsaw", "France", "Berlin"],
    "DATE": ["1810", "1830", "1981", "1891", "1905", "the late 1990s"],
    "ORG": ["Destiny's Child", "Sorbonne"],
}
LABEL = {text: label for label, texts in PATTERNS.items() for text in texts}

CHOPIN = "Frederic Chopin was born in 1810 in Poland and lived in Paris after 1830."
BEYONCE = "Beyonce was born in Houston in 1981 and became famous in the late 1990s with Destiny's Child."
CURIE = "Marie Curie moved from Warsaw to France in 1891 and taught at the Sorbonne."
TYPED = [
    QAExample("c1", CHOPIN, "In what year was Chopin born in Poland?", (Answer("1810", 28),)),
    QAExample("c2", CHOPIN, "Where did Chopin live after 1830?", (Answer("Paris", 56),)),
    QAExample("b1", BEYONCE, "Where was Beyonce born?", (Answer("Houston", 20),)),
    QAExample("b2", BEYONCE, "Which group made Beyonce famous?", (Answer("Destiny's Child", 77),)),
    QAExample("m1", CURIE, "When did Curie move to France?", (Answer("1891", 43),)),
    QAExample("m2", CURIE, "Where did Marie Curie teach?", (Answer("Sorbonne", 66),)),
    QAExample("m3", CURIE, "What did Einstein publish in 1905 in Berlin?"),  # unanswerable: only a pool source
]


@pytest.fixture(scope="module")
def ruler_nlp():
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": label, "pattern": text} for text, label in LABEL.items()])
    return nlp


def _spacy_entities(nlp):
    return lambda q: [(e.start_char, e.end_char, e.label_) for e in nlp(q).ents]


def test_spacy_typed_swaps(ruler_nlp):
    out, info = augment_negative_questions(TYPED, fraction=1.0, seed=0, ner=ruler_nlp)
    assert info == {"ner": "spacy:blank_en+entity_ruler", "fraction": 1.0, "answerable": 6, "candidates": 6,
                    "added": 6}  # fmt: skip
    swaps = _check_negatives(TYPED, out, _spacy_entities(ruler_nlp), {k: set(v) for k, v in PATTERNS.items()})
    assert all(LABEL[old] == LABEL[new] == label for old, new, label in swaps)
    swapped_types = set()
    for seed in range(10):
        out, info = augment_negative_questions(TYPED, fraction=0.5, seed=seed, ner=ruler_nlp)
        assert info["added"] == 3 and len(out) == len(TYPED) + 3
        assert out == augment_negative_questions(TYPED, fraction=0.5, seed=seed, ner=ruler_nlp)[0]
        swaps = _check_negatives(TYPED, out, _spacy_entities(ruler_nlp), {k: set(v) for k, v in PATTERNS.items()})
        assert all(LABEL[old] == LABEL[new] == label for old, new, label in swaps)
        swapped_types |= {label for _, _, label in swaps}
    assert swapped_types == {"PERSON", "GPE", "DATE"}  # no question names an ORG


def test_spacy_swaps_only_within_a_type(ruler_nlp):
    # every other GPE of the data occurs in x's context: typed, x yields no negative; untyped it would
    context = "Poland, Paris, Houston, Warsaw, France and Berlin are places."
    examples = [
        QAExample("x", context, "What is Berlin?", (Answer("Berlin", 43),)),
        QAExample("y", CURIE, "When did Curie move to France?", (Answer("1891", 43),)),
        QAExample("z", CHOPIN, "Where did Chopin live after 1830?", (Answer("Paris", 56),)),
        QAExample("w", CURIE, "What did Einstein publish in 1905?"),  # unanswerable: only a pool source
    ]
    for seed in range(5):
        typed, info = augment_negative_questions(examples, fraction=1.0, seed=seed, ner=ruler_nlp)
        assert "x-neg0" not in {ex.id for ex in typed} and (info["candidates"], info["added"]) == (3, 2)
        untyped, _ = augment_negative_questions(examples, fraction=1.0, seed=seed, ner="heuristic")
        assert "x-neg0" in {ex.id for ex in untyped}


def test_auto_uses_an_installed_pipeline(ruler_nlp, monkeypatch, tmp_path):
    import spacy

    (tmp_path / "road_repro_test_pipeline").mkdir()
    (tmp_path / "road_repro_test_pipeline" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(augmentation, "AUTO_PIPELINES", ("road_repro_no_such_pipeline", "road_repro_test_pipeline"))
    monkeypatch.setattr(spacy, "load", lambda name: ruler_nlp if name == "road_repro_test_pipeline" else None)
    auto = augment_negative_questions(TYPED, fraction=1.0, seed=0)
    assert auto == augment_negative_questions(TYPED, fraction=1.0, seed=0, ner=ruler_nlp)
    assert auto == augment_negative_questions(TYPED, fraction=1.0, seed=0, ner="spacy:road_repro_test_pipeline")


# -- real SQuAD 2.0 dev questions, heuristic -----------------------------------------------------------


def test_real_squad_dev(shared_data):
    path = shared_data / "squad2" / "dev-v2.0.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    examples = load_squad_v2_json(path)
    out, info = augment_negative_questions(examples, fraction=0.3, seed=7, ner="heuristic")
    answerable = [ex for ex in examples if not ex.is_impossible]
    assert info == {
        "ner": HEURISTIC,
        "fraction": 0.3,
        "answerable": len(answerable),
        "candidates": sum(bool(capitalised_spans(ex.question)) for ex in answerable),
        "added": round(0.3 * len(answerable)),
    }
    assert out == augment_negative_questions(examples, fraction=0.3, seed=7, ner="heuristic")[0]
    assert out != augment_negative_questions(examples, fraction=0.3, seed=8, ner="heuristic")[0]
    pool = {"ENT": {q[a:b] for q in (ex.question for ex in examples) for a, b in capitalised_spans(q)}}
    _check_negatives(examples, out, _heuristic_entities, pool)
