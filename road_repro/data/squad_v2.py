"""SQuAD 2.0 (and SQuAD 1.1) loaders: the official JSON layout and Hugging Face hub records.

The official layout is ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}``. ``plausible_answers`` (SQuAD 2.0
training data) are ignored: an unanswerable question has no gold answers. A file without
``is_impossible`` keys (SQuAD 1.1) is read as all-answerable. Every example is validated, so an answer
whose text is not at its offset is reported with the file, article, paragraph and question id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from road_repro.data.registry import ROW_KEY
from road_repro.data.schema import Answer, QAExample
from road_repro.data.unusable import skip_unusable
from road_repro.errors import DataError

#: The hub dataset read when ``load_squad_v2`` is given no file.
HUB_ID = "rajpurkar/squad_v2"


def json_field(obj: Any, key: str, kind: type, where: str) -> Any:
    """``obj[key]`` checked to be of ``kind``; a missing key or wrong type is a DataError naming ``where``."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{where}: field {key!r} should be {kind.__name__}, found {type(value).__name__}")
    return value


def _read_json(path: Path) -> Any:
    """Parse a JSON file, turning a missing file or a syntax error (with line/column) into DataError."""
    if not path.is_file():
        raise DataError(f"{path}: SQuAD file not found")
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _qa_example(qa: Any, context: str, title: str, where: str) -> QAExample:
    """One ``qas`` entry of the official layout as a validated QAExample."""
    qid = json_field(qa, "id", str, where)
    where = f"{where} question {qid!r}"
    question = json_field(qa, "question", str, where)
    raw_answers = json_field(qa, "answers", list, where)
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise DataError(f"{where}: field 'is_impossible' should be bool, found {type(impossible).__name__}")
    if impossible and raw_answers:
        raise DataError(f"{where}: marked is_impossible but lists {len(raw_answers)} answers")
    if not impossible and not raw_answers:
        raise DataError(f"{where}: answerable (is_impossible false or absent) but lists no answers")
    answers = tuple(
        Answer(
            json_field(a, "text", str, f"{where} answer {i}"),
            json_field(a, "answer_start", int, f"{where} answer {i}"),
        )
        for i, a in enumerate(raw_answers)
    )
    return QAExample(id=qid, context=context, question=question, answers=answers, title=title).validate(where)


def check_unique_ids(examples: list[QAExample], where: str) -> list[QAExample]:
    """Raise DataError if two examples share an id (scorers key predictions by id)."""
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"{where}: question id {ex.id!r} occurs more than once")
        seen.add(ex.id)
    return examples


def load_squad_v2_json(path: str | Path) -> list[QAExample]:
    """Read an official SQuAD 2.0 (or 1.1) JSON file into validated examples, in file order."""
    path = Path(path)
    raw = _read_json(path)
    articles = json_field(raw, "data", list, f"{path} (top level, not SQuAD-shaped)")
    examples: list[QAExample] = []
    for a_i, article in enumerate(articles):
        where_a = f"{path}: article {a_i}"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p_i, para in enumerate(json_field(article, "paragraphs", list, where_a)):
            where_p = f"{where_a} paragraph {p_i}"
            context = json_field(para, "context", str, where_p)
            qas = json_field(para, "qas", list, where_p)
            for qa in qas:
                with skip_unusable():
                    examples.append(_qa_example(qa, context, str(title), where_p))
    return check_unique_ids(examples, str(path))


def _hub_example(record: Any, where: str) -> QAExample:
    """One ``rajpurkar/squad_v2``-shaped record (answers as parallel text/answer_start lists)."""
    qid = json_field(record, "id", str, where)
    where = f"{where} question {qid!r}"
    answers = json_field(record, "answers", dict, where)
    texts = json_field(answers, "text", list, f"{where} answers")
    starts = json_field(answers, "answer_start", list, f"{where} answers")
    if len(texts) != len(starts):
        raise DataError(f"{where}: {len(texts)} answer texts but {len(starts)} answer_start values")
    if not all(isinstance(t, str) for t in texts) or not all(isinstance(s, int) for s in starts):
        raise DataError(f"{where}: answer texts must be strings and answer_start values integers")
    return QAExample(
        id=qid,
        context=json_field(record, "context", str, where),
        question=json_field(record, "question", str, where),
        answers=tuple(Answer(t, s) for t, s in zip(texts, starts)),
        title=str(record.get("title", "")),
    ).validate(where)


def from_hub_records(records: Iterable[dict], where: str) -> list[QAExample]:
    """Map hub-shaped SQuAD records to validated examples; empty answer lists mean unanswerable."""
    examples = []
    for i, record in enumerate(records):
        with skip_unusable():
            row = record.get(ROW_KEY, i) if isinstance(record, dict) else i
            examples.append(_hub_example(record, f"{where} row {row}"))
    return check_unique_ids(examples, where)


def load_squad_v2(source: str | Path = HUB_ID, split: str = "validation") -> list[QAExample]:
    """Load SQuAD 2.0 from a local official JSON file, else from the hub dataset ``source`` (one split).

    A path ending in ``.json`` that does not exist is reported as a missing file rather than tried on
    the hub. Offline or unknown hub ids raise DataError naming ``source``.
    """
    path = Path(source)
    if path.is_file() or path.suffix == ".json":
        return load_squad_v2_json(path)
    import datasets

    try:
        records = datasets.load_dataset(str(source), split=split)
    except Exception as exc:  # datasets raises many unrelated types for offline/unknown ids and bad splits
        raise DataError(
            f"{source!r}: neither a SQuAD JSON file nor a reachable hub dataset (split {split!r}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return from_hub_records(records, f"{source}[{split}]")
