"""SQuAD 2.0 post-processing: per-feature start/end logits -> one answer (or "") per question.

A doc-stride tokenizer cuts a long context into several overlapping features, so one question owns
one or more rows of logits. Following Hugging Face's ``run_qa`` post-processing and the BERT / ELECTRA
references (which ROaD builds on):

* position 0 of every feature is CLS, the no-answer position; the question's null score is the
  minimum over its features of ``start_logits[0] + end_logits[0]``;
* a span candidate pairs one of the ``n_best_size`` best starts with one of the ``n_best_size`` best
  ends of the same feature, with both tokens in the context, ``start <= end`` and at most
  ``max_answer_length`` tokens; its score is ``start_logit + end_logit`` and the best over all the
  question's features wins (first feature on ties);
* the question is answered "" when ``null_score - best_span_score > null_score_diff_threshold``;
  that difference is returned as the question's no-answer odds for the official script's
  ``--na-prob-file`` (its best-threshold sweep then tunes the threshold).

Where the n-best come from is the ``answer_selection`` setting. ``"reference"`` (the default, as in
``run_qa``'s ``utils_qa.py``, BERT's ``run_squad.py`` and ELECTRA's ``qa_metrics.py``) takes them over
the whole window, so question, special and padding tokens with high logits use up n-best slots and are
only then dropped as invalid; ``"context"`` takes them among context tokens only, which can find a
better span when many n-best slots fall outside the context. On 400 real SQuAD 2.0 dev questions
(packaged MiniLM tokenizer) with random logits that score high outside the context, the two rules give
44 questions different null odds, 26 a different prediction and 6 a different answer-or-abstain
decision (``tests/evaluate/test_answer_selection.py``). When no valid span exists the question gets ""
with odds ``inf`` (the references instead insert a nonce answer "empty" of score 0).

Tokens outside the context (question, special tokens, padding) carry offsets ``(-1, -1)`` and are
never part of a span. The top-k x top-k search runs batched over all features with torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from road_repro.data.schema import QAExample
from road_repro.errors import ConfigError, DataError

ANSWER_SELECTIONS = ("reference", "context")
"""Values of ``answer_selection``: n-best over the whole window (as the references) or over the context."""


@dataclass(frozen=True)
class FeatureSpans:
    """Per feature: the best valid span's score (``-inf`` if none) and its start/end token positions."""

    score: Tensor
    start: Tensor
    end: Tensor


def context_mask(offsets: Tensor) -> Tensor:
    """``[N, L]`` bool: True where a token has character offsets into the context (not ``(-1, -1)``)."""
    return (offsets >= 0).all(dim=-1)


