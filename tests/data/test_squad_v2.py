"""SQuAD 2.0 / 1.1 loaders: real files, hub-shaped records, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from road_repro.data import squad_v2
from road_repro.data.schema import Answer, QAExample
from road_repro.data.squad_v2 import from_hub_records, load_squad_v2, load_squad_v2_json
from road_repro.errors import DataError


def _squad(qas: list[dict], context: str = "Paris is the capital of France.") -> dict:
    return {"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}


def _write(tmp_path, obj) -> str:
    path = tmp_path / "squad.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return str(path)


def test_real_dev_counts(shared_data):
    examples = load_squad_v2_json(shared_data / "squad2" / "dev-v2.0.json")
    assert len(examples) == 11873
    assert sum(ex.is_impossible for ex in examples) == 5945
    assert len({ex.title for ex in examples}) == 35
    first = examples[0]
    assert (first.id, first.title) == ("56ddde6b9a695914005b9628", "Normans")
    assert first.question == "In what country is Normandy located?"
    assert first.answers[0] == Answer("France", 159) and len(first.answers) == 4


def test_real_train_subset_counts(shared_data):
    examples = load_squad_v2(shared_data / "squad2" / "train-v2.0.first10articles.json")
    assert len(examples) == 4719
    assert sum(ex.is_impossible for ex in examples) == 348
    assert len({ex.title for ex in examples}) == 10


def test_squad_v1_style_file_without_is_impossible(tmp_path):
    qa = {"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]}
    path = _write(tmp_path, _squad([qa]))
    (ex,) = load_squad_v2_json(path)
    assert ex == QAExample("q1", "Paris is the capital of France.", "Capital?", (Answer("Paris", 0),), "T")


def test_unanswerable_ignores_plausible_answers(tmp_path):
    qa = {"id": "q", "question": "Capital of Spain?", "answers": [], "is_impossible": True,
          "plausible_answers": [{"text": "Paris", "answer_start": 0}]}  # fmt: skip
    (ex,) = load_squad_v2_json(_write(tmp_path, _squad([qa])))
    assert ex.is_impossible and ex.answers == ()


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.json.*not found"):
        load_squad_v2_json(tmp_path / "nope.json")
    with pytest.raises(DataError, match="nope.json.*not found"):
        load_squad_v2(tmp_path / "nope.json")


def test_malformed_json_names_line_and_column(tmp_path):
    path = _write(tmp_path, '{"data": [\n  {"title": "x",,}\n]}')
    with pytest.raises(DataError, match=r"squad\.json: malformed JSON at line 2, column 17"):
        load_squad_v2_json(path)


IMPOSSIBLE = {"id": "q", "question": "x?", "answers": [], "is_impossible": True}


@pytest.mark.parametrize(
    "obj, message",
    [
        ([1, 2], "expected a JSON object"),
        ({"version": "v2.0"}, "missing field 'data'"),
        ({"data": [{"title": "T"}]}, "article 0: missing field 'paragraphs'"),
        ({"data": [{"paragraphs": [{"context": 3, "qas": []}]}]}, "paragraph 0: field 'context' should be str"),
        (_squad([{"id": "q", "question": "x?", "answers": [{"text": "Paris", "answer_start": "0"}]}]),
         "question 'q' answer 0: field 'answer_start' should be int"),
        (_squad([dict(IMPOSSIBLE, is_impossible=False)]), "question 'q'.*lists no answers"),
        (_squad([dict(IMPOSSIBLE, answers=[{"text": "Paris", "answer_start": 0}])]), "'q': marked is_impossible"),
        (_squad([IMPOSSIBLE] * 2), "'q' occurs more than once"),
    ],
)  # fmt: skip
def test_wrong_shape(tmp_path, obj, message):
    with pytest.raises(DataError, match=message):
        load_squad_v2_json(_write(tmp_path, obj))


def test_answer_not_at_offset_names_file_and_question(tmp_path):
    qa = {"id": "q7", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 3}], "is_impossible": False}
    expected = r"squad\.json: article 0 paragraph 0 question 'q7'.*'Paris' is not at offset 3"
    with pytest.raises(DataError, match=expected):
        load_squad_v2_json(_write(tmp_path, _squad([qa])))


@pytest.mark.parametrize("question, context, message", [(" ", "Some text.", "is empty"), ("Q?", "  ", "empty context")])
def test_empty_question_or_context(tmp_path, question, context, message):
    qa = {"id": "q", "question": question, "answers": [], "is_impossible": True}
    with pytest.raises(DataError, match=f"question 'q'.*{message}"):
        load_squad_v2_json(_write(tmp_path, _squad([qa], context=context)))


HUB_RECORDS = [
    {"id": "a", "title": "T", "context": "Paris is the capital of France.", "question": "Capital?",
     "answers": {"text": ["Paris", "Paris"], "answer_start": [0, 0]}},
    {"id": "b", "title": "T", "context": "Paris is the capital of France.", "question": "Capital of Peru?",
     "answers": {"text": [], "answer_start": []}},
]  # fmt: skip


def test_from_hub_records():
    a, b = from_hub_records(HUB_RECORDS, "hub")
    assert a.answers == (Answer("Paris", 0), Answer("Paris", 0)) and a.title == "T"
    assert b.is_impossible and b.question == "Capital of Peru?"


def test_from_hub_records_bad_rows():
    bad_offset = dict(HUB_RECORDS[0], answers={"text": ["France"], "answer_start": [0]})
    with pytest.raises(DataError, match=r"hub row 1 question 'a'.*'France' is not at offset 0"):
        from_hub_records([HUB_RECORDS[1], bad_offset], "hub")
    ragged = dict(HUB_RECORDS[0], answers={"text": ["Paris"], "answer_start": []})
    with pytest.raises(DataError, match="hub row 0 question 'a': 1 answer texts but 0 answer_start"):
        from_hub_records([ragged], "hub")


def test_load_squad_v2_hub_branch_uses_datasets(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: calls.append((name, split)) or HUB_RECORDS)
    examples = load_squad_v2()
    assert calls == [(squad_v2.HUB_ID, "validation")]
    assert [ex.id for ex in examples] == ["a", "b"]


def test_load_squad_v2_offline_hub_is_a_data_error(monkeypatch):
    import datasets

    def offline(name, split):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="'someone/absent': neither a SQuAD JSON file nor a reachable hub dataset"):
        load_squad_v2("someone/absent", split="train")
