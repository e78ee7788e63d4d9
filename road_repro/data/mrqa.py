"""MRQA 2019 shared-task loader (``.jsonl`` or ``.jsonl.gz``).

Each line holds one context and its ``qas``; the first line may be a ``{"header": ...}``. Answers come
from ``detected_answers[*].char_spans`` (``[start, end]`` with ``end`` inclusive), and the answer text
is cut from the context at the span: MRQA's own ``text`` field sometimes differs from the span in case
or whitespace, and the span is what the tokens were aligned to. Every distinct span becomes one
:class:`Answer`, in order of first appearance. All MRQA questions are answerable; the example id is
the question's ``qid`` (unique across MRQA, which is what its scorer keys on).
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any, Iterator

from road_repro.data.schema import Answer, QAExample
from road_repro.data.squad_v2 import check_unique_ids, json_field
from road_repro.data.unusable import skip_unusable
from road_repro.errors import DataError


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of the file, gunzipped when it ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            yield from enumerate(fh, start=1)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:  # unreadable, truncated, corrupt gzip
        raise DataError(f"{path}: cannot read MRQA file: {exc}") from exc


def _spans(qa: Any, context: str, where: str) -> tuple[Answer, ...]:
    """Distinct detected-answer spans of one question as Answers with text taken from the context."""
    seen: dict[tuple[int, int], None] = {}
    for d_i, detected in enumerate(json_field(qa, "detected_answers", list, where)):
        for span in json_field(detected, "char_spans", list, f"{where} detected_answers[{d_i}]"):
            ok = isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span)
            if not ok or not 0 <= span[0] <= span[1] < len(context):
                raise DataError(
                    f"{where}: char span {span!r} is not [start, end_inclusive] inside a context "
                    f"of {len(context)} chars"
                )
            seen[(span[0], span[1])] = None
    if not seen:
        raise DataError(f"{where}: no detected answer spans (every MRQA question is answerable)")
    return tuple(Answer(context[s : e + 1], s) for s, e in seen)


def _line_examples(obj: Any, where: str) -> list[QAExample]:
    """The examples of one parsed MRQA context line."""
    context = json_field(obj, "context", str, where)
    examples = []
    for q_i, qa in enumerate(json_field(obj, "qas", list, where)):
        qid = json_field(qa, "qid", str, f"{where} qas[{q_i}]")
        where_q = f"{where} question {qid!r}"
        question = json_field(qa, "question", str, where_q)
        answers = _spans(qa, context, where_q)
        with skip_unusable():
            examples.append(QAExample(id=qid, context=context, question=question, answers=answers).validate(where_q))
    return examples


def load_mrqa(path: str | Path) -> list[QAExample]:
    """Read an MRQA 2019 file into validated, all-answerable examples, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: MRQA file not found")
    examples: list[QAExample] = []
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: malformed JSON at column {exc.colno}: {exc.msg}") from exc
        if lineno == 1 and isinstance(obj, dict) and "header" in obj:
            continue
        examples.extend(_line_examples(obj, where))
    return check_unique_ids(examples, str(path))
