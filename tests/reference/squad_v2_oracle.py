"""Test oracle: a second, independent implementation of the official SQuAD 2.0 (v2.0) evaluation.

Only the tests use it. It is written from the official script's behaviour ("Official evaluation
script for SQuAD version 2.0", Rajpurkar, Jia and Liang, https://rajpurkar.github.io/SQuAD-explorer/,
CC BY-SA 4.0) but deliberately NOT with its code, so that the package's port and this oracle can only
agree if both encode the same rules:

* normalisation uses ``str.translate`` instead of a per-character filter;
* token overlap is counted by consuming a count table instead of ``Counter`` intersection;
* thresholding and the best-threshold sweep are vectorised with numpy (``where``, stable
  ``argsort``, ``cumsum`` and the first ``argmax``) instead of a running loop.

Rules encoded (official behaviour, quirks included): gold texts that normalise to "" are dropped and
an unanswerable question's only gold is ""; F1 with an empty side is 1 iff both are empty; a question
counts as "has answer" iff its raw ``answers`` list is non-empty; ``na > thresh`` predicts no answer;
the sweep starts at the number of unanswerable questions, walks questions in ascending no-answer
probability (ties in the probability mapping's order), adds the raw score of an answerable question or
-1 for an unanswerable one whose raw prediction string is non-empty, and reports the probability at the
first maximum (0.0 if nothing beats the start); percentages divide by the number of scored questions.
"""

from __future__ import annotations

import re
import string
from collections import OrderedDict

import numpy as np

_DROP_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLE = re.compile(r"\b(?:a|an|the)\b")


def norm(text: str) -> str:
    """Official normalisation, written independently."""
    return " ".join(_ARTICLE.sub(" ", text.lower().translate(_DROP_PUNCT)).split())


def tokens(text: str) -> list[str]:
    """Normalised tokens; an empty raw string has none."""
    return norm(text).split() if text else []


def overlap(gold: list[str], pred: list[str]) -> int:
    """Size of the multiset intersection of two token lists."""
    left: dict[str, int] = {}
    for t in gold:
        left[t] = left.get(t, 0) + 1
    n = 0
    for t in pred:
        if left.get(t, 0) > 0:
            left[t] -= 1
            n += 1
    return n


def f1(gold: str, pred: str) -> float:
    """Token F1 of one prediction against one gold answer."""
    g, p = tokens(gold), tokens(pred)
    if not g or not p:
        return float(g == p)
    n = overlap(g, p)
    if n == 0:
        return 0.0
    precision, recall = n / len(p), n / len(g)
    return 2 * precision * recall / (precision + recall)


def oracle_evaluate(
    articles: list[dict], preds: dict[str, str], na_probs: dict[str, float] | None = None, thresh: float = 1.0
) -> OrderedDict:
    """The official output dict for complete predictions (every question predicted)."""
    qas = {qa["id"]: qa for article in articles for p in article["paragraphs"] for qa in p["qas"]}
    ids = list(qas)
    has = np.array([bool(qas[q]["answers"]) for q in ids])
    exact = np.empty(len(ids))
    f1s = np.empty(len(ids))
    for i, q in enumerate(ids):
        golds = [a["text"] for a in qas[q]["answers"] if norm(a["text"])] or [""]
        exact[i] = max(float(norm(g) == norm(preds[q])) for g in golds)
        f1s[i] = max(f1(g, preds[q]) for g in golds)
    probs = np.array([na_probs[q] if na_probs is not None else 0.0 for q in ids], dtype=float)
    said_na = probs > thresh
    out: OrderedDict = OrderedDict()
    for prefix, sel in (("", np.ones(len(ids), bool)), ("HasAns_", has), ("NoAns_", ~has)):
        if not sel.any():
            continue
        out[prefix + "exact"] = 100.0 * np.where(said_na, ~has, exact)[sel].sum() / sel.sum()
        out[prefix + "f1"] = 100.0 * np.where(said_na, ~has, f1s)[sel].sum() / sel.sum()
        out[prefix + "total"] = int(sel.sum())
    if na_probs is not None:
        for name, raw in (("exact", exact), ("f1", f1s)):
            best, at = sweep(ids, has, raw, preds, na_probs)
            out[f"best_{name}"] = best
            out[f"best_{name}_thresh"] = at
    return out


def sweep(
    ids: list[str], has: np.ndarray, raw: np.ndarray, preds: dict[str, str], na_probs: dict[str, float]
) -> tuple[float, float]:
    """Best-threshold sweep, vectorised: cumulative score in probability order and its first maximum."""
    row = {q: i for i, q in enumerate(ids)}
    walk = [row[q] for q in na_probs if q in row]
    order = np.argsort(np.array([na_probs[ids[i]] for i in walk], dtype=float), kind="stable")
    rows = np.array(walk)[order]
    gain = np.where(has, raw, np.where([bool(preds[q]) for q in ids], -1.0, 0.0))[rows]
    start = float((~has).sum())
    running = start + np.cumsum(gain)
    if running.size == 0 or running.max() <= start:
        return 100.0 * start / len(ids), 0.0
    first = int(np.argmax(running))
    return 100.0 * running[first] / len(ids), float(na_probs[ids[rows[first]]])
