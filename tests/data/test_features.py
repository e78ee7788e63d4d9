"""QA window features and pair features with the real packaged WordPiece tokenizer."""

from __future__ import annotations

import pytest
import torch

from road_repro.data.features import (
    pad_collate,
    pair_features,
    qa_features,
    truncate_questions,
)
from road_repro.data.schema import Answer, ClassificationExample, QAExample
from road_repro.data.squad_v2 import load_squad_v2_json
from road_repro.errors import ConfigError, DataError


def _span_text(features: dict, f: int, ex: QAExample) -> str:
    start, end = int(features["start_positions"][f]), int(features["end_positions"][f])
    return ex.context[int(features["offsets"][f, start, 0]) : int(features["offsets"][f, end, 1])]


def test_real_dev_labels_map_back_to_answers(shared_data, tokenizer):
    examples = load_squad_v2_json(shared_data / "squad2" / "dev-v2.0.json")[:200]
    feats = qa_features(examples, tokenizer)
    n = len(feats["input_ids"])
    assert n >= len(examples) and feats["offsets"].shape == (n, 384, 2)
    assert set(feats["example_index"].tolist()) == set(range(len(examples)))
    labelled = 0
    for f in range(n):
        ex = examples[int(feats["example_index"][f])]
        if ex.is_impossible:
            assert feats["start_positions"][f] == feats["end_positions"][f] == 0
        elif feats["start_positions"][f] > 0:
            assert _span_text(feats, f, ex) == ex.answers[0].text
            labelled += 1
    answerable = sum(not ex.is_impossible for ex in examples)
    assert labelled >= answerable  # every answerable example is labelled in at least one window


def test_doc_stride_windows(tokenizer):
    words = [f"w{i}" for i in range(150)]  # "w12" etc. are several word pieces; the ids keep the words unique
    context = " ".join(words)
    answer_start = context.index("w120 ")
    ex = QAExample("long", context, "Where is it?", (Answer("w120 w121", answer_start),))
    feats = qa_features([ex], tokenizer, max_seq_length=64, doc_stride=16, max_query_length=8)
    n = len(feats["input_ids"])
    assert n > 3 and feats["example_index"].tolist() == [0] * n
    offsets = feats["offsets"]
    for f in range(n):
        in_context = offsets[f, :, 0] >= 0
        covered = (int(offsets[f, in_context, 0].min()), int(offsets[f, in_context, 1].max()))
        fits = covered[0] <= answer_start and answer_start + len("w120 w121") <= covered[1]
        if fits:
            assert _span_text(feats, f, ex) == "w120 w121"
        else:
            assert feats["start_positions"][f] == feats["end_positions"][f] == 0
        if f > 0:  # consecutive windows overlap by exactly doc_stride tokens
            previous = offsets[f - 1][offsets[f - 1, :, 0] >= 0]
            current = offsets[f][in_context]
            assert torch.equal(previous[-16:], current[:16])
    assert int((feats["start_positions"] > 0).sum()) >= 1


def test_offsets_and_masks_outside_context(tokenizer):
    ex = QAExample("u", "Paris is the capital of France.", "What is the capital of Peru?")
    feats = qa_features([ex], tokenizer, max_seq_length=32, doc_stride=8, max_query_length=16)
    assert feats["start_positions"].tolist() == [0] and feats["end_positions"].tolist() == [0]
    tokens = tokenizer.convert_ids_to_tokens(feats["input_ids"][0].tolist())
    offsets = feats["offsets"][0]
    is_context = feats["token_type_ids"][0].bool() & (feats["input_ids"][0] != tokenizer.sep_token_id)
    assert (offsets[~is_context] == -1).all() and (offsets[is_context] >= 0).all()
    context_tokens = [t for t, c in zip(tokens, is_context) if c]
    assert [ex.context[s:e].lower() for s, e in offsets[is_context].tolist()] == context_tokens
    assert feats["attention_mask"][0].sum() == len(tokenizer(ex.question, ex.context)["input_ids"])
    assert feats["input_ids"][0, 0] == tokenizer.cls_token_id


