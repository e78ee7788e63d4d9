"""QA-ZRE (Levy et al., 2017): zero-shot relation extraction as reading comprehension; an MTL dataset of
paper Table 1 (1000K). Each example asks a relation question about a subject over one sentence; negative
examples (no answer) are unanswerable questions.

Hub: ``community-datasets/qa_zre`` (parquet). Assumed features (the former loading script,
``huggingface/datasets`` ``datasets/qa_zre/qa_zre.py``, and the hub card): ``relation``, ``question``
(a template with ``XXX`` for the subject), ``subject``, ``context`` (strings), ``answers`` [string]
(empty = negative). Splits ``train`` / ``validation`` / ``test`` concatenate all ten folds of
``relation_splits`` (8,400,000 / 6,000 / 120,000 rows, the same sentences recurring across folds): the
paper profile caps train at Table 1's 1,000K (``SplitConfig.cap``, a seeded sample).

Local formats, by file name: the original ``relation_splits/{train,dev,test}.<fold>`` TSV
(``relation \\t question \\t subject \\t sentence [\\t answer ...]``; fold 0 is the candidate), and the
MRQA ``RelationExtraction.jsonl.gz`` (the MRQA out-of-domain dev set built from QA-ZRE, answerable only),
read by :func:`road_repro.data.mrqa.load_mrqa`. Answer strings are located at their first occurrence
in the sentence; the question is the template with ``XXX`` replaced by the subject.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from road_repro.data.mrqa import load_mrqa
from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import QAExample
from road_repro.data.sets.formats import answer_at, hub_row, open_text, str_list, typed, unique_answers
from road_repro.data.unusable import skip_unusable
from road_repro.errors import DataError

PLACEHOLDER = "XXX"


def relation_example(ex_id: str, template: str, subject: str, context: str, answers: Sequence[str], where: str) -> QAExample:
    """One QA-ZRE example: the template filled with the subject, answers found in the sentence."""
    if not subject.strip():
        raise DataError(f"{where}: empty subject")
    found = unique_answers(answer_at(context, a, where) for a in answers if a.strip())
    question = template.replace(PLACEHOLDER, subject)
    return QAExample(id=ex_id, context=context, question=question, answers=found).validate(where)


def _read_relation_splits(path: Path) -> list[QAExample]:
    """Read one ``relation_splits`` TSV file (no header; quotes are text)."""
    out = []
    with open_text(path) as fh:
        for row_no, row in enumerate(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row:
                continue
            where = f"{path}: line {row_no}"
            if len(row) < 4:
                raise DataError(f"{where}: expected relation, question, subject, sentence[, answers...], got {len(row)} fields")
            relation, template, subject, context, *answers = row
            with skip_unusable():
                out.append(relation_example(f"{path.name}-{row_no}", template, subject, context, answers, where))
    return out


def from_file(path: Path) -> list[QAExample]:
    """Read a local QA-ZRE file: MRQA JSON lines, else the original ``relation_splits`` TSV."""
    return load_mrqa(path) if path.name.endswith((".jsonl", ".jsonl.gz")) else _read_relation_splits(path)


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[QAExample]:
    """Convert ``community-datasets/qa_zre`` rows."""
    out = []
    for i, rec in enumerate(records):
        row = hub_row(rec, i)
        row_where = f"{where} row {row}"
        missing = [k for k in ("question", "subject", "context", "answers") if k not in rec]
        if missing:
            raise DataError(f"{row_where}: missing field(s) {missing} (has {sorted(rec)})")
        template, subject, context = (typed(rec[k], str, k, row_where) for k in ("question", "subject", "context"))
        answers = str_list(rec["answers"], "answers", row_where)
        with skip_unusable():
            out.append(relation_example(f"qa_zre-{row}", template, subject, context, answers, row_where))
    return out


SPEC = register_dataset(
    DatasetSpec(
        name="qa_zre",
        task="mrc",
        hub=("community-datasets/qa_zre", None),
        hub_rows_are_examples=True,
        hub_revision="f659301d65a033b69ce7bdfa881baeb770971771",  # "Convert dataset to Parquet (#4)", docs/datasets.md
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        local={
            "train": ("relation_splits/train.0", "qa_zre/relation_splits/train.0"),
            "dev": (
                "relation_splits/dev.0",
                "qa_zre/relation_splits/dev.0",
                "mrqa/dev/RelationExtraction.jsonl.gz",
                "MRQA/dev/RelationExtraction.jsonl.gz",
                "RelationExtraction.jsonl.gz",
            ),
            "test": ("relation_splits/test.0", "qa_zre/relation_splits/test.0"),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="not stated (hub card: unknown); sentences from Wikipedia via WikiReading",
        size="fold 0: about 840K train / 600 dev / 12K test rows; hub: all 10 folds (Table 1: 1000K)",
        examples={"train": 1_000_000},  # paper scale, for planning (DatasetSpec)
        context_tokens=30,  # one sentence; MRQA 2019 RelationExtraction
        notes=(
            "Negative examples (no answer) are unanswerable questions. The hub concatenates the ten folds; local "
            "files read fold 0. MRQA RelationExtraction (dev fallback) is answerable-only. Not in shared data."
        ),
    )
)
