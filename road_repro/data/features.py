"""Tokenization into model features: span QA windows (with labels and offsets) and sentence pairs.

:func:`qa_features` follows Hugging Face ``run_qa.py`` (``prepare_train_features`` and
``prepare_validation_features``) in one pass: the question is cut to ``max_query_length`` tokens, then
(question, context) is tokenized with ``truncation="only_second"``; a context longer than one window
overflows into several windows that overlap by ``doc_stride`` tokens. Each window ("feature") gets

* ``start_positions`` / ``end_positions``: the token span of the example's *first* gold answer, or 0
  (the [CLS] position, meaning "no answer") for unanswerable questions and for windows that do not
  contain the whole answer -- the labels of SQuAD 2.0 training;
* ``example_index``: which example the window came from, and ``offsets``: the character span of every
  context token in its example's context, ``(-1, -1)`` elsewhere -- what the evaluator needs to turn
  token logits back into answer text.

:func:`pair_features` and :func:`pad_collate` serve the classification tasks with dynamic padding.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from road_repro.data.schema import ClassificationExample, QAExample
from road_repro.errors import ConfigError, DataError

#: Bump when the feature layout or labelling changes, so runs keyed by a features fingerprint go stale.
FEATURES_VERSION = 1

#: The position whose start/end label means "no answer in this window".
CLS_INDEX = 0


def _check_qa_settings(
    tokenizer: PreTrainedTokenizerBase, max_seq_length: int, doc_stride: int, max_query_length: int
) -> None:
    """ConfigError for a slow tokenizer, one without [CLS], or window sizes that leave no room to stride."""
    name = tokenizer.name_or_path
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"qa_features: tokenizer {name!r} is not a fast tokenizer (offsets need one)")
    if tokenizer.cls_token_id is None or tokenizer.padding_side != "right":
        raise ConfigError(f"qa_features: tokenizer {name!r} must put [CLS] first and pad on the right")
    if min(max_seq_length, doc_stride, max_query_length) < 1:
        raise ConfigError("qa_features: max_seq_length, doc_stride and max_query_length must be positive")
    room = max_seq_length - max_query_length - tokenizer.num_special_tokens_to_add(pair=True)
    if doc_stride >= room:
        raise ConfigError(
            f"qa_features: doc_stride={doc_stride} must be smaller than the context room of a window "
            f"(max_seq_length {max_seq_length} - max_query_length {max_query_length} - special tokens = {room})"
        )


def truncate_questions(questions: list[str], tokenizer: PreTrainedTokenizerBase, max_query_length: int) -> list[str]:
    """Questions without leading space, each cut after its ``max_query_length``-th token (run_qa.py keeps
    long questions whole and lets them crowd out the context; BERT's original SQuAD code cuts them, as here)."""
    stripped = [q.lstrip() for q in questions]
    enc = tokenizer(stripped, add_special_tokens=False, return_offsets_mapping=True)
    return [
        q if len(offsets) <= max_query_length else q[: offsets[max_query_length - 1][1]]
        for q, offsets in zip(stripped, enc["offset_mapping"])
    ]


def _window_labels(ex: QAExample, context_offsets: np.ndarray, in_context: np.ndarray) -> tuple[int, int]:
    """(start, end) token labels of the first gold answer in one window; (0, 0) if absent or cut off."""
    if ex.is_impossible:
        return CLS_INDEX, CLS_INDEX
    start_char = ex.answers[0].start
    end_char = start_char + len(ex.answers[0].text)
    positions = np.flatnonzero(in_context)
    starts, ends = context_offsets[positions, 0], context_offsets[positions, 1]
    if not (starts[0] <= start_char and ends[-1] >= end_char):
        return CLS_INDEX, CLS_INDEX
    start_token = positions[np.flatnonzero(starts <= start_char)[-1]]
    end_token = positions[np.flatnonzero(ends >= end_char)[0]]
    return int(start_token), int(end_token)


def qa_features(
    examples: list[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> dict[str, torch.Tensor]:
    """Tokenize QA examples into padded windows with span labels, example index and char offsets.

    Returns int64 tensors ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer
    makes them) of shape [N, L]; ``start_positions``, ``end_positions``, ``example_index`` of shape
    [N]; ``offsets`` of shape [N, L, 2] (N windows, L = ``max_seq_length``).
    """
    _check_qa_settings(tokenizer, max_seq_length, doc_stride, max_query_length)
    if not examples:
        raise DataError("qa_features: no examples to tokenize")
    enc = tokenizer(
        truncate_questions([ex.question for ex in examples], tokenizer, max_query_length),
        [ex.context for ex in examples],
        truncation="only_second",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
        return_tensors="np",
    )
    example_index = enc["overflow_to_sample_mapping"].astype(np.int64)
    offsets = enc["offset_mapping"].astype(np.int64)
    labels = np.zeros((len(example_index), 2), dtype=np.int64)
    for f, ex_i in enumerate(example_index):
        in_context = np.array([s == 1 for s in enc.sequence_ids(f)])
        labels[f] = _window_labels(examples[ex_i], offsets[f], in_context)
        offsets[f, ~in_context] = -1
    keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in enc]
    features = {key: torch.from_numpy(enc[key].astype(np.int64)) for key in keys}
    if not bool((features["input_ids"][:, CLS_INDEX] == tokenizer.cls_token_id).all()):
        raise ConfigError(f"qa_features: tokenizer {tokenizer.name_or_path!r} does not put [CLS] at position 0")
    features.update(
        start_positions=torch.from_numpy(labels[:, 0].copy()),
        end_positions=torch.from_numpy(labels[:, 1].copy()),
        example_index=torch.from_numpy(example_index),
        offsets=torch.from_numpy(offsets),
    )
    return features


def features_fingerprint(features: dict, examples: list[QAExample] | list[ClassificationExample]) -> str:
    """sha256 over what training and scoring read: every feature (token ids, type ids, labels or span
    positions, example index, offsets) and every example (id, texts, answers or label), plus
    :data:`FEATURES_VERSION`. The tokenizer's *name* is not part of it, so two checkpoints that share a
    vocabulary (ELECTRA-large and ELECTRA-base, or two copies of one tokenizer) give the same fingerprint
    and can share per-feature soft targets, while a different vocabulary or setting gives another one."""
    digest = hashlib.sha256(json.dumps({"version": FEATURES_VERSION}).encode())
    for key in sorted(features):
        value = features[key]
        if isinstance(value, torch.Tensor):
            array = value.contiguous().numpy()
            digest.update(json.dumps([key, str(array.dtype), list(array.shape)]).encode())
            digest.update(array.tobytes())
        else:
            digest.update(json.dumps([key, value]).encode())
    for ex in examples:
        if isinstance(ex, QAExample):
            row = [ex.id, ex.question, ex.context, [[a.text, a.start] for a in ex.answers]]
        else:
            row = [ex.id, ex.text_a, ex.text_b, ex.label]
        digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def pair_features(
    examples: list[ClassificationExample], tokenizer: PreTrainedTokenizerBase, max_seq_length: int = 128
) -> dict[str, list]:
    """Unpadded ``input_ids`` (and ``token_type_ids`` when the tokenizer makes them) per example, plus
    ``labels``; single sentences (empty ``text_b``) and pairs may be mixed (each kind is encoded in one
    batch call). Pairs are truncated longest-first to ``max_seq_length``. Pad per batch with
    :func:`pad_collate`."""
    if not examples:
        raise DataError("pair_features: no examples to tokenize")
    if max_seq_length < tokenizer.num_special_tokens_to_add(pair=True) + 2:
        raise ConfigError(f"pair_features: max_seq_length={max_seq_length} leaves no room for text")
    encoded: list[dict[str, list[int]]] = [{} for _ in examples]
    for is_pair in (False, True):
        group = [i for i, ex in enumerate(examples) if bool(ex.text_b) == is_pair]
        if not group:
            continue
        text_b = [examples[i].text_b for i in group] if is_pair else None
        enc = tokenizer([examples[i].text_a for i in group], text_b, truncation=True, max_length=max_seq_length)
        keys = [key for key in ("input_ids", "token_type_ids") if key in enc]
        for j, i in enumerate(group):
            encoded[i] = {key: enc[key][j] for key in keys}
    out: dict[str, list] = {key: [row[key] for row in encoded] for key in encoded[0]}
    out["labels"] = [ex.label for ex in examples]
    return out


def pad_collate(rows: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of rows to its longest ``input_ids``: ``input_ids`` with ``pad_token_id``,
    ``token_type_ids`` with 0, plus an ``attention_mask``; every other field (e.g. ``labels``, teacher
    logits) is stacked as given."""
    if not rows:
        raise DataError("pad_collate: empty batch")
    sizes = [len(row["input_ids"]) for row in rows]
    length = max(sizes)
    batch = {"attention_mask": torch.tensor([[1] * n + [0] * (length - n) for n in sizes])}
    for key in rows[0]:
        if key in ("input_ids", "token_type_ids"):
            fill = pad_token_id if key == "input_ids" else 0
            batch[key] = torch.tensor([list(r[key]) + [fill] * (length - len(r[key])) for r in rows], dtype=torch.long)
        else:
            batch[key] = torch.tensor([r[key] for r in rows])
    return batch
