"""Generated NLI, sentiment and paraphrase tasks for the ``smoke`` scale: no downloads, learnable by a
tiny transformer in seconds, with labels that follow a simple rule a test can recompute.

What makes each label true (and why counting words does not find it; ``tests/data/test_synthetic_honest.py``
checks that a bag-of-words classifier stays far below the learning floor an encoder clears):

* NLI -- premise "the {name} is {adj} ." and hypothesis "the {name} is {adj'} .": the same adjective
  entails, its antonym contradicts, an adjective of another attribute is neutral. The label is a relation
  *between* the two adjectives (equal / antonyms / unrelated), which no weighting of single words expresses.
* Sentiment -- "the {product} is {m1} {a1} , {m2} {a2} , {m3} {a3} and {m4} {a4} .", each slot a
  modifier ("not", or an intensifier such as "very") and an adjective: a slot is positive when it is a
  positive adjective not negated or a negative adjective negated, and the star rating is 1 + the number of
  positive slots. Half the slots are negated at random, so the positive words alone say nothing about the
  rating (each adjective is positive with probability 1/2 whatever the rating): which adjectives the
  "not"s stand before decides it.
* Paraphrase -- how-to question pairs with synonym substitution ("how do i fix a lamp ?" / "how can i
  repair a lamp ?"): a duplicate asks about the same object, a non-duplicate about another one; both
  classes use either verb of a synonym group and any frame on each side. The label is the equality of the
  two objects.

Every word is a common lowercase word that is a single token of the uncased BERT WordPiece vocabulary.
Labels are balanced (counts differ by at most one) and generation is deterministic per ``(seed, split)``;
every example belongs to one split (:func:`road_repro.data.synthetic.partition` of its text), so the dev
and test splits never repeat a training example. The module also registers ``synthetic_nli``,
``synthetic_sentiment``, ``synthetic_paraphrase`` and ``synthetic_squad`` (from
:func:`road_repro.data.synthetic.synthetic_squad`) as datasets whose load generates ``limit`` examples
(default :data:`DEFAULT_SIZES`), seeded per split; and ``*_warmup`` streams of each (other seeds, train
partition only) for warm-starting tiny encoders. Two warm-up streams are a curriculum, easier than the task
(measured: without it a random-init tiny encoder sits at chance on the task for over a thousand steps):
the sentiment stream negates a quarter of the slots (:data:`WARMUP_NEGATION_RATE`), the paraphrase stream
words both questions alike so that only the object can differ.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from road_repro.data.registry import GENERATED_SPLITS, DatasetSpec, Example, register_dataset
from road_repro.data.schema import LABELS, ClassificationExample
from road_repro.data.synthetic import check_split, draw_in_split, synthetic_squad
from road_repro.errors import ConfigError

NAMES: tuple[str, ...] = (
    "cat", "dog", "man", "woman", "car", "house", "tree", "bird", "child", "boat",
    "horse", "teacher", "city", "room", "river", "king", "girl", "boy", "doctor", "farmer",
    "queen", "baby", "student", "soldier", "lion", "wolf", "bear", "fox", "cow", "ship",
    "train", "road", "garden", "lake", "table", "door", "window", "kitchen", "village", "forest",
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
#: The negation word, the chance that a review slot is negated, and the intensifiers of the other slots
#: (every slot is two words, so a review always has the same length and each modifier sits right before
#: its adjective).
NOT = "not"
NEGATION_RATE = 0.5
#: The warm-up stream negates fewer slots (a curriculum): at one half, polarity words alone carry no signal
#: at all and a random-init tiny encoder sits at chance for over a thousand steps before it finds the
#: negation; at a quarter it first learns polarity, then the negation (measured; see the smoke profile).
WARMUP_NEGATION_RATE = 0.25
INTENSIFIERS: tuple[str, ...] = ("very", "really", "so", "quite")

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


def _rng(task: str, n: int, seed: int, split: str) -> random.Random:
    """A seeded generator for one task and split; a bad ``n`` or split raises :class:`ConfigError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"synthetic {task}: n must be a non-negative integer, got {n!r}")
    check_split(split, f"synthetic {task}")
    return random.Random(f"road-repro/synthetic_{task}/{split}/{seed}")


def _pair_key(pair: tuple[str, str | None]) -> str:
    return f"{pair[0]}\n{pair[1] or ''}"


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
    fixed = ("the", "is", "and", ",", ".", "?", NOT, *INTENSIFIERS)
    return tuple(dict.fromkeys(NAMES + adjectives + PRODUCTS + POSITIVE + NEGATIVE + verbs + OBJECTS + frame_words + fixed))


def nli_label(premise_adj: str, hypothesis_adj: str) -> str:
    """The NLI rule: same adjective -> entailment, antonym -> contradiction, other attribute -> neutral."""
    if premise_adj == hypothesis_adj:
        return "entailment"
    pair = next(p for p in ANTONYMS.values() if premise_adj in p)
    return "contradiction" if hypothesis_adj in pair else "neutral"


def synthetic_nli(n: int, seed: int, split: str = "train") -> list[ClassificationExample]:
    """``n`` balanced NLI pairs of ``split`` (ids ``synthetic_nli-{seed}-{i}``) following :func:`nli_label`."""
    rng = _rng("nli", n, seed, split)
    names, attrs, out = LABELS["nli"], list(ANTONYMS), []
    for i, label in enumerate(balanced_labels(n, len(names), rng)):

        def make(rng: random.Random) -> tuple[str, str]:
            name, attr = rng.choice(NAMES), rng.choice(attrs)
            adj = rng.choice(ANTONYMS[attr])
            if names[label] == "entailment":
                hyp = adj
            elif names[label] == "contradiction":
                hyp = next(a for a in ANTONYMS[attr] if a != adj)
            else:
                hyp = rng.choice(ANTONYMS[rng.choice([a for a in attrs if a != attr])])
            return f"the {name} is {adj} .", f"the {name} is {hyp} ."

        premise, hypothesis = draw_in_split(rng, split, make, _pair_key, "synthetic nli")
        out.append(ClassificationExample(id=f"synthetic_nli-{seed}-{i}", text_a=premise, text_b=hypothesis,
                                         label=label, task="nli"))
    return out


def sentiment_stars(text: str) -> int:
    """The sentiment rule, read back from a review: 1 + the slots that are positive (a positive word not
    negated, or a negative word after "not")."""
    words = text.split()
    positive = 0
    for i, word in enumerate(words):
        if word in POSITIVE or word in NEGATIVE:
            negated = i > 0 and words[i - 1] == NOT
            positive += (word in POSITIVE) != negated
    return 1 + positive


def synthetic_sentiment(n: int, seed: int, split: str = "train",
                        negation_rate: float = NEGATION_RATE) -> list[ClassificationExample]:
    """``n`` balanced reviews of ``split`` (ids ``synthetic_sentiment-{seed}-{i}``) whose star rating is
    :func:`sentiment_stars`: ``stars - 1`` positive slots of four, each slot negated with probability
    ``negation_rate`` (a negated positive slot says "not" and a negative word), the others intensified."""
    if not 0.0 <= negation_rate <= 1.0:
        raise ConfigError(f"synthetic sentiment: negation_rate must lie in [0, 1], got {negation_rate}")
    rng = _rng("sentiment", n, seed, split)
    out = []
    for i, label in enumerate(balanced_labels(n, len(LABELS["sentiment"]), rng)):

        def make(rng: random.Random) -> tuple[str, None]:
            positive = [True] * label + [False] * (REVIEW_WORDS - label)
            rng.shuffle(positive)
            slots = []
            for pos in positive:
                negated = rng.random() < negation_rate
                word = rng.choice(POSITIVE if pos != negated else NEGATIVE)
                slots.append(f"{NOT if negated else rng.choice(INTENSIFIERS)} {word}")
            return f"the {rng.choice(PRODUCTS)} is {slots[0]} , {slots[1]} , {slots[2]} and {slots[3]} .", None

        text, _ = draw_in_split(rng, split, make, _pair_key, "synthetic sentiment")
        out.append(ClassificationExample(id=f"synthetic_sentiment-{seed}-{i}", text_a=text, label=label, task="sentiment"))
    return out


def synthetic_paraphrase(n: int, seed: int, split: str = "train", same_wording: bool = False) -> list[ClassificationExample]:
    """``n`` balanced question pairs of ``split`` (ids ``synthetic_paraphrase-{seed}-{i}``) about one action:
    each side uses either verb of a synonym group and any frame, so the wording differs in both classes;
    the pair is a duplicate iff both ask about the same object. ``same_wording`` (the warm-up curriculum)
    gives both sides one frame and one verb, so that the object is the only word that can differ."""
    rng = _rng("paraphrase", n, seed, split)
    names, out = LABELS["paraphrase"], []
    for i, label in enumerate(balanced_labels(n, len(names), rng)):

        def make(rng: random.Random) -> tuple[str, str]:
            group = rng.choice(SYNONYMS)
            verb_a, verb_b, obj_a = rng.choice(group), rng.choice(group), rng.choice(OBJECTS)
            obj_b = obj_a if names[label] == "duplicate" else rng.choice([o for o in OBJECTS if o != obj_a])
            frame_a, frame_b = rng.choice(FRAMES), rng.choice(FRAMES)
            if same_wording:
                verb_b, frame_b = verb_a, frame_a
            return frame_a.format(verb=verb_a, obj=obj_a), frame_b.format(verb=verb_b, obj=obj_b)

        q1, q2 = draw_in_split(rng, split, make, _pair_key, "synthetic paraphrase")
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


#: Seed offset of the ``*_warmup`` streams (other examples than the task streams; train partition only).
WARMUP_SEED = 1000

_register("synthetic_nli", "nli", synthetic_nli, "adjective / antonym NLI")
_register("synthetic_sentiment", "sentiment", synthetic_sentiment, "star rating = 1 + positive slots, half negated")
_register("synthetic_paraphrase", "paraphrase", synthetic_paraphrase, "synonym-verb question pairs, duplicate iff same object")
_register("synthetic_squad", "mrc", lambda n, seed, split: synthetic_squad(n, seed, split=split), "SQuAD-2.0-style facts, half unanswerable")
_register(
    "synthetic_squad_warmup", "mrc", lambda n, seed, split: synthetic_squad(n, seed + WARMUP_SEED, n_facts=1, split=split),
    "one-fact SQuAD-2.0-style stream, disjoint from synthetic_squad, for warm-starting tiny encoders",
)
_register(
    "synthetic_squad_facts_warmup", "mrc",
    lambda n, seed, split: synthetic_squad(n, seed + WARMUP_SEED, n_facts=1, max_facts=3, split="train"),
    "1- to 3-fact SQuAD-2.0-style stream (train partition only) for the second phase of the warm start",
)
_WARMUP_MAKERS = {
    "nli": synthetic_nli,
    "sentiment": lambda n, seed, split: synthetic_sentiment(n, seed, split, negation_rate=WARMUP_NEGATION_RATE),
    "paraphrase": lambda n, seed, split: synthetic_paraphrase(n, seed, split, same_wording=True),
}
for _name, _make in _WARMUP_MAKERS.items():
    _register(
        f"synthetic_{_name}_warmup", _name,
        lambda n, seed, split, make=_make: make(n, seed + WARMUP_SEED, "train"),
        f"another stream of synthetic_{_name} for warm-starting tiny encoders: other seeds, and every split drawn "
        "from the train partition, so a warm start never sees a dev or test example"
        + {"sentiment": f"; {WARMUP_NEGATION_RATE:.0%} of slots negated (a curriculum)",
           "paraphrase": "; both questions worded alike, only the object may differ (a curriculum)"}.get(_name, ""),
    )
