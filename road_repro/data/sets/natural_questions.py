"""Natural Questions (Kwiatkowski et al., 2019), short answers: MRC; an MTL dataset of paper Table 1
(204K, "we use the short answers").

Decision: span-extraction MRC needs a context, so NQ is read in the MRQA 2019
``NaturalQuestionsShort`` format (short answers over the Wikipedia paragraph that holds them, all
answerable). NQ-open (``{"question", "answer": [...]}`` lines, no context) cannot train a span head; it is
read only as answer-string references by :func:`read_nq_open` and is not a registered split.

Hub: ``mrqa-workshop/mrqa``, config ``plain_text`` (parquet), rows with ``subset ==
"NaturalQuestionsShort"`` in ``train`` / ``validation`` (row features: see
:data:`road_repro.data.sets.formats.MRQA_HUB`). Local MRQA files are read by
:func:`road_repro.data.mrqa.load_mrqa`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from road_repro.data.mrqa import load_mrqa
from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import QAExample
from road_repro.data.sets.formats import MRQA_HUB, MRQA_REVISION, OpenQuestion, iter_jsonl, mrqa_hub_examples
from road_repro.errors import DataError

SUBSET = "NaturalQuestionsShort"


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[QAExample]:
    """The NaturalQuestionsShort rows of an MRQA hub split as examples."""
    return mrqa_hub_examples(records, where, SUBSET)


def read_nq_open(path: Path) -> list[OpenQuestion]:
    """Read NQ-open JSON lines (``question`` and an ``answer`` list of strings) as context-free questions."""
    out = []
    for line_no, rec in iter_jsonl(path):
        where = f"{path}: line {line_no}"
        question, answers = rec.get("question"), rec.get("answer")
        if not isinstance(question, str) or not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DataError(f"{where}: expected a string 'question' and a list of strings 'answer' (has {sorted(rec)})")
        out.append(OpenQuestion(id=f"nq_open-{line_no}", question=question, answers=tuple(answers)).validate(where))
    return out


SPEC = register_dataset(
    DatasetSpec(
        name="natural_questions",
        task="mrc",
        hub=MRQA_HUB,
        hub_revision=MRQA_REVISION,
        hub_splits={"train": "train", "dev": "validation"},
        local={
            "train": ("mrqa/train/NaturalQuestionsShort.jsonl.gz", "MRQA/train/NaturalQuestionsShort.jsonl.gz"),
            "dev": (
                "mrqa/dev/NaturalQuestionsShort.jsonl.gz",
                "MRQA/dev/NaturalQuestionsShort.jsonl.gz",
                "NaturalQuestionsShort.jsonl.gz",
            ),
        },
        from_hub=from_hub,
        from_file=load_mrqa,
        licence="CC BY-SA 3.0 (NQ data); MRQA release MIT",
        size="MRQA NaturalQuestionsShort: 104,071 train / 12,836 dev questions (Table 1: 204K)",
        examples={"train": 204_000, "dev": 12_836},  # paper scale, for planning (DatasetSpec)
        context_tokens=153,  # MRQA 2019 Table 1
        notes=(
            "NQ short answers need their Wikipedia context: read from MRQA NaturalQuestionsShort. NQ-open "
            "(shared data: nq_open/NQ-open.dev.jsonl, 3,610 questions) has no context and is only for "
            "answer-string checks via read_nq_open; it is not a split of this dataset."
        ),
    )
)
