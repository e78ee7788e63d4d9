"""TriviaQA (Joshi et al., 2017): MRC; an MTL dataset of paper Table 1 (114K).

Hub: ``mrqa-workshop/mrqa``, config ``plain_text`` (parquet), rows with ``subset == "TriviaQA-web"`` in
``train`` / ``validation`` (row features: see :data:`road_repro.data.sets.formats.MRQA_HUB`): MRQA's
distantly supervised version, with answer spans already found in the evidence.

Local formats, by file name:

* ``*.jsonl`` / ``*.jsonl.gz`` -- MRQA ``TriviaQA-web``, read by :func:`road_repro.data.mrqa.load_mrqa`;
* ``*.json`` -- the official TriviaQA release (``{"Data": [{Question, QuestionId, Answer: {Value,
  Aliases, ...}, EntityPages: [{Filename, ...}], SearchResults: [{Filename, ...}]}]}``). Contexts are
  not in this file: each document is read from ``evidence/wikipedia/<Filename>`` (entity pages) or
  ``evidence/web/<Filename>`` (search results), with ``evidence/`` beside the ``qa/`` folder holding the
  JSON (the release layout). One example per (question, document), id ``QuestionId--Filename``;
  answers are the first occurrence of the answer value and of each alias (distant supervision, as in
  the TriviaQA baselines); documents containing none of them are skipped. A missing evidence file
  raises :class:`DataError`. :func:`read_triviaqa_questions` reads just the questions and answer
  strings, for answer-string checks when no evidence is at hand (e.g. the shared sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from road_repro.data.mrqa import load_mrqa
from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import QAExample
from road_repro.data.sets.formats import (
    MRQA_HUB,
    MRQA_REVISION,
    OpenQuestion,
    answer_at,
    mrqa_hub_examples,
    read_json,
    typed,
    unique_answers,
)
from road_repro.errors import DataError

SUBSET = "TriviaQA-web"
#: Evidence folder per document list of the official JSON.
EVIDENCE_KINDS = (("EntityPages", "wikipedia"), ("SearchResults", "web"))


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[QAExample]:
    """The TriviaQA-web rows of an MRQA hub split as examples."""
    return mrqa_hub_examples(records, where, SUBSET)


def _official_items(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(where, item)`` for each entry of the official JSON's ``Data`` list."""
    data = read_json(path)
    items = data.get("Data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected an official TriviaQA JSON object with a 'Data' list")
    return [(f"{path}: Data[{i}]", typed(item, dict, "entry", f"{path}: Data[{i}]")) for i, item in enumerate(items)]


def _answer_strings(item: dict[str, Any], where: str) -> tuple[str, ...]:
    """The answer value then its aliases, without repeats or blanks."""
    answer = item.get("Answer")
    if not isinstance(answer, dict):
        raise DataError(f"{where}: question {item.get('QuestionId')!r} has no 'Answer' object")
    strings = [answer.get("Value", ""), *typed(answer.get("Aliases", []), list, "Answer.Aliases", where)]
    return tuple(dict.fromkeys(s for s in strings if isinstance(s, str) and s.strip()))


def _question(item: dict[str, Any], where: str) -> tuple[str, str]:
    """``(QuestionId, Question)`` of one item, both required strings."""
    qid, question = item.get("QuestionId"), item.get("Question")
    if not isinstance(qid, str) or not isinstance(question, str):
        raise DataError(f"{where}: missing 'QuestionId' or 'Question' string")
    return qid, question


def read_triviaqa_questions(path: Path) -> list[OpenQuestion]:
    """Questions and accepted answer strings of an official TriviaQA JSON (no contexts needed)."""
    out = []
    for where, item in _official_items(path):
        qid, question = _question(item, where)
        out.append(OpenQuestion(id=qid, question=question, answers=_answer_strings(item, where)).validate(where))
    return out


def _document_example(qid: str, question: str, answers: tuple[str, ...], doc_path: Path, where: str) -> QAExample | None:
    """The example of one evidence document, or ``None`` if no answer string occurs in it."""
    if "\x00" in str(doc_path) or not doc_path.is_file():
        raise DataError(
            f"{where}: evidence file {doc_path} not found; the official TriviaQA JSON keeps its contexts in "
            "separate evidence files (evidence/wikipedia, evidence/web)"
        )
    try:
        context = doc_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: cannot read evidence file {doc_path} as UTF-8 text: {exc}") from exc
    found = [answer_at(context, a, where) for a in answers if a in context]
    if not found:
        return None
    ex = QAExample(id=f"{qid}--{doc_path.name}", context=context, question=question, answers=unique_answers(found))
    return ex.validate(where)


def load_triviaqa_json(path: Path, evidence_dir: Path | None = None) -> list[QAExample]:
    """Examples of an official TriviaQA JSON, contexts read from ``evidence_dir`` (default: the release
    layout, ``<json folder>/../evidence``)."""
    root = evidence_dir if evidence_dir is not None else path.resolve().parent.parent / "evidence"
    out = []
    for where, item in _official_items(path):
        qid, question = _question(item, where)
        answers = _answer_strings(item, where)
        for key, folder in EVIDENCE_KINDS:
            for doc in typed(item.get(key, []), list, key, where):
                filename = doc.get("Filename") if isinstance(doc, dict) else None
                if not isinstance(filename, str):
                    raise DataError(f"{where}: an entry of {key} has no 'Filename'")
                ex = _document_example(qid, question, answers, root / folder / filename, f"{where} {key} {filename}")
                if ex is not None:
                    out.append(ex)
    return out


def from_file(path: Path) -> list[QAExample]:
    """Read a local TriviaQA file: MRQA JSON lines, or the official JSON with its evidence files."""
    return load_triviaqa_json(path) if path.name.endswith(".json") else load_mrqa(path)


SPEC = register_dataset(
    DatasetSpec(
        name="triviaqa",
        task="mrc",
        hub=MRQA_HUB,
        hub_revision=MRQA_REVISION,
        hub_splits={"train": "train", "dev": "validation"},
        local={
            "train": ("mrqa/train/TriviaQA-web.jsonl.gz", "MRQA/train/TriviaQA-web.jsonl.gz", "triviaqa-rc/qa/web-train.json", "qa/web-train.json"),
            "dev": (
                "mrqa/dev/TriviaQA-web.jsonl.gz",
                "MRQA/dev/TriviaQA-web.jsonl.gz",
                "TriviaQA-web.jsonl.gz",
                "triviaqa-rc/qa/web-dev.json",
                "qa/web-dev.json",
            ),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="Apache 2.0 (TriviaQA repository README); MRQA release MIT",
        size="MRQA TriviaQA-web: 61,688 train / 7,785 dev questions (Table 1: 114K)",
        examples={"train": 114_000, "dev": 7_785},  # paper scale, for planning (DatasetSpec)
        context_tokens=784,  # MRQA 2019 Table 1 (TriviaQA-web, contexts cut at 800 tokens)
        notes=(
            "Official JSON: contexts come from the evidence files (not in the JSON); one example per (question, "
            "document) with distantly supervised spans. Shared data has only the one-question official sample "
            "without evidence: read_triviaqa_questions reads it; loading it as examples raises DataError."
        ),
    )
)
