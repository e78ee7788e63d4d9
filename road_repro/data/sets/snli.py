"""SNLI 1.0 (Bowman et al., 2015): NLI; an MTL dataset of paper Table 1 (549K).

Hub: ``stanfordnlp/snli``, config ``plain_text`` (parquet). Assumed features, from the dataset card
(checked 2024): ``premise`` (string), ``hypothesis`` (string), ``label``
ClassLabel(names=["entailment", "neutral", "contradiction"]) with -1 for pairs without a gold label
(dropped). Splits: ``train``, ``validation``, ``test``.

Local formats: the SNLI 1.0 ``.jsonl`` / ``.txt`` release (``sentence1`` / ``sentence2`` / ``gold_label``,
gold ``"-"`` dropped), derived ``{premise, hypothesis, label}`` JSON lines, the InferSent/SentEval triple
``s1.<split>`` / ``s2.<split>`` / ``labels.<split>`` (the candidate path names the ``s1`` file), and
``{"<i>": {text_a, text_b, label}}`` JSON.
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
HUB_LABEL_NAMES = ("entailment", "neutral", "contradiction")


def from_file(path: Path) -> list[ClassificationExample]:
    """Read one local SNLI file in any of the formats listed in the module docstring."""
    return read_pair_file(path, "nli", FIELDS)


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[ClassificationExample]:
    """Convert ``stanfordnlp/snli`` rows; label -1 (no gold label) is dropped."""
    return pairs_from_hub(records, where, "nli", HUB_FIELDS, HUB_LABEL_NAMES, "snli")


def _candidates(split: str) -> tuple[str, ...]:
    """Local candidates of one split: the original release first, then derived and SentEval layouts."""
    return (
        f"snli_1.0/snli_1.0_{split}.jsonl",
        f"snli_1.0/snli_1.0_{split}.txt",
        f"snli/{split}.jsonl",
        f"snli/esnli_senteval_format/s1.{split}",
        f"SNLI/s1.{split}",
    )


SPEC = register_dataset(
    DatasetSpec(
        name="snli",
        task="nli",
        hub=("stanfordnlp/snli", "plain_text"),
        hub_revision="cdb5c3d5eed6ead6e5a341c8e56e669bb666725b",  # "Convert dataset to Parquet (#6)", docs/datasets.md
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        hub_label_names=HUB_LABEL_NAMES,
        local={
            "train": _candidates("train"),
            "dev": _candidates("dev") + ("snli/snli_1.0_subset/snli_1.0_dev.jsonl",),
            "test": _candidates("test") + ("snli/snli_1.0_subset/snli_1.0_test.jsonl",),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="CC BY-SA 4.0",
        size="549,367 train / 9,842 dev / 9,824 test gold-labelled pairs (Table 1: 549K)",
        examples={"train": 549_367, "dev": 9_842, "test": 9_824},  # paper scale, for planning (DatasetSpec)
        notes=(
            "Pairs whose gold label is '-' (no annotator majority) are dropped, as usual. Shared data has the "
            "complete dev (derived jsonl, SentEval triple) and test (SentEval triple); the original-format "
            "snli_1.0_subset files are partial and only used when nothing else exists."
        ),
    )
)
