"""MRQA 2019 loader: real files (gzip with header, plain without), spans, and bad lines."""

from __future__ import annotations

import gzip
import json

import pytest

from road_repro.data.mrqa import load_mrqa
from road_repro.data.schema import Answer
from road_repro.errors import DataError

CONTEXT = "The Denver Broncos beat the Carolina Panthers."


def _line(qas: list[dict], context: str = CONTEXT) -> str:
    return json.dumps({"id": "", "context": context, "qas": qas})


def _qa(qid: str, spans: list[list[list[int]]], texts: list[str]) -> dict:
    detected = [{"text": t, "char_spans": s} for t, s in zip(texts, spans)]
    return {"qid": qid, "question": "Who won?", "answers": texts, "detected_answers": detected}


def test_real_squad_dev(shared_data):
    examples = load_mrqa(shared_data / "mrqa" / "dev" / "SQuAD.jsonl.gz")
    assert len(examples) == 10507
    assert len({ex.context for ex in examples}) == 2067
    assert not any(ex.is_impossible for ex in examples)
    first = examples[0]
    assert first.id == "b0626b3af0764c80b1e6f22c114982c1"
    assert first.answers == (Answer("Denver Broncos", 177),)


def test_real_newsqa_sample_without_header(shared_data):
    examples = load_mrqa(shared_data / "mrqa" / "samples" / "NewsQA_sample.jsonl")
    assert len(examples) == 17
    assert len({ex.context for ex in examples}) == 3


def test_span_is_authoritative_and_distinct(tmp_path):
    # the second detected answer's text differs in case from its span; the third repeats the first span
    qa = _qa("q1", [[[4, 17]], [[28, 44]], [[4, 17]]], ["Denver Broncos", "carolina panthers", "Denver Broncos"])
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"header": {"dataset": "X"}}) + "\n" + _line([qa]) + "\n")
    (ex,) = load_mrqa(path)
    assert ex.answers == (Answer("Denver Broncos", 4), Answer("Carolina Panthers", 28))
    assert CONTEXT[4 : 17 + 1] == "Denver Broncos"


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(_line([_qa("q1", [[[4, 17]]], ["Denver Broncos"])]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.jsonl:2: malformed JSON"):
        load_mrqa(path)


@pytest.mark.parametrize(
    "qa, message",
    [
        (_qa("q1", [[[4, 99]]], ["x"]), "x.jsonl:1 question 'q1': char span \\[4, 99\\]"),
        (_qa("q1", [[[9, 4]]], ["x"]), "char span \\[9, 4\\]"),
        (_qa("q1", [], []), "question 'q1': no detected answer spans"),
        ({"question": "Who?", "detected_answers": []}, "x.jsonl:1 qas\\[0\\]: missing field 'qid'"),
    ],
)
def test_bad_questions(tmp_path, qa, message):
    path = tmp_path / "x.jsonl"
    path.write_text(_line([qa]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_mrqa(path)


def test_missing_file_and_duplicate_qids(tmp_path):
    with pytest.raises(DataError, match="absent.jsonl: MRQA file not found"):
        load_mrqa(tmp_path / "absent.jsonl")
    path = tmp_path / "dup.jsonl"
    qa = _qa("q1", [[[4, 17]]], ["Denver Broncos"])
    path.write_text(_line([qa]) + "\n" + _line([qa]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="'q1' occurs more than once"):
        load_mrqa(path)
