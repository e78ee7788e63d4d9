"""A generated SQuAD-2.0-like dataset for the ``smoke`` scale: no downloads, learnable in seconds.

A context states ``n_facts`` facts "The {attr} of {name} is {value}." about distinct (name, attribute)
pairs. A question "What is the {attr} of {name}?" either asks about one stated fact (the answer is its
value, with its exact character offset) or is unanswerable: half of the unanswerable ones name a person
absent from the context, the other half a person who is present but whose asked attribute is not
stated (the SQuAD 2.0-style distractor: the name alone does not decide answerability).

What makes the label true: an answerable question's (name, attribute) pair is stated in exactly one
sentence of the context, and the answer is that sentence's value at its exact character offset; an
unanswerable question's pair is stated nowhere. Deciding which needs the name *and* the attribute bound
together across the context (a distractor's name and attribute each occur, in different sentences), so
counting words does not answer it (``tests/data/test_synthetic_honest.py``).

Every word is a common lowercase English word that is a single token of the uncased BERT WordPiece
vocabulary, so a tiny transformer sees one token per word. Generation is deterministic given
``(seed, split)``; each split draws from its own random stream, and :func:`partition` gives every possible
example one split (a stable hash of its text), so dev and test never repeat a training example.
"""

from __future__ import annotations

import hashlib
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


#: Per-mille share of the example space each split owns (by a stable hash of the example's text).
PARTITIONS: dict[str, tuple[int, int]] = {"train": (0, 700), "dev": (700, 850), "test": (850, 1000)}
#: Draws per example before a generator gives up finding one in its split's partition.
MAX_TRIES = 1000


def partition(text: str) -> str:
    """The split that owns an example whose text (all its fields joined) is ``text``: disjoint by design.

    A stable hash (BLAKE2b, not Python's salted ``hash``), so it is the same on every machine and run.
    """
    bucket = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 1000
    return next(split for split, (lo, hi) in PARTITIONS.items() if lo <= bucket < hi)


def check_split(split: str, what: str) -> None:
    """ConfigError unless ``split`` is one of :data:`PARTITIONS`."""
    if split not in PARTITIONS:
        raise ConfigError(f"{what}: split must be one of {sorted(PARTITIONS)}, got {split!r}")


def draw_in_split(rng: random.Random, split: str, make, key, what: str):
    """``make(rng)`` until ``partition(key(example)) == split`` (each split sees only its own examples)."""
    for _ in range(MAX_TRIES):
        example = make(rng)
        if partition(key(example)) == split:
            return example
    raise ConfigError(f"{what}: found no example of split {split!r} in {MAX_TRIES} draws")


def vocabulary() -> tuple[str, ...]:
    """Every word the generator can emit (names, attributes, values, template words)."""
    values = tuple(v for vs in VALUES.values() for v in vs)
    return NAMES + ATTRIBUTES + values + TEMPLATE_WORDS


def _check_settings(n: int, n_facts: int, unanswerable_rate: float, max_facts: int) -> None:
    """ConfigError for a negative size, a fact count out of range or a rate outside [0, 1]."""
    if n < 0:
        raise ConfigError(f"synthetic_squad: n must be >= 0, got {n}")
    if not 1 <= n_facts <= MAX_FACTS:
        raise ConfigError(f"synthetic_squad: n_facts must be in 1..{MAX_FACTS}, got {n_facts}")
    if not n_facts <= max_facts <= MAX_FACTS:
        raise ConfigError(f"synthetic_squad: max_facts must be in {n_facts}..{MAX_FACTS}, got {max_facts}")
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
    n: int, seed: int, n_facts: int = 3, unanswerable_rate: float = 0.5, split: str = "train",
    max_facts: int | None = None,
) -> list[QAExample]:
    """``n`` synthetic SQuAD-2.0-style examples (one question per context), ids ``syn-{split}-{i}``, all
    from ``split``'s partition of the example space (:func:`partition` of context and question).
    Each context states ``n_facts`` facts, or a number drawn uniformly from ``n_facts..max_facts``."""
    max_facts = n_facts if max_facts is None else max_facts
    _check_settings(n, n_facts, unanswerable_rate, max_facts)
    check_split(split, "synthetic_squad")
    rng = random.Random(f"road-repro/synthetic/{split}/{seed}")

    def make(rng: random.Random) -> tuple[str, str, tuple[Answer, ...]]:
        context, facts = _context(rng, n_facts if max_facts == n_facts else rng.randint(n_facts, max_facts))
        if rng.random() < unanswerable_rate:
            (name, attr), answers = _unanswerable_pair(rng, facts), ()
        else:
            name, attr = rng.choice(list(facts))
            answers = (facts[(name, attr)],)
        return context, f"What is the {attr} of {name}?", answers

    examples = []
    for i in range(n):
        context, question, answers = draw_in_split(rng, split, make, lambda e: f"{e[0]}\n{e[1]}", "synthetic_squad")
        examples.append(QAExample(id=f"syn-{split}-{i}", context=context, question=question, answers=answers,
                                  title=f"synthetic-{split}"))
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
