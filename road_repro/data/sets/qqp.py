"""Quora Question Pairs, GLUE version: paraphrase identification; an MTL dataset of paper Table 1 (363K)
and an evaluation set.

Hub: ``nyu-mll/glue``, config ``qqp`` (parquet). Assumed features, from the dataset card (checked 2024):
``question1`` (string), ``question2`` (string), ``label`` ClassLabel(names=["not_duplicate", "duplicate"]),
``idx`` (int32). Splits: ``train``, ``validation``, ``test`` (label -1).

Local formats: GLUE TSV (``question1`` / ``question2`` / ``is_duplicate`` by header name; quote characters
are text), ``{"<i>": {text_a, text_b, label}}`` JSON (label ``"0"`` / ``"1"``), and JSON lines with either
field set.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import ClassificationExample
from road_repro.data.sets.formats import pairs_from_hub, read_pair_file

FIELDS = (("question1", "question2", "is_duplicate"), ("text_a", "text_b", "label"), ("question1", "question2", "label"))
HUB_FIELDS = ("question1", "question2", "label")
#: nyu-mll/glue commit "Delete loading script" (parquet only; docs/datasets.md says how it was checked).
GLUE_REVISION = "11762d92f088f525c9548bf8a16ff55e0514a851"
HUB_LABEL_NAMES = ("not_duplicate", "duplicate")


def from_file(path: Path) -> list[ClassificationExample]:
    """Read one local QQP file in any of the formats listed in the module docstring."""
    return read_pair_file(path, "paraphrase", FIELDS)


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[ClassificationExample]:
    """Convert ``nyu-mll/glue`` qqp rows; labels go through the hub's ClassLabel names."""
    return pairs_from_hub(records, where, "paraphrase", HUB_FIELDS, HUB_LABEL_NAMES, "qqp")


SPEC = register_dataset(
    DatasetSpec(
        name="qqp",
        task="paraphrase",
        hub=("nyu-mll/glue", "qqp"),
        hub_revision=GLUE_REVISION,
        hub_splits={"train": "train", "dev": "validation"},
        hub_label_names=HUB_LABEL_NAMES,
        local={
            "train": (
                "QQP/train.tsv",
                "glue_data/QQP/train.tsv",
                "qqp/train.tsv",
                "qqp/glue_pretrain_subset/train.json",
                "qqp/k-shot_16-42_glue_format/train.tsv",
            ),
            "dev": (
                "QQP/dev.tsv",
                "glue_data/QQP/dev.tsv",
                "qqp/dev.tsv",
                "qqp/glue_pretrain_subset/dev.json",
                "qqp/k-shot_16-42_glue_format/dev.tsv",
            ),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="Quora's data release terms (non-commercial research use)",
        size="363,846 train / 40,430 dev (Table 1: 363K)",
        examples={"train": 363_846, "dev": 40_430},  # paper scale, for planning (DatasetSpec)
        notes=(
            "Rows with an empty question (GLUE train has a few) are skipped and counted (road_repro.data.unusable). Shared data has no complete GLUE dev: its "
            "fallbacks are the glue_pretrain_subset portions (8,999 / 1,000 pairs, split of origin unverified, "
            "probably GLUE train), so QQP numbers on shared data are not comparable to the paper's dev accuracy."
        ),
    )
)