def best_feature_spans(
    start_logits: Tensor,
    end_logits: Tensor,
    in_context: Tensor,
    n_best_size: int,
    max_answer_length: int,
    answer_selection: str = "reference",
) -> FeatureSpans:
    """Best span of every feature among its top-``n_best_size`` starts x top-``n_best_size`` ends.

    The top starts and ends are taken over the whole window (``"reference"``) or over the context
    tokens only (``"context"``). Valid pairs have both tokens in the context, ``start <= end`` and
    ``end - start + 1 <= max_answer_length``. All features are searched at once: ``[N, k] x [N, k] ->
    [N, k, k]``.
    """
    k = min(n_best_size, start_logits.shape[1])
    neg_inf = torch.tensor(float("-inf"), dtype=start_logits.dtype)
    if answer_selection == "context":
        start_logits = torch.where(in_context, start_logits, neg_inf)
        end_logits = torch.where(in_context, end_logits, neg_inf)
    start_val, start_idx = start_logits.topk(k, dim=1)
    end_val, end_idx = end_logits.topk(k, dim=1)
    pair = start_val[:, :, None] + end_val[:, None, :]
    length = end_idx[:, None, :] - start_idx[:, :, None] + 1
    both_in_context = in_context.gather(1, start_idx)[:, :, None] & in_context.gather(1, end_idx)[:, None, :]
    valid = both_in_context & (length >= 1) & (length <= max_answer_length)
    score, flat = torch.where(valid, pair, neg_inf).flatten(1).max(dim=1)
    start = start_idx.gather(1, (flat // k)[:, None]).squeeze(1)
    end = end_idx.gather(1, (flat % k)[:, None]).squeeze(1)
    return FeatureSpans(score=score, start=start, end=end)


def _check_settings(n_best_size: int, max_answer_length: int, answer_selection: str) -> None:
    """Raise :class:`ConfigError` naming the setting if a search limit is not a positive integer or
    ``answer_selection`` is not one of :data:`ANSWER_SELECTIONS`."""
    for name, value in (("n_best_size", n_best_size), ("max_answer_length", max_answer_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"postprocess: {name} must be a positive integer, got {value!r}")
    if answer_selection not in ANSWER_SELECTIONS:
        raise ConfigError(
            f"postprocess: answer_selection must be one of {ANSWER_SELECTIONS}, got {answer_selection!r}"
        )


def _check_tensors(
    examples: Sequence[QAExample], example_index: Tensor, offsets: Tensor, start_logits: Tensor, end_logits: Tensor
) -> None:
    """Raise :class:`DataError` naming the argument if shapes, indices or offsets do not fit together."""
    if start_logits.dim() != 2 or start_logits.shape != end_logits.shape:
        raise DataError(
            f"postprocess: start_logits {tuple(start_logits.shape)} and end_logits {tuple(end_logits.shape)} "
            "must both be [N features, L tokens]"
        )
    n, length = start_logits.shape
    if length < 1:
        raise DataError("postprocess: features have no tokens (L = 0)")
    if offsets.shape != (n, length, 2):
        raise DataError(f"postprocess: offsets {tuple(offsets.shape)} must be [N, L, 2] = [{n}, {length}, 2]")
    if example_index.shape != (n,) or example_index.is_floating_point():
        raise DataError(f"postprocess: example_index {tuple(example_index.shape)} must be integer [N] = [{n}]")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise DataError("postprocess: example ids are not unique")
    if n and (example_index.min() < 0 or example_index.max() >= len(examples)):
        raise DataError(f"postprocess: example_index must lie in 0..{len(examples) - 1}")
    covered = set(example_index.tolist())
    lacking = [ex.id for i, ex in enumerate(examples) if i not in covered]
    if lacking:
        raise DataError(f"postprocess: {len(lacking)} example(s) have no feature, e.g. {lacking[:3]}")
    context_len = torch.tensor([len(ex.context) for ex in examples], dtype=torch.long)[example_index]
    beyond = offsets[..., 1].long().amax(dim=1) > context_len
    if beyond.any():
        f = int(beyond.nonzero()[0])
        raise DataError(
            f"postprocess: feature {f} has offsets beyond the context of example "
            f"{examples[int(example_index[f])].id!r} ({int(context_len[f])} characters)"
        )


def squad_predictions(
    examples: Sequence[QAExample],
    example_index: Tensor,
    offsets: Tensor,
    start_logits: Tensor,
    end_logits: Tensor,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    answer_selection: str = "reference",
) -> tuple[dict[str, str], dict[str, float]]:
    """Turn per-feature logits into ``(predictions, null_odds)`` keyed by question id.

    ``example_index[f]`` is the position in ``examples`` of feature ``f``'s question; ``offsets[f, t]``
    the character span of token ``t`` in that question's context, ``(-1, -1)`` outside it. A
    prediction is the context text of the best span, or "" when the null score beats it by more than
    ``null_score_diff_threshold``; ``null_odds`` is ``null_score - best_span_score`` (``inf`` when no
    valid span exists), usable as the official script's no-answer probability. ``answer_selection``
    says where the n-best starts and ends are taken (module docstring).
    """
    _check_settings(n_best_size, max_answer_length, answer_selection)
    _check_tensors(examples, example_index, offsets, start_logits, end_logits)
    start64, end64 = start_logits.detach().double(), end_logits.detach().double()
    offsets = offsets.long()
    spans = best_feature_spans(
        start64, end64, context_mask(offsets), n_best_size, max_answer_length, answer_selection
    )
    null = (start64[:, 0] + end64[:, 0]).tolist()
    span_score = spans.score.tolist()

    min_null: dict[int, float] = {}
    best_feature: dict[int, int] = {}
    for f, i in enumerate(example_index.tolist()):
        min_null[i] = min(min_null.get(i, null[f]), null[f])
        if i not in best_feature or span_score[f] > span_score[best_feature[i]]:
            best_feature[i] = f

    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    for i, example in enumerate(examples):
        f = best_feature[i]
        diff = min_null[i] - span_score[f]
        null_odds[example.id] = diff
        if diff > null_score_diff_threshold or span_score[f] == float("-inf"):
            predictions[example.id] = ""
        else:
            first, last = int(offsets[f, spans.start[f], 0]), int(offsets[f, spans.end[f], 1])
            predictions[example.id] = example.context[first:last]
    return predictions, null_odds
