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

import bisect
from itertools import chain
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from road_repro.data.schema import ClassificationExample, QAExample
from road_repro.errors import ConfigError, DataError

#: Bump when the feature layout or labelling changes: it is part of every features fingerprint
#: (:func:`road_repro.data.feature_store.features_fingerprint`), so runs and stored features go stale.
FEATURES_VERSION = 2

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


def _context_span(sequence_ids: list[int | None]) -> tuple[int, int]:
    """First and last token positions of the context (sequence 1) in a window."""
    first = sequence_ids.index(1)
    return first, len(sequence_ids) - 1 - sequence_ids[::-1].index(1)


def _window_labels(ex: QAExample, offsets: list[tuple[int, int]], first: int, last: int) -> tuple[int, int]:
    """(start, end) token labels of the first gold answer in one window; (0, 0) if absent or cut off.

    The start is the last context token starting at or before the answer's first character, the end the first
    context token ending at or after its last one (context offsets never decrease, so both are bisections).
    """
    if ex.is_impossible:
        return CLS_INDEX, CLS_INDEX
    start_char = ex.answers[0].start
    end_char = start_char + len(ex.answers[0].text)
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return CLS_INDEX, CLS_INDEX
    context = offsets[first : last + 1]
    start = first + bisect.bisect_right([o[0] for o in context], start_char) - 1
    end = first + bisect.bisect_left([o[1] for o in context], end_char)
    return start, end


def _encode_windows(questions: list[str], contexts: list[str], tokenizer: PreTrainedTokenizerBase,
                    max_seq_length: int, doc_stride: int) -> list[list[Any]]:
    """Every window of every (question, context) pair as ``tokenizers.Encoding``, one list per example.

    The same encodings as ``tokenizer(questions, contexts, truncation="only_second", stride=doc_stride,
    return_overflowing_tokens=True)`` without padding, taken from the Rust tokenizer directly: transformers'
    wrapper turns every window into Python lists first, which costs more than tokenizing. The tokenizer's
    truncation and padding state is restored afterwards.
    """
    backend = tokenizer.backend_tokenizer
    saved_truncation, saved_padding = backend.truncation, backend.padding
    backend.enable_truncation(max_seq_length, stride=doc_stride, strategy="only_second", direction="right")
    backend.no_padding()
    try:
        encodings = backend.encode_batch(list(zip(questions, contexts)))
    finally:
        if saved_truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**saved_truncation)
        if saved_padding is not None:
            backend.enable_padding(**saved_padding)
    return [[e, *e.overflowing] for e in encodings]


def _cut_question(question: str, window: Any, max_query_length: int) -> str | None:
    """``question`` cut after its ``max_query_length``-th token, read off a window's question tokens (a question
    is tokenized alike alone and in a pair); None when it is not longer."""
    positions = [p for p, s in enumerate(window.sequence_ids) if s == 0]
    if len(positions) <= max_query_length:
        return None
    return question[: window.offsets[positions[max_query_length - 1]][1]]


def _question_windows(questions: list[str], contexts: list[str], tokenizer: PreTrainedTokenizerBase,
                      max_seq_length: int, doc_stride: int, max_query_length: int) -> list[list[Any]]:
    """Windows with every question cut to ``max_query_length`` tokens (as :func:`truncate_questions` cuts them)
    in one tokenizer pass, then again only for the examples whose question was too long.

    A question longer than the room the stride leaves would make the Rust tokenizer panic, so questions that
    *could* be that long (more UTF-8 bytes than that room: no tokenizer makes more tokens than bytes) are cut
    before the pass.
    """
    stripped = [q.lstrip() for q in questions]
    room = max_seq_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride - 1
    risky = [i for i, q in enumerate(stripped) if len(q.encode()) > room]
    if risky:
        for i, q in zip(risky, truncate_questions([stripped[i] for i in risky], tokenizer, max_query_length)):
            stripped[i] = q
    windows = _encode_windows(stripped, contexts, tokenizer, max_seq_length, doc_stride)
    long = {i: q for i, w in enumerate(windows) if (q := _cut_question(stripped[i], w[0], max_query_length)) is not None}
    if long:
        again = _encode_windows(list(long.values()), [contexts[i] for i in long], tokenizer, max_seq_length, doc_stride)
        for i, w in zip(long, again):
            windows[i] = w
    return windows


