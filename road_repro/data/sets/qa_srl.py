"""QA-SRL (question-answer driven semantic role labelling) as MRC; an MTL dataset of paper Table 1
("QA-SRL (2018)", 172K: the QA-SRL Bank 2.0 of FitzGerald et al., 2018).

Each (sentence, predicate, question) is one MRC example: the context is the sentence (its tokens joined
by single spaces) and the answers are the annotated token spans, converted to character offsets.
QA-SRL has no unanswerable questions; questions annotators judged invalid are skipped.

Local formats, by file name:

* ``*.gold.csv`` -- the QA-SRL Gold Standard (Roit et al., 2020; ``plroit/qasrl-gs``): one row per
  question with ``qasrl_id``, ``verb_idx``, ``question``, ``answer_range`` (``start:end`` token ranges,
  end exclusive, several joined by ``~!~``). The sentence comes from ``../sentences/<same
  stem>.full.csv`` (``qasrl_id``, ``tokens``). Answer text is cut from the tokens (the csv's ``answer``
  column has encoding damage in a few rows).
* ``*.jsonl`` / ``*.jsonl.gz`` -- the QA-SRL Bank 2.0 release (``qasrl-v2/orig/{train,dev,test}.jsonl.gz``):
  ``sentenceId``, ``sentenceTokens``, ``verbEntries`` -> ``questionLabels`` -> ``answerJudgments``
  (``isValid``, ``spans`` [[start, end)] token spans, end exclusive as in the AllenNLP QA-SRL reader). A
  question is kept when a strict majority of its judgments is valid; its answers are the distinct spans
  of the valid judgments.

Hub: ``biu-nlp/qa_srl2018``, config ``v2``; its main branch holds a loading script, so the spec pins a
commit of the hub's parquet conversion (branch ``refs/convert/parquet``, commit "Update parquet files",
folder ``v2/`` with ``train`` / ``validation`` / ``test``; docs/datasets.md), read with
``hub_layout="parquet_export"``. Assumed row features (the loading script; not checked against a
downloaded row): ``sentence`` (tokens joined by spaces), ``sent_id``, ``predicate_idx``, ``predicate``, ``question``
(a list of QA-SRL slots with ``_`` for empty ones, or a string), ``answers`` [string], ``answer_ranges``
[[start, end]]. Whether an end index is inclusive or exclusive is decided per answer by matching the
tokens against its ``answers`` string; a range matching neither raises :class:`DataError`. An empty
sentence is skipped and counted (``empty text``) in every format, hub or local.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import Answer, QAExample
from road_repro.data.sets.formats import hub_row, is_int, iter_delimited, iter_jsonl, str_list, typed, unique_answers
from road_repro.data.unusable import UnusableRow, skip_unusable
from road_repro.errors import DataError

RANGE_SEP = "~!~"


def token_offsets(tokens: Sequence[str]) -> list[int]:
    """Character start of each token in ``" ".join(tokens)``."""
    starts, pos = [], 0
    for tok in tokens:
        starts.append(pos)
        pos += len(tok) + 1
    return starts


def span_answer(tokens: Sequence[str], starts: Sequence[int], begin: int, end: int, where: str) -> Answer:
    """The answer covering tokens ``begin`` .. ``end - 1`` (end exclusive), in character offsets."""
    if not 0 <= begin < end <= len(tokens):
        raise DataError(f"{where}: token range {begin}:{end} is outside a sentence of {len(tokens)} tokens")
    return Answer(text=" ".join(tokens[begin:end]), start=starts[begin])


def sentence_tokens(tokens: Any, where: str) -> list[str]:
    """The tokens of a sentence; an empty or blank sentence is an unusable row (:class:`UnusableRow`:
    skipped and counted under the one rule of :mod:`road_repro.data.unusable`, local file or hub)."""
    str_list(tokens, "sentence tokens", where)
    if not any(tok.strip() for tok in tokens):
        raise UnusableRow(f"{where}: empty sentence", "empty text")
    return tokens


def qa_srl_example(ex_id: str, tokens: Sequence[str], question: str, ranges: Iterable[tuple[int, int]], where: str) -> QAExample:
    """One validated example from a token sentence, a question and end-exclusive token ranges."""
    tokens = sentence_tokens(tokens, where)
    starts = token_offsets(tokens)
    answers = unique_answers(span_answer(tokens, starts, b, e, where) for b, e in ranges)
    if not answers:
        raise DataError(f"{where}: question {question!r} has no answer span")
    return QAExample(id=ex_id, context=" ".join(tokens), question=question, answers=answers).validate(where)


def parse_ranges(text: str, where: str) -> list[tuple[int, int]]:
    """Parse ``"4:6~!~8:9"`` into ``[(4, 6), (8, 9)]``."""
    out = []
    for part in text.split(RANGE_SEP):
        begin, sep, end = part.strip().partition(":")
        if not sep or not begin.isdecimal() or not end.isdecimal():
            raise DataError(f"{where}: answer_range {text!r} is not start:end[~!~start:end...]")
        out.append((int(begin), int(end)))
    return out


def _read_gold_csv(path: Path) -> list[QAExample]:
    """Read a QA-SRL GS gold csv with its sentences csv."""
    sentences_path = path.parent.parent / "sentences" / path.name.replace(".gold.csv", ".full.csv")
    if not sentences_path.is_file():
        raise DataError(f"{path}: its sentences file {sentences_path} (qasrl_id, tokens) was not found")
    sentences = {r["qasrl_id"]: r["tokens"].split(" ") for _, r in iter_delimited(sentences_path, ("qasrl_id", "tokens"), ",", True)}
    out = []
    for row_no, row in iter_delimited(path, ("qasrl_id", "verb_idx", "question", "answer_range"), ",", True):
        where = f"{path}: row {row_no}"
        tokens = sentences.get(row["qasrl_id"])
        if tokens is None:
            raise DataError(f"{where}: sentence {row['qasrl_id']!r} is not in {sentences_path}")
        ex_id = f"{row['qasrl_id']}#{row['verb_idx']}#{row_no}"
        with skip_unusable():
            out.append(qa_srl_example(ex_id, tokens, row["question"], parse_ranges(row["answer_range"], where), where))
    return out


def _valid_spans(label: dict[str, Any], where: str) -> list[tuple[int, int]] | None:
    """Distinct spans of a QA-SRL Bank question label, or ``None`` if most judgments call it invalid."""
    judgments = typed(typed(label, dict, "question label", where).get("answerJudgments", []), list, "answerJudgments", where)
    valid = [j for j in judgments if typed(j, dict, "answer judgment", where).get("isValid")]
    if 2 * len(valid) <= len(judgments):
        return None
    spans = []
    for j in valid:
        for span in j.get("spans") or []:
            if not (isinstance(span, list) and len(span) == 2 and all(is_int(x) for x in span)):
                raise DataError(f"{where}: span {span!r:.80} is not [start, end]")
            spans.append((span[0], span[1]))
    return list(dict.fromkeys(spans))


def _read_bank_jsonl(path: Path) -> list[QAExample]:
    """Read a QA-SRL Bank 2.0 JSON-lines file (one sentence per line)."""
    out = []
    for line_no, rec in iter_jsonl(path):
        where = f"{path}: line {line_no}"
        tokens, sid, verbs = rec.get("sentenceTokens"), rec.get("sentenceId"), rec.get("verbEntries")
        if not isinstance(tokens, list) or not isinstance(verbs, dict):
            raise DataError(f"{where}: expected 'sentenceTokens' (list) and 'verbEntries' (object)")
        for v_idx, entry in verbs.items():
            labels = typed(typed(entry, dict, f"verb entry {v_idx}", where).get("questionLabels", {}), dict,
                           f"verb {v_idx} questionLabels", where)
            for question, label in labels.items():
                q_where = f"{where} verb {v_idx} question {question!r}"
                spans = _valid_spans(label, q_where)
                if spans:
                    with skip_unusable():
                        out.append(qa_srl_example(f"{sid}#{v_idx}#{question}", tokens, question, spans, q_where))
    return out


def from_file(path: Path) -> list[QAExample]:
    """Read a local QA-SRL file: the GS gold csv (with its sentences csv) or QA-SRL Bank 2.0 JSON lines."""
    if path.name.endswith(".gold.csv"):
        return _read_gold_csv(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return _read_bank_jsonl(path)
    raise DataError(f"{path}: unknown QA-SRL format (expected *.gold.csv or QA-SRL Bank *.jsonl[.gz])")


def question_text(question: Any, where: str) -> str:
    """A hub ``question``: a string as is, or QA-SRL slots joined without the empty (``_``) ones."""
    if isinstance(question, str):
        return question
    if isinstance(question, list) and all(isinstance(s, str) for s in question):
        return " ".join(s for s in question if s and s != "_").replace(" ?", "?")
    raise DataError(f"{where}: question {question!r} is neither a string nor a list of slots")


def _hub_range(tokens: Sequence[str], rng: Sequence[int], answer: str | None, where: str) -> tuple[int, int]:
    """An end-exclusive range from a hub range, deciding the end convention by the answer string."""
    if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and all(is_int(x) for x in rng)):
        raise DataError(f"{where}: answer range {rng!r:.80} is not [start, end]")
    begin, end = rng
    if answer is None or " ".join(tokens[begin:end]) == answer:
        return begin, end
    if " ".join(tokens[begin : end + 1]) == answer:
        return begin, end + 1
    raise DataError(f"{where}: answer {answer!r} matches neither tokens {begin}:{end} nor {begin}:{end + 1}")


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[QAExample]:
    """Convert ``biu-nlp/qa_srl2018`` rows (one per predicate and question); rows without answers are skipped."""
    out = []
    for i, rec in enumerate(records):
        row = hub_row(rec, i)
        row_where = f"{where} row {row}"
        if not isinstance(rec.get("sentence"), str) or not isinstance(rec.get("answer_ranges"), list):
            raise DataError(f"{row_where}: expected a 'sentence' string and an 'answer_ranges' list (has {sorted(rec)})")
        ranges, answers = rec["answer_ranges"], rec.get("answers")
        if answers is not None and len(str_list(answers, "answers", row_where)) != len(ranges):
            raise DataError(f"{row_where}: {len(ranges)} answer ranges but {len(answers)} answers")
        if not ranges:
            continue
        ex_id = f"{rec.get('sent_id', 'qa_srl')}#{rec.get('predicate_idx', '')}#{row}"
        with skip_unusable():
            tokens = sentence_tokens(rec["sentence"].split(" "), row_where)
            spans = [_hub_range(tokens, r, answers[k] if answers else None, row_where) for k, r in enumerate(ranges)]
            out.append(qa_srl_example(ex_id, tokens, question_text(rec.get("question"), row_where), spans, row_where))
    return out


SPEC = register_dataset(
    DatasetSpec(
        name="qa_srl",
        task="mrc",
        hub=("biu-nlp/qa_srl2018", "v2"),
        hub_revision="23408b463cf52b0248f1482fd912d9f01ef5cc88",  # on refs/convert/parquet: docs/datasets.md
        hub_layout="parquet_export",
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        local={
            "train": ("qasrl-v2/orig/train.jsonl.gz", "qa_srl/qasrl-v2/orig/train.jsonl.gz"),
            "dev": ("qasrl-v2/orig/dev.jsonl.gz", "qa_srl/qasrl-v2/orig/dev.jsonl.gz", "qa_srl/qasrl-gs/gold/*.dev.gold.csv"),
            "test": ("qasrl-v2/orig/test.jsonl.gz", "qa_srl/qasrl-v2/orig/test.jsonl.gz", "qa_srl/qasrl-gs/gold/*.test.gold.csv"),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="QA-SRL Bank 2.0: see qasrl.org (not stated on the hub); QA-SRL GS repository: MIT",
        size="Bank 2.0: about 250K QA pairs over 64K sentences; GS: 7,188 dev / 7,102 test QA rows (Table 1: 172K)",
        examples={"train": 172_000},  # paper scale, for planning (DatasetSpec)
        context_tokens=25,  # one sentence; an assumption, not measured
        notes=(
            "Context = one sentence; QA-SRL has no unanswerable questions. Shared data holds the 2020 Gold Standard "
            "(dev/test, Wikinews + Wikipedia), read as the dev/test fallback (both domain files, sorted); "
            "the 2015 wiki1.*.qa format (no spans) is not read."
        ),
    )
)
