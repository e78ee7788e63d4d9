"""SQuAD 2.0 (Rajpurkar et al., 2018): MRC with unanswerable questions; the paper's main evaluation set
(not an MTL dataset, so it measures generalisation).

Hub: ``rajpurkar/squad_v2``, config ``squad_v2`` (parquet), pinned at the commit "Convert dataset to
Parquet (#6)" (docs/datasets.md). Features, from that commit's README ``dataset_info``: ``id``, ``title``,
``context``, ``question`` (strings), ``answers`` {``text``: [string], ``answer_start``: [int32]} (empty
lists = unanswerable). Splits: ``train`` (130,319), ``validation`` (11,873). Conversion is
:func:`road_repro.data.squad_v2.from_hub_records`; local files are the official JSON, read by
:func:`road_repro.data.squad_v2.load_squad_v2_json`. A local file with no unanswerable question is
accepted (the examples are valid) but said once per file: it looks like SQuAD 1.1 in SQuAD 2.0's place.
"""

from __future__ import annotations

from pathlib import Path

from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import QAExample
from road_repro.data.squad_v2 import from_hub_records, load_squad_v2_json
from road_repro.log import logger

_said: set[Path] = set()


def from_file(path: Path) -> list[QAExample]:
    """Read an official SQuAD 2.0 JSON file; say once per file when it has no unanswerable question."""
    examples = load_squad_v2_json(path)
    if examples and not any(ex.is_impossible for ex in examples) and path.resolve() not in _said:
        _said.add(path.resolve())
        logger.warning("%s: no unanswerable questions: this looks like SQuAD 1.1, not SQuAD 2.0 "
                       "(read anyway; no-answer scores will be meaningless)", path)
    return examples

SPEC = register_dataset(
    DatasetSpec(
        name="squad_v2",
        task="mrc",
        hub=("rajpurkar/squad_v2", "squad_v2"),
        hub_revision="80596c4f2b9ffcd716039dfc7e564c4e491802ec",  # "Convert dataset to Parquet (#6)", docs/datasets.md
        hub_rows_are_examples=True,
        hub_splits={"train": "train", "dev": "validation"},
        local={
            "train": ("squad2/train-v2.0.json", "SQuAD2/train-v2.0.json", "train-v2.0.json", "squad2/train-v2.0.first10articles.json"),
            "dev": ("squad2/dev-v2.0.json", "SQuAD2/dev-v2.0.json", "dev-v2.0.json"),
        },
        from_hub=from_hub_records,
        from_file=from_file,
        licence="CC BY-SA 4.0",
        size="130,319 train / 11,873 dev questions (dev: 5,928 answerable, 5,945 unanswerable)",
        examples={"train": 130_319, "dev": 11_873},  # paper scale, for planning (DatasetSpec)
        context_tokens=137,  # MRQA 2019 Table 1 (SQuAD); 143 measured on MRQA's SQuAD dev
        notes=(
            "Evaluation set of the paper (public dev). Shared data has the official dev file and, as the last "
            "train fallback, the first 10 articles of train (4,719 questions) -- enough for pipeline runs only."
        ),
    )
)
