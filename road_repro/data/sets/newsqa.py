"""NewsQA (Trischler et al., 2016) in the MRQA 2019 format: MRC; the paper's out-of-domain robustness
evaluation (a SQuAD 2.0 model applied to the NewsQA dev set).

Hub: ``mrqa-workshop/mrqa``, config ``plain_text`` (parquet), rows with ``subset == "NewsQA"`` in splits
``train`` / ``validation`` (row features: see :data:`road_repro.data.sets.formats.MRQA_HUB`). Local files:
MRQA ``NewsQA.jsonl.gz`` (or ``.jsonl``), read by :func:`road_repro.data.mrqa.load_mrqa`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from road_repro.data.mrqa import load_mrqa
from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import QAExample
from road_repro.data.sets.formats import MRQA_HUB, MRQA_REVISION, mrqa_hub_examples

SUBSET = "NewsQA"


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[QAExample]:
    """The NewsQA rows of an MRQA hub split as examples."""
    return mrqa_hub_examples(records, where, SUBSET)


SPEC = register_dataset(
    DatasetSpec(
        name="newsqa",
        task="mrc",
        hub=MRQA_HUB,
        hub_revision=MRQA_REVISION,
        hub_splits={"train": "train", "dev": "validation"},
        local={
            "train": ("mrqa/train/NewsQA.jsonl.gz", "MRQA/train/NewsQA.jsonl.gz", "mrqa/train/NewsQA.jsonl"),
            "dev": ("mrqa/dev/NewsQA.jsonl.gz", "MRQA/dev/NewsQA.jsonl.gz", "mrqa/dev/NewsQA.jsonl", "NewsQA.jsonl.gz"),
        },
        from_hub=from_hub,
        from_file=load_mrqa,
        licence="NewsQA: Microsoft NewsQA terms (CNN stories, research use); MRQA release: MIT",
        size="MRQA: 74,160 train / 4,212 dev questions",
        examples={"train": 74_160, "dev": 4_212},  # paper scale, for planning (DatasetSpec)
        context_tokens=599,  # MRQA 2019 Table 1
        notes=(
            "MRQA's NewsQA keeps only answerable questions, so it tests span extraction, not no-answer "
            "detection. Shared data has only the 17-question MRQA sample (mrqa/samples/NewsQA_sample.jsonl), "
            "which is not a dev-set candidate; read it with from_file."
        ),
    )
)
