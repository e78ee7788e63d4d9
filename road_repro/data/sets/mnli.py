"""MultiNLI (Williams et al., 2018): NLI; an MTL dataset of paper Table 1 (392K) and the MNLI-m evaluation set.

Hub: ``nyu-mll/glue``, config ``mnli`` (parquet). Assumed features, from the dataset card's
``dataset_info`` (checked 2024): ``premise`` (string), ``hypothesis`` (string), ``label``
ClassLabel(names=["entailment", "neutral", "contradiction"]), ``idx`` (int32). Splits: ``train``,
``validation_matched``, ``validation_mismatched``, ``test_matched`` / ``test_mismatched`` (label -1).
Hub integers are mapped through those names, and the names are checked against the downloaded features.

Local formats (chosen by file name, see :func:`road_repro.data.sets.formats.read_pair_file`): GLUE TSV
(``sentence1`` / ``sentence2`` / ``gold_label`` by header name), the MultiNLI 1.0 ``.jsonl`` / ``.txt``
release (same field names; gold label ``"-"`` dropped), derived ``{premise, hypothesis, label}`` JSON lines,
and ``{"<i>": {text_a, text_b, label}}`` JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import ClassificationExample
from road_repro.data.sets.formats import pairs_from_hub, read_pair_file

FIELDS = (("sentence1", "sentence2", "gold_label"), ("premise", "hypothesis", "label"), ("text_a", "text_b", "label"))
HUB_FIELDS = ("premise", "hypothesis", "label")
#: nyu-mll/glue commit "Delete loading script" (parquet only; docs/datasets.md says how it was checked).
GLUE_REVISION = "11762d92f088f525c9548bf8a16ff55e0514a851"
HUB_LABEL_NAMES = ("entailment", "neutral", "contradiction")


def from_file(path: Path) -> list[ClassificationExample]:
    """Read one local MNLI file in any of the formats listed in the module docstring."""
    return read_pair_file(path, "nli", FIELDS)


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[ClassificationExample]:
    """Convert ``nyu-mll/glue`` mnli rows; labels go through the hub's ClassLabel names."""
    return pairs_from_hub(records, where, "nli", HUB_FIELDS, HUB_LABEL_NAMES, "mnli")


SPEC = register_dataset(
    DatasetSpec(
        name="mnli",
        task="nli",
        hub=("nyu-mll/glue", "mnli"),
        hub_revision=GLUE_REVISION,
        hub_splits={"train": "train", "dev": "validation_matched", "dev_mismatched": "validation_mismatched"},
        hub_label_names=HUB_LABEL_NAMES,
        local={
            "train": (
                "MNLI/train.tsv",
                "glue_data/MNLI/train.tsv",
                "multinli_1.0/multinli_1.0_train.jsonl",
                "mnli/train.jsonl",
                "mnli/glue_pretrain_subset/train.json",
                "mnli/k-shot_16-42_glue_format/train.tsv",
            ),
            "dev": (
                "MNLI/dev_matched.tsv",
                "glue_data/MNLI/dev_matched.tsv",
                "multinli_1.0/multinli_1.0_dev_matched.jsonl",
                "mnli/dev_matched.jsonl",
                "mnli/k-shot_16-42_glue_format/dev_matched.tsv",
            ),
            "dev_mismatched": (
                "MNLI/dev_mismatched.tsv",
                "glue_data/MNLI/dev_mismatched.tsv",
                "multinli_1.0/multinli_1.0_dev_mismatched.jsonl",
                "mnli/dev_mismatched.jsonl",
            ),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="mixed: OANC-derived text free to use; fiction genre CC BY-SA 3.0 / CC BY 3.0 / public domain (MultiNLI README)",
        size="392,702 train / 9,815 dev matched / 9,832 dev mismatched (Table 1: 392K)",
        examples={"train": 392_702, "dev": 9_815, "dev_mismatched": 9_832},  # paper scale, for planning (DatasetSpec)
        notes=(
            "'dev' is MNLI matched (the paper's MNLI-m). Pairs without a gold label ('-') are dropped. "
            "Shared-data fallbacks: train = the 8,999-pair glue_pretrain_subset (then the 48-row k-shot TSV); "
            "dev = the complete derived dev_matched.jsonl."
        ),
    )
)
