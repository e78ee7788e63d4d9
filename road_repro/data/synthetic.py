"""A generated SQuAD-2.0-like dataset for the ``smoke`` scale: no downloads, learnable in seconds.

A context states ``n_facts`` facts "The {attr} of {name} is {value}." about distinct (name, attribute)
pairs. A question "What is the {attr} of {name}?" either asks about one stated fact (the answer is its
value, with its exact character offset) or is unanswerable: half of the unanswerable ones name a person
absent from the context, the other half a person who is present but whose asked attribute is not
stated (the SQuAD 2.0-style distractor: the name alone does not decide answerability).

Every word is a common lowercase English word that is a single token of the uncased BERT WordPiece
vocabulary, so a tiny transformer sees one token per word. Generation is deterministic given
``(seed, split)``; each split draws from its own random stream, so train and dev never share a seed.
"""

from __future__ import annotations

import random
from itertools import groupby
from typing import Any

from road_repro.data.schema import Answer, QAExample
from road_repro.errors import ConfigError

NAMES: tuple[str, ...] = (
    "john", "mary", "james", "anna", "david", "sarah", "peter", "laura", "paul", "emma",
    "mark", "lucy", "tom", "kate", "adam", "alice", "sam", "jane", "mike", "rose",
    "george", "helen", "jack", "grace", "henry", "julia", "frank", "linda", "carl", "nina",
    "oscar", "ruth", "victor", "diana", "walter", "ella", "simon", "clara", "leo", "maria",
)  # fmt: skip

#: Attribute -> its possible values (no value is shared between attributes or with a name).
VALUES: dict[str, tuple[str, ...]] = {
    "color": ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown", "gray", "gold"),
    "city": ("paris", "london", "berlin", "rome", "tokyo", "madrid", "moscow", "boston", "chicago", "dublin",
             "vienna", "cairo"),
    "sport": ("tennis", "golf", "soccer", "hockey", "baseball", "football", "rugby", "cricket", "boxing",
              "swimming", "basketball", "volleyball"),
    "pet": ("dog", "cat", "horse", "rabbit", "bird", "fish", "snake", "mouse", "turtle", "parrot", "goat", "pig"),
    "food": ("bread", "rice", "pizza", "pasta", "cheese", "soup", "cake", "apple", "chicken", "salad", "beef",
             "banana"),
    "job": ("teacher", "doctor", "lawyer", "nurse", "farmer", "pilot", "driver", "writer", "singer", "artist",
            "engineer", "soldier"),
}  # fmt: skip

ATTRIBUTES: tuple[str, ...] = tuple(VALUES)

#: The fixed words of the fact and question templates.
TEMPLATE_WORDS: tuple[str, ...] = ("the", "of", "is", "what")

#: Upper bound on facts per context (keeps at least one absent name for every unanswerable question).
MAX_FACTS = 12


def vocabulary() -> tuple[str, ...]:
    """Every word the generator can emit (names, attributes, values, template words)."""
    values = tuple(v for vs in VALUES.values() for v in vs)
    return NAMES + ATTRIBUTES + values + TEMPLATE_WORDS


def _check_settings(n: int, n_facts: int, unanswerable_rate: float) -> None:
    """ConfigError for a negative size, a fact count out of range or a rate outside [0, 1]."""
    if n < 0:
        raise ConfigError(f"synthetic_squad: n must be >= 0, got {n}")
    if not 1 <= n_facts <= MAX_FACTS:
        raise ConfigError(f"synthetic_squad: n_facts must be in 1..{MAX_FACTS}, got {n_facts}")
    if not 0.0 <= unanswerable_rate <= 1.0:
        raise ConfigError(f"synthetic_squad: unanswerable_rate must be in [0, 1], got {unanswerable_rate}")


def _context(rng: random.Random, n_facts: int) -> tuple[str, dict[tuple[str, str], Answer]]:
    """A context of ``n_facts`` facts and, per stated (name, attr), its value as an Answer with offset.

    Names come from a pool of ``n_facts`` people, so one person often has several stated attributes.
    """
    people = rng.sample(NAMES, n_facts)
    pairs = rng.sample([(name, attr) for name in people for attr in ATTRIBUTES], n_facts)
    sentences: list[str] = []
    facts: dict[tuple[str, str], Answer] = {}
    offset = 0
    for name, attr in pairs:
        value = rng.choice(VALUES[attr])
        prefix = f"The {attr} of {name} is "
        facts[(name, attr)] = Answer(value, offset + len(prefix))
        sentences.append(f"{prefix}{value}.")
        offset += len(sentences[-1]) + 1
    return " ".join(sentences), facts


def _unanswerable_pair(rng: random.Random, facts: dict[tuple[str, str], Answer]) -> tuple[str, str]:
    """A (name, attr) not stated: a present name with an unstated attribute, or an absent name (50/50)."""
    present = sorted({name for name, _ in facts})
    distractors = [(name, attr) for name in present for attr in ATTRIBUTES if (name, attr) not in facts]
    if distractors and rng.random() < 0.5:
        return rng.choice(distractors)
    absent = [name for name in NAMES if name not in present]
    return rng.choice(absent), rng.choice(ATTRIBUTES)


def synthetic_squad(
    n: int, seed: int, n_facts: int = 3, unanswerable_rate: float = 0.5, split: str = "train"
) -> list[QAExample]:
    """``n`` synthetic SQuAD-2.0-style examples (one question per context), ids ``syn-{split}-{i}``."""
    _check_settings(n, n_facts, unanswerable_rate)
    rng = random.Random(f"road-repro/synthetic/{split}/{seed}")
    examples = []
    for i in range(n):
        context, facts = _context(rng, n_facts)
        if rng.random() < unanswerable_rate:
            (name, attr), answers = _unanswerable_pair(rng, facts), ()
        else:
            name, attr = rng.choice(list(facts))
            answers = (facts[(name, attr)],)
        examples.append(
            QAExample(
                id=f"syn-{split}-{i}",
                context=context,
                question=f"What is the {attr} of {name}?",
                answers=answers,
                title=f"synthetic-{split}",
            )
        )
    return examples


def _qa_entry(ex: QAExample) -> dict[str, Any]:
    """One example as an official ``qas`` entry."""
    return {
        "id": ex.id,
        "question": ex.question,
        "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers],
        "is_impossible": ex.is_impossible,
    }


def synthetic_squad_json(examples: list[QAExample]) -> dict[str, Any]:
    """Examples in the official SQuAD 2.0 JSON layout (runs of equal title -> article, of equal context ->
    paragraph), so the official scorer and :func:`load_squad_v2_json` read them back unchanged."""
    articles = []
    for title, in_article in groupby(examples, key=lambda ex: ex.title):
        paragraphs = [
            {"context": context, "qas": [_qa_entry(ex) for ex in in_paragraph]}
            for context, in_paragraph in groupby(in_article, key=lambda ex: ex.context)
        ]
        articles.append({"title": title, "paragraphs": paragraphs})
    return {"version": "v2.0", "data": articles}