def qa_windows(
    examples: list[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    offsets: bool = True,
) -> dict[str, np.ndarray]:
    """Tokenize QA examples into unpadded windows: the one labelling rule behind :func:`qa_features` and the
    feature store.

    Returns flat int64 arrays over all ``T`` tokens of all ``N`` windows -- ``input_ids`` and (when the
    tokenizer makes them) ``token_type_ids`` of shape [T], ``offsets`` [T, 2] (``-1`` outside the context; only
    with ``offsets=True``) -- and per window ``lengths``, ``start_positions``, ``end_positions``,
    ``example_index`` of shape [N].
    """
    _check_qa_settings(tokenizer, max_seq_length, doc_stride, max_query_length)
    if not examples:
        raise DataError("qa_features: no examples to tokenize")
    windows = [(i, w) for i, ws in enumerate(_question_windows(
        [ex.question for ex in examples], [ex.context for ex in examples], tokenizer, max_seq_length, doc_stride,
        max_query_length)) for w in ws]
    n = len(windows)
    lengths = np.fromiter((len(w.ids) for _, w in windows), dtype=np.int64, count=n)
    labels = np.zeros((n, 2), dtype=np.int64)
    spans = np.zeros((n, 2), dtype=np.int64)
    for f, (i, w) in enumerate(windows):
        try:
            first, last = _context_span(w.sequence_ids)
        except ValueError:
            raise ConfigError(f"qa_features: a window of example {examples[i].id!r} holds no context token") from None
        spans[f] = first, last
        labels[f] = _window_labels(examples[i], w.offsets, first, last)
    total = int(lengths.sum())
    out = {
        "input_ids": np.fromiter(chain.from_iterable(w.ids for _, w in windows), dtype=np.int64, count=total),
        "lengths": lengths, "start_positions": labels[:, 0].copy(), "end_positions": labels[:, 1].copy(),
        "example_index": np.fromiter((i for i, _ in windows), dtype=np.int64, count=n),
    }
    if "token_type_ids" in tokenizer.model_input_names:
        out["token_type_ids"] = np.fromiter(chain.from_iterable(w.type_ids for _, w in windows), dtype=np.int64,
                                            count=total)
    if offsets:
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(w.offsets for _, w in windows)), dtype=np.int64,
                           count=2 * total).reshape(total, 2)
        position = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        row = np.repeat(np.arange(n), lengths)
        flat[(position < spans[row, 0]) | (position > spans[row, 1])] = -1
        out["offsets"] = flat
    starts = np.cumsum(lengths) - lengths
    if not bool((out["input_ids"][starts] == tokenizer.cls_token_id).all()):
        raise ConfigError(f"qa_features: tokenizer {tokenizer.name_or_path!r} does not put [CLS] at position 0")
    return out


def pad_windows(flat: np.ndarray, lengths: np.ndarray, width: int, fill: int) -> np.ndarray:
    """Flat per-token values (``[T]`` or ``[T, k]``) of windows with ``lengths`` as ``[N, width(, k)]``, padded."""
    out = np.full((len(lengths), width, *flat.shape[1:]), fill, dtype=flat.dtype)
    out[np.arange(width)[None, :] < lengths[:, None]] = flat
    return out


def qa_features(
    examples: list[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> dict[str, torch.Tensor]:
    """Tokenize QA examples into windows padded to ``max_seq_length``, with span labels, example index and
    character offsets (:func:`qa_windows`, padded; the in-memory form, which the feature store reproduces).

    Returns int64 tensors ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer
    makes them) of shape [N, L]; ``start_positions``, ``end_positions``, ``example_index`` of shape
    [N]; ``offsets`` of shape [N, L, 2] (N windows, L = ``max_seq_length``).
    """
    w = qa_windows(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    lengths, pad = w["lengths"], tokenizer.pad_token_id or 0
    features = {
        "input_ids": pad_windows(w["input_ids"], lengths, max_seq_length, pad),
        "attention_mask": (np.arange(max_seq_length)[None, :] < lengths[:, None]).astype(np.int64),
    }
    if "token_type_ids" in w:
        features["token_type_ids"] = pad_windows(w["token_type_ids"], lengths, max_seq_length, 0)
    features.update(start_positions=w["start_positions"], end_positions=w["end_positions"],
                    example_index=w["example_index"], offsets=pad_windows(w["offsets"], lengths, max_seq_length, -1))
    return {k: torch.from_numpy(v) for k, v in features.items()}


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
