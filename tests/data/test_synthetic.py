"""The synthetic smoke QA set: determinism, answer offsets, unanswerable kinds, JSON round-trip, vocab."""

from __future__ import annotations

import json
import re

import pytest

from road_repro.data.squad_v2 import load_squad_v2_json
from road_repro.data.synthetic import ATTRIBUTES, NAMES, VALUES, synthetic_squad, synthetic_squad_json, vocabulary
from road_repro.errors import ConfigError

FACT = re.compile(r"The (\w+) of (\w+) is (\w+)\.")
QUESTION = re.compile(r"What is the (\w+) of (\w+)\?")


def _facts(context: str) -> dict[tuple[str, str], tuple[str, int]]:
    """(name, attr) -> (value, char offset), parsed back from the context independently of the generator."""
    return {(m.group(2), m.group(1)): (m.group(3), m.start(3)) for m in FACT.finditer(context)}


def test_deterministic_and_splits_differ():
    a = synthetic_squad(50, seed=3)
    assert a == synthetic_squad(50, seed=3)
    assert a != synthetic_squad(50, seed=4)
    dev = synthetic_squad(50, seed=3, split="dev")
    assert [ex.id for ex in dev[:2]] == ["syn-dev-0", "syn-dev-1"]
    assert [(ex.context, ex.question) for ex in a] != [(ex.context, ex.question) for ex in dev]


@pytest.mark.parametrize("n_facts", [1, 3, 5])
def test_contexts_questions_and_answers(n_facts):
    examples = synthetic_squad(300, seed=0, n_facts=n_facts)
    kinds = {"absent": 0, "distractor": 0}
    for ex in examples:
        ex.validate("synthetic")
        facts = _facts(ex.context)
        assert len(facts) == n_facts and len(FACT.findall(ex.context)) == n_facts  # distinct (name, attr) pairs
        assert FACT.sub("", ex.context).strip() == ""  # nothing but fact sentences
        attr, name = QUESTION.fullmatch(ex.question).groups()
        assert attr in ATTRIBUTES and name in NAMES
        if ex.is_impossible:
            assert (name, attr) not in facts
            kinds["distractor" if any(n == name for n, _ in facts) else "absent"] += 1
        else:
            value, offset = facts[(name, attr)]
            assert value in VALUES[attr]
            assert [(a.text, a.start) for a in ex.answers] == [(value, offset)]
    impossible = kinds["absent"] + kinds["distractor"]
    assert 0.4 < impossible / len(examples) < 0.6
    assert 0.35 < kinds["distractor"] / impossible < 0.65


@pytest.mark.parametrize("rate", [0.0, 0.2, 1.0])
def test_unanswerable_rate(rate):
    examples = synthetic_squad(1000, seed=1, unanswerable_rate=rate)
    assert abs(sum(ex.is_impossible for ex in examples) / 1000 - rate) < 0.04


def test_json_round_trip(tmp_path):
    examples = synthetic_squad(40, seed=2, split="dev")
    obj = synthetic_squad_json(examples)
    assert obj["version"] == "v2.0" and [a["title"] for a in obj["data"]] == ["synthetic-dev"]
    assert len(obj["data"][0]["paragraphs"]) == len({ex.context for ex in examples})
    path = tmp_path / "syn.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    assert load_squad_v2_json(path) == examples


def test_every_word_is_one_wordpiece(tokenizer):
    words = vocabulary()
    assert len(set(words)) == len(words)  # no word is both a name and a value, or two values
    assert [w for w in words if tokenizer.tokenize(w) != [w]] == []
    ex = synthetic_squad(1, seed=0)[0]
    text_words = re.findall(r"\w+", (ex.context + " " + ex.question).lower())
    assert len(tokenizer.tokenize(ex.context + " " + ex.question)) == len(text_words) + ex.context.count(".") + 1


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"n": -1}, "n must"),
        ({"n_facts": 0}, "n_facts"),
        ({"n_facts": 13}, "n_facts"),
        ({"unanswerable_rate": 2}, "unanswerable_rate"),
    ],
)
def test_bad_settings(kwargs, setting):
    with pytest.raises(ConfigError, match=setting):
        synthetic_squad(**{"n": 5, "seed": 0, **kwargs})
