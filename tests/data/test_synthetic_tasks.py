"""The generated NLI, sentiment and paraphrase tasks: labels recomputed from the text by the rule each
task states, balance, determinism, single-token words."""

from __future__ import annotations

from collections import Counter

import pytest

from road_repro.data.schema import LABELS
from road_repro.data.synthetic_tasks import (
    ANTONYMS,
    INTENSIFIERS,
    NEGATIVE,
    POSITIVE,
    SYNONYMS,
    nli_label,
    sentiment_stars,
    synthetic_nli,
    synthetic_paraphrase,
    synthetic_sentiment,
    vocabulary,
)
from road_repro.errors import ConfigError

GENERATORS = {"nli": synthetic_nli, "sentiment": synthetic_sentiment, "paraphrase": synthetic_paraphrase}


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_deterministic_balanced_valid(task):
    make = GENERATORS[task]
    a, b, other = make(301, 5), make(301, 5), make(301, 6)
    assert a == b and a != other and a != make(301, 5, "dev")
    assert len({e.id for e in a}) == 301
    counts = Counter(e.label for e in a)
    assert set(counts) == set(range(len(LABELS[task]))) and max(counts.values()) - min(counts.values()) <= 1
    for e in a:
        e.validate("synthetic")
        assert e.task == task


def test_nli_rule_by_hand():
    assert nli_label("big", "big") == "entailment"
    assert nli_label("big", "small") == "contradiction"
    assert nli_label("big", "hot") == "neutral"


def test_nli_labels_follow_the_rule():
    for e in synthetic_nli(300, 0):
        *p_name, _, p_adj, _ = e.text_a.split()
        *h_name, _, h_adj, _ = e.text_b.split()
        assert p_name == h_name
        antonym = next(pair for pair in ANTONYMS.values() if p_adj in pair)
        expected = "entailment" if h_adj == p_adj else "contradiction" if h_adj in antonym else "neutral"
        assert LABELS["nli"][e.label] == expected


def test_sentiment_stars_count_positive_slots():
    """Stars = 1 + slots that are a positive word, or "not" and a negative word (recomputed by hand)."""
    negated = 0
    for e in synthetic_sentiment(300, 0):
        body = e.text_a.removeprefix("the ").split(" is ", 1)[1].removesuffix(" .")
        first, last = body.split(" and ")
        slots = [s.split() for s in first.split(" , ") + [last]]
        assert len(slots) == 4 and all(len(s) == 2 and s[0] in ("not", *INTENSIFIERS) for s in slots)
        assert all(s[1] in POSITIVE or s[1] in NEGATIVE for s in slots)
        positive = sum((s[1] in POSITIVE) != (s[0] == "not") for s in slots)
        assert LABELS["sentiment"][e.label] == str(1 + positive)
        assert sentiment_stars(e.text_a) == 1 + positive
        negated += sum(s[0] == "not" for s in slots)
    assert 0.4 < negated / 1200 < 0.6


def test_paraphrase_duplicate_iff_same_object_and_verbs_are_synonyms():
    for e in synthetic_paraphrase(300, 0):
        q1, q2 = e.text_a.split(), e.text_b.split()
        verb_1, verb_2, obj_1, obj_2 = q1[3], q2[3], q1[5], q2[5]
        assert any(verb_1 in g and verb_2 in g for g in SYNONYMS)
        assert LABELS["paraphrase"][e.label] == ("duplicate" if obj_1 == obj_2 else "not_duplicate")


def test_every_word_is_one_wordpiece(tokenizer):
    vocab = vocabulary()
    assert [w for w in vocab if len(tokenizer.tokenize(w)) != 1] == []
    used = {w for task in GENERATORS.values() for e in task(200, 0) for w in (e.text_a + " " + e.text_b).split()}
    assert used <= set(vocab)


@pytest.mark.parametrize("n", [-1, 2.5, True])
def test_bad_size(n):
    with pytest.raises(ConfigError, match="n must be a non-negative integer"):
        synthetic_nli(n, 0)


def test_zero_examples():
    assert synthetic_paraphrase(0, 0) == []


def test_warm_up_curricula():
    """The warm-up streams are easier versions of the tasks: fewer negated review slots, and paraphrase
    pairs worded alike so that only the object can differ (labels follow the same rules)."""
    for e in synthetic_paraphrase(200, 0, same_wording=True):
        a, b = e.text_a.split(), e.text_b.split()
        assert a[:5] + a[6:] == b[:5] + b[6:]
        assert LABELS["paraphrase"][e.label] == ("duplicate" if a[5] == b[5] else "not_duplicate")
    reviews = synthetic_sentiment(400, 0, negation_rate=0.25)
    assert all(sentiment_stars(e.text_a) == e.label + 1 for e in reviews)
    assert 0.2 < sum(e.text_a.split().count("not") for e in reviews) / 1600 < 0.3
    with pytest.raises(ConfigError, match="negation_rate"):
        synthetic_sentiment(3, 0, negation_rate=1.5)
