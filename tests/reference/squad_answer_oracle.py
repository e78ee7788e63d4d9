"""Test oracle: the reference SQuAD 2.0 answer-selection rule, transcribed plainly, one question at a time.

Only the tests use it. It restates the rule of Hugging Face's ``run_qa`` post-processing
(``utils_qa.py``, ``postprocess_qa_predictions`` with ``version_2_with_negative``), BERT's
``run_squad.py`` and ELECTRA's ``qa_metrics.py`` in words, and is written from those words rather than
from their code or from the package's batched torch search:

* every feature: rank ALL its positions (question, special tokens, padding included) by start logit
  and by end logit, keep the ``n_best_size`` best of each, and try every (start, end) pair of the two
  lists; a pair survives only if both tokens map into the context, ``end >= start`` and
  ``end - start + 1 <= max_answer_length``; its score is ``start_logit + end_logit``;
* the null score is ``start_logit[CLS] + end_logit[CLS]`` (CLS at position 0), minimum over the
  question's features;
* the best surviving pair over all features wins, the earliest (feature, start rank, end rank) on ties,
  as a stable descending sort of the candidates in generation order gives;
* odds = null score - best pair score; the answer is "" when odds > ``null_score_diff_threshold``,
  else the context text from the start token's first character to the end token's last.

One deliberate departure, shared with the package: when no pair survives, the references insert a nonce
answer "empty" of score 0; here (and in the package) the question gets "" with odds ``inf``.
Arguments are plain nested lists: offsets use ``(-1, -1)`` for tokens outside the context.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence


def n_best(logits: Sequence[float], n: int) -> list[int]:
    """Positions of the ``n`` largest logits, largest first (a stable sort: earlier position on ties)."""
    return sorted(range(len(logits)), key=lambda t: logits[t], reverse=True)[:n]


def reference_predictions(
    contexts: Sequence[tuple[str, str]],
    example_index: Sequence[int],
    offsets: Sequence[Sequence[Sequence[int]]],
    start_logits: Sequence[Sequence[float]],
    end_logits: Sequence[Sequence[float]],
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float]]:
    """``(predictions, null_odds)`` keyed by question id; ``contexts`` holds ``(id, context)`` per question."""
    features_of: dict[int, list[int]] = defaultdict(list)
    for f, i in enumerate(example_index):
        features_of[i].append(f)

    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    for i, (qid, context) in enumerate(contexts):
        null_score = min(start_logits[f][0] + end_logits[f][0] for f in features_of[i])
        candidates: list[tuple[float, str]] = []
        for f in features_of[i]:
            char_span = [None if a < 0 else (a, b) for a, b in offsets[f]]
            for s in n_best(start_logits[f], n_best_size):
                for e in n_best(end_logits[f], n_best_size):
                    if char_span[s] is None or char_span[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    text = context[char_span[s][0] : char_span[e][1]]
                    candidates.append((start_logits[f][s] + end_logits[f][e], text))
        if not candidates:
            predictions[qid], null_odds[qid] = "", float("inf")
            continue
        best_score, best_text = sorted(candidates, key=lambda c: c[0], reverse=True)[0]
        null_odds[qid] = null_score - best_score
        predictions[qid] = "" if null_odds[qid] > null_score_diff_threshold else best_text
    return predictions, null_odds
