"""The generated NLI, sentiment and paraphrase tasks: labels recomputed from the text by the rule each
task states, balance, determinism, single-token words."""

from __future__ import annotations

from collections import Counter

import pytest

from road_repro.data.schema import LABELS
from road_repro.data.synthetic_tasks import (
    ANTONYMS,
    NEGATIVE,
    POSITIVE,
    SYNONYMS,
    nli_label,
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
    assert a == b and a != other
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


def test_sentiment_stars_count_positive_words():
    for e in synthetic_sentiment(300, 0):
        words = [w for w in e.text_a.split() if w in POSITIVE or w in NEGATIVE]
        assert len(words) == 4
        assert LABELS["sentiment"][e.label] == str(1 + sum(w in POSITIVE for w in words))


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
