"""The synthetic smoke data stays honest: dev and test never repeat a training example, and a bag-of-words
classifier does not solve a task (the label needs the encoder, as the real tasks do)."""

from __future__ import annotations

import re

import pytest
import torch

from road_repro.data.registry import load_examples
from road_repro.data.synthetic import PARTITIONS, partition, synthetic_squad
from road_repro.data.synthetic_tasks import POSITIVE, synthetic_nli, synthetic_paraphrase, synthetic_sentiment
from road_repro.errors import ConfigError
from road_repro.report.floors import accuracy_floor

CLASSIFICATION = {"nli": synthetic_nli, "paraphrase": synthetic_paraphrase, "sentiment": synthetic_sentiment}
DATASETS = ["synthetic_nli", "synthetic_paraphrase", "synthetic_sentiment", "synthetic_squad", "synthetic_squad_warmup"]
WARMUP = ["synthetic_nli_warmup", "synthetic_paraphrase_warmup", "synthetic_sentiment_warmup"]


def _key(example) -> tuple[str, str]:
    if hasattr(example, "context"):
        return example.context, example.question
    return example.text_a, example.text_b or ""


@pytest.mark.parametrize("name", DATASETS)
def test_dev_and_test_are_disjoint_from_train(name):
    train = {_key(e) for e in load_examples(name, "train", limit=3000)}
    for split in ("dev", "test"):
        held_out = {_key(e) for e in load_examples(name, split, limit=600)}
        assert held_out and not held_out & train, f"{name}: {len(held_out & train)} {split} examples are in train"


@pytest.mark.parametrize("name", WARMUP + ["synthetic_squad_warmup", "synthetic_squad_facts_warmup"])
def test_warm_start_streams_never_hold_a_dev_or_test_example(name):
    task = "synthetic_squad" if name.startswith("synthetic_squad") else name.removesuffix("_warmup")
    stream = {_key(e) for split in ("train", "dev") for e in load_examples(name, split, limit=2000)}
    held_out = {_key(e) for split in ("dev", "test") for e in load_examples(task, split, limit=600)}
    assert not stream & held_out
    if name != "synthetic_squad_warmup":  # the phase-2 streams come from the train partition only
        assert {partition(f"{a}\n{b}") for a, b in stream} == {"train"}
    if name == "synthetic_squad_facts_warmup":
        assert {ex.context.count(". ") + 1 for ex in load_examples(name, "train", limit=300)} == {1, 2, 3}


def test_partition_is_stable_and_covers_the_splits():
    assert partition("the cat is big .\nthe cat is big .") == partition("the cat is big .\nthe cat is big .")
    shares = {s: 0 for s in PARTITIONS}
    for i in range(3000):
        shares[partition(f"text {i}")] += 1
    for split, (lo, hi) in PARTITIONS.items():
        assert abs(shares[split] / 3000 - (hi - lo) / 1000) < 0.04
    with pytest.raises(ConfigError, match="split must be one of"):
        synthetic_nli(3, 0, "validation")
    with pytest.raises(ConfigError, match="split must be one of"):
        synthetic_squad(3, 0, split="validation")


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def _bag_of_words_accuracy(train, dev, fields, label) -> float:
    """Dev accuracy (percent) of L2-regularised logistic regression on unigram counts: one bag over all
    fields plus one per field (so it may weigh a premise word and a hypothesis word differently)."""
    vocab: dict[str, int] = {}
    for e in train:
        for f in fields:
            for w in _tokens(f(e)):
                vocab.setdefault(w, len(vocab))
    bags = len(fields) + 1 if len(fields) > 1 else 1

    def features(examples) -> torch.Tensor:
        x = torch.zeros(len(examples), bags * len(vocab))
        for i, e in enumerate(examples):
            texts = [" ".join(f(e) for f in fields)] + ([f(e) for f in fields] if bags > 1 else [])
            for b, text in enumerate(texts):
                for w in _tokens(text):
                    if w in vocab:
                        x[i, b * len(vocab) + vocab[w]] += 1
        return x

    x_train, x_dev = features(train), features(dev)
    y_train, y_dev = torch.tensor([label(e) for e in train]), torch.tensor([label(e) for e in dev])
    torch.manual_seed(0)
    linear = torch.nn.Linear(x_train.shape[1], int(y_train.max()) + 1)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=150, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x_train), y_train) + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return 100.0 * (linear(x_dev).argmax(1) == y_dev).float().mean().item()


def test_the_bag_of_words_baseline_solves_a_task_that_counting_words_does_solve():
    """A control, so that the failures below mean the tasks and not a broken baseline: on the same reviews,
    the number of positive words (ignoring "not") is read off unigram counts almost perfectly."""
    train, dev = synthetic_sentiment(1500, 0, "train"), synthetic_sentiment(500, 1, "dev")
    acc = _bag_of_words_accuracy(train, dev, [lambda e: e.text_a], lambda e: sum(w in POSITIVE for w in e.text_a.split()))
    assert acc > 85, acc


@pytest.mark.parametrize("task", sorted(CLASSIFICATION))
def test_bag_of_words_does_not_solve_the_classification_tasks(task):
    """The label is a relation between words (equal, antonym, negated), so unigram counts stay near chance:
    at least 10 points below the learning floor the encoder must clear (chance + 25)."""
    make = CLASSIFICATION[task]
    train, dev = make(1500, 0, "train"), make(500, 1, "dev")
    fields = [lambda e: e.text_a] if task == "sentiment" else [lambda e: e.text_a, lambda e: e.text_b]
    acc = _bag_of_words_accuracy(train, dev, fields, lambda e: e.label)
    assert acc < accuracy_floor(task) - 10, (task, acc)


def test_bag_of_words_does_not_tell_answerable_questions():
    """Answerability needs the asked name and attribute bound in one sentence: unigram counts of context
    and question stay near chance (the encoder's learning floor asks for answerable F1 above 50)."""
    train, dev = synthetic_squad(1000, 0), synthetic_squad(400, 1, split="dev")
    acc = _bag_of_words_accuracy(train, dev, [lambda e: e.context, lambda e: e.question], lambda e: int(e.is_impossible))
    assert acc < 60, acc