def test_answer_cut_by_window_is_not_labelled(tokenizer):
    # 19 context tokens fit per window ([CLS] what ? [SEP] ... [SEP] = 5 specials/question tokens of 24);
    # the answer is words 18-19, so window 0 holds only its first word and window 1 (from word 15) all of it
    context = " ".join(["alpha"] * 30)
    ex = QAExample("c", context, "What?", (Answer("alpha alpha", 18 * 6),))
    feats = qa_features([ex], tokenizer, max_seq_length=24, doc_stride=4, max_query_length=4)
    assert len(feats["input_ids"]) == 2
    assert feats["offsets"][0, 4 + 18].tolist() == [108, 113] and feats["offsets"][0, 4 + 19].tolist() == [-1, -1]
    assert feats["start_positions"].tolist() == [0, 4 + 3] and feats["end_positions"].tolist() == [0, 4 + 4]
    assert _span_text(feats, 1, ex) == "alpha alpha"


def test_question_truncated_to_max_query_length(tokenizer):
    long_q = "  " + " ".join(["which"] * 20) + "?"
    assert truncate_questions([long_q, "short?"], tokenizer, 5) == ["which which which which which", "short?"]
    ex = QAExample("q", "Some context here.", long_q)
    feats = qa_features([ex], tokenizer, max_seq_length=32, doc_stride=4, max_query_length=5)
    assert feats["token_type_ids"][0].tolist().index(1) == 1 + 5 + 1


def test_settings_and_tokenizer_checks(tokenizer):
    ex = [QAExample("q", "Context.", "Q?")]
    with pytest.raises(ConfigError, match="doc_stride=317 must be smaller than the context room.* = 317"):
        qa_features(ex, tokenizer, max_seq_length=384, doc_stride=317, max_query_length=64)
    longest = [QAExample("q", " ".join(["word"] * 400), " ".join(["which"] * 80))]  # question cut to 64 tokens
    feats = qa_features(longest, tokenizer, max_seq_length=384, doc_stride=316, max_query_length=64)
    assert len(feats["input_ids"]) > 1
    with pytest.raises(DataError, match="no examples"):
        qa_features([], tokenizer)

    class Slow:
        is_fast = False
        name_or_path = "slow-tok"

    with pytest.raises(ConfigError, match="'slow-tok' is not a fast tokenizer"):
        qa_features(ex, Slow())


def test_pair_features_and_collate(tokenizer):
    examples = [
        ClassificationExample("p", "A man sleeps.", 2, "A man is awake and running."),
        ClassificationExample("s", "great movie", 4, task="sentiment"),
    ]
    feats = pair_features(examples, tokenizer, max_seq_length=128)
    assert feats["labels"] == [2, 4]
    assert feats["input_ids"][0] == tokenizer("A man sleeps.", "A man is awake and running.")["input_ids"]
    assert feats["input_ids"][1] == tokenizer("great movie")["input_ids"] == [101, 2307, 3185, 102]
    assert feats["token_type_ids"][1] == [0, 0, 0, 0] and 1 in feats["token_type_ids"][0]
    assert max(len(ids) for ids in pair_features(examples, tokenizer, max_seq_length=6)["input_ids"]) == 6

    rows = [{key: feats[key][i] for key in feats} for i in range(2)]
    batch = pad_collate(rows, pad_token_id=tokenizer.pad_token_id)
    n0 = len(feats["input_ids"][0])
    assert batch["input_ids"].shape == (2, n0) and batch["labels"].tolist() == [2, 4]
    assert batch["input_ids"][1].tolist() == [101, 2307, 3185, 102] + [tokenizer.pad_token_id] * (n0 - 4)
    assert batch["attention_mask"][1].tolist() == [1] * 4 + [0] * (n0 - 4)
    assert batch["attention_mask"][0].sum() == n0 and batch["token_type_ids"][1].sum() == 0
    with pytest.raises(DataError, match="empty batch"):
        pad_collate([], 0)
