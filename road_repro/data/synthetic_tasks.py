"""Generated NLI, sentiment and paraphrase tasks for the ``smoke`` scale: no downloads, learnable by a
tiny 2-layer transformer in seconds, with labels that follow a simple rule a test can recompute.

* NLI -- premise "the {name} is {adj} ." and hypothesis "the {name} is {adj'} .": the same adjective
  entails, its antonym contradicts, an adjective of another attribute is neutral.
* Sentiment -- "the {product} is {w1} , {w2} , {w3} and {w4} .": the number of positive words among the
  four is ``stars - 1`` (0 positive words = 1 star, 4 = 5 stars); the others are negative words.
* Paraphrase -- how-to question pairs with synonym substitution ("how do i fix a lamp ?" / "how can i
  repair a lamp ?"): a duplicate asks about the same object, a non-duplicate about another one.

Every word is a common lowercase word that is a single token of the uncased BERT WordPiece vocabulary.
Labels are balanced (counts differ by at most one) and generation is deterministic per ``seed``. The
module also registers ``synthetic_nli``, ``synthetic_sentiment``, ``synthetic_paraphrase`` and
``synthetic_squad`` (from :func:`road_repro.data.synthetic.synthetic_squad`) as datasets whose load
generates ``limit`` examples (default :data:`DEFAULT_SIZES`), seeded per split.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from road_repro.data.registry import GENERATED_SPLITS, DatasetSpec, Example, register_dataset
from road_repro.data.schema import LABELS, ClassificationExample
from road_repro.data.synthetic import synthetic_squad
from road_repro.errors import ConfigError

NAMES: tuple[str, ...] = (
    "cat", "dog", "man", "woman", "car", "house", "tree", "bird", "child", "boat",
    "horse", "teacher", "city", "room", "river", "king", "girl", "boy", "doctor", "farmer",
)  # fmt: skip

#: Attribute -> its two opposite adjectives.
ANTONYMS: dict[str, tuple[str, str]] = {
    "size": ("big", "small"),
    "temperature": ("hot", "cold"),
    "speed": ("fast", "slow"),
    "mood": ("happy", "sad"),
    "age": ("old", "young"),
    "weight": ("heavy", "light"),
    "brightness": ("bright", "dark"),
    "height": ("tall", "short"),
    "cleanliness": ("clean", "dirty"),
    "loudness": ("loud", "quiet"),
    "hardness": ("hard", "soft"),
    "wealth": ("rich", "poor"),
}

PRODUCTS: tuple[str, ...] = ("phone", "camera", "laptop", "chair", "lamp", "book", "shirt", "watch", "bag", "radio")
POSITIVE: tuple[str, ...] = ("good", "great", "nice", "excellent", "perfect", "amazing", "lovely", "wonderful", "fantastic")
NEGATIVE: tuple[str, ...] = ("bad", "awful", "terrible", "broken", "horrible", "useless", "ugly", "boring", "weak")
#: Adjective slots per review.
REVIEW_WORDS = 4

#: Groups of synonymous verbs (either verb of a group asks for the same action).
SYNONYMS: tuple[tuple[str, str], ...] = (
    ("buy", "purchase"), ("fix", "repair"), ("start", "begin"), ("clean", "wash"), ("choose", "pick"),
    ("learn", "study"), ("get", "obtain"), ("build", "construct"), ("find", "locate"),
)  # fmt: skip
#: Few objects keep the equality check quick to learn from scratch.
OBJECTS: tuple[str, ...] = ("phone", "camera", "lamp", "book", "bike", "car")
#: Question frames of equal length, so both questions put the object at the same position.
FRAMES: tuple[str, ...] = ("how do i {verb} a {obj} ?", "how can i {verb} a {obj} ?", "how should i {verb} a {obj} ?")

#: Examples generated per split when a load gives no ``limit``.
DEFAULT_SIZES: dict[str, int] = {"train": 2000, "dev": 500, "test": 500}
#: Seed of each split's generator, so that splits differ.
SPLIT_SEEDS: dict[str, int] = {"train": 0, "dev": 1, "test": 2}


def _rng(task: str, n: int, seed: int) -> random.Random:
    """A seeded generator for one task; a negative ``n`` raises :class:`ConfigError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"synthetic {task}: n must be a non-negative integer, got {n!r}")
    return random.Random(f"road-repro/synthetic_{task}/{seed}")


def balanced_labels(n: int, num_labels: int, rng: random.Random) -> list[int]:
    """``n`` labels in random order whose per-class counts differ by at most one."""
    labels = [i % num_labels for i in range(n)]
    rng.shuffle(labels)
    return labels


def vocabulary() -> tuple[str, ...]:
    """Every word the three generators can emit (for single-token checks)."""
    adjectives = tuple(a for pair in ANTONYMS.values() for a in pair)
    verbs = tuple(v for group in SYNONYMS for v in group)
    frame_words = tuple(w for f in FRAMES for w in f.split() if not w.startswith("{"))
    fixed = ("the", "is", "and", ",", ".", "?")
    return tuple(dict.fromkeys(NAMES + adjectives + PRODUCTS + POSITIVE + NEGATIVE + verbs + OBJECTS + frame_words + fixed))


def nli_label(premise_adj: str, hypothesis_adj: str) -> str:
    """The NLI rule: same adjective -> entailment, antonym -> contradiction, other attribute -> neutral."""
    if premise_adj == hypothesis_adj:
        return "entailment"
    pair = next(p for p in ANTONYMS.values() if premise_adj in p)
    return "contradiction" if hypothesis_adj in pair else "neutral"


def synthetic_nli(n: int, seed: int) -> list[ClassificationExample]:
    """``n`` balanced NLI pairs (ids ``synthetic_nli-{seed}-{i}``) following :func:`nli_label`."""
    rng = _rng("nli", n, seed)
    names, attrs, out = LABELS["nli"], list(ANTONYMS), []
    for i, label in enumerate(balanced_labels(n, len(names), rng)):
        name, attr = rng.choice(NAMES), rng.choice(attrs)
        adj = rng.choice(ANTONYMS[attr])
        if names[label] == "entailment":
            hyp = adj
        elif names[label] == "contradiction":
            hyp = next(a for a in ANTONYMS[attr] if a != adj)
        else:
            hyp = rng.choice(ANTONYMS[rng.choice([a for a in attrs if a != attr])])
        out.append(ClassificationExample(id=f"synthetic_nli-{seed}-{i}", text_a=f"the {name} is {adj} .",
                                         text_b=f"the {name} is {hyp} .", label=label, task="nli"))
    return out


def synthetic_sentiment(n: int, seed: int) -> list[ClassificationExample]:
    """``n`` balanced reviews (ids ``synthetic_sentiment-{seed}-{i}``): ``stars - 1`` positive words of four."""
    rng = _rng("sentiment", n, seed)
    out = []
    for i, label in enumerate(balanced_labels(n, len(LABELS["sentiment"]), rng)):
        words = rng.sample(POSITIVE, label) + rng.sample(NEGATIVE, REVIEW_WORDS - label)
        rng.shuffle(words)
        text = f"the {rng.choice(PRODUCTS)} is {words[0]} , {words[1]} , {words[2]} and {words[3]} ."
        out.append(ClassificationExample(id=f"synthetic_sentiment-{seed}-{i}", text_a=text, label=label, task="sentiment"))
    return out


def synthetic_paraphrase(n: int, seed: int) -> list[ClassificationExample]:
    """``n`` balanced question pairs (ids ``synthetic_paraphrase-{seed}-{i}``) about one action: each side
    uses either verb of a synonym group, so the wording differs in both classes; the pair is a duplicate
    iff both ask about the same object."""
    rng = _rng("paraphrase", n, seed)
    names, out = LABELS["paraphrase"], []
    for i, label in enumerate(balanced_labels(n, len(names), rng)):
        group = rng.choice(SYNONYMS)
        verb_a, verb_b, obj_a = rng.choice(group), rng.choice(group), rng.choice(OBJECTS)
        obj_b = obj_a if names[label] == "duplicate" else rng.choice([o for o in OBJECTS if o != obj_a])
        q1 = rng.choice(FRAMES).format(verb=verb_a, obj=obj_a)
        q2 = rng.choice(FRAMES).format(verb=verb_b, obj=obj_b)
        out.append(ClassificationExample(id=f"synthetic_paraphrase-{seed}-{i}", text_a=q1, text_b=q2, label=label, task="paraphrase"))
    return out


def _generator(make: Callable[[int, int, str], list[Example]]) -> Callable[[str, int | None], list[Example]]:
    """A registry ``generate(split, limit)``: ``limit`` (or the split's default) examples, seeded per split."""

    def generate(split: str, limit: int | None) -> list[Example]:
        return make(limit if limit is not None else DEFAULT_SIZES[split], SPLIT_SEEDS[split], split)

    return generate


def _register(name: str, task: str, make: Callable[[int, int, str], list[Example]], what: str) -> DatasetSpec:
    """Register one generated dataset."""
    return register_dataset(
        DatasetSpec(
            name=name,
            task=task,
            hub=None,
            hub_splits={},
            local={},
            from_hub=None,
            from_file=None,
            generate=_generator(make),
            licence="generated here (no third-party data)",
            size=f"generated: {DEFAULT_SIZES['train']} train / {DEFAULT_SIZES['dev']} dev / {DEFAULT_SIZES['test']} test by default; limit sets the size",
            notes=f"Smoke scale only: {what}. Splits {', '.join(GENERATED_SPLITS)} use seeds {SPLIT_SEEDS}.",
        )
    )


_register("synthetic_nli", "nli", lambda n, seed, split: synthetic_nli(n, seed), "adjective / antonym NLI")
_register("synthetic_sentiment", "sentiment", lambda n, seed, split: synthetic_sentiment(n, seed), "star rating = positive-word count + 1")
_register("synthetic_paraphrase", "paraphrase", lambda n, seed, split: synthetic_paraphrase(n, seed), "synonym-verb question pairs")
_register("synthetic_squad", "mrc", lambda n, seed, split: synthetic_squad(n, seed, split=split), "SQuAD-2.0-style facts, half unanswerable")
_register(
    "synthetic_squad_warmup", "mrc", lambda n, seed, split: synthetic_squad(n, seed + 1000, n_facts=1, split=split),
    "one-fact SQuAD-2.0-style stream, disjoint from synthetic_squad, for warm-starting tiny encoders",
)
