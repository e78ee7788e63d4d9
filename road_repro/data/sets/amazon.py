"""Amazon product reviews with star ratings: sentiment analysis (predict the 1-5 star rating); an MTL
dataset of paper Table 1 ("Amazon (2019)", 1000K).

Hub: ``mteb/AmazonReviewsClassification``, config ``en`` (parquet; the English part of the Multilingual
Amazon Reviews Corpus), pinned at the revision MTEB's own task definition loads (docs/datasets.md).
Features, from the dataset card's ``dataset_info``: ``text`` (string) and ``label`` (int64, 0..4 = stars -
1, a plain integer, not a ClassLabel) -- no ``id`` column, so ids are ``amazon-<row>``. Splits: ``train``
(200,000), ``validation`` (5,000), ``test`` (5,000).

Local formats, by file name:

* ``*.tsv`` -- the Amazon Alexa reviews TSV (``rating``, ``verified_reviews``; UTF-8 with BOM, CRLF,
  quoted multi-line reviews, read with a CSV reader);
* ``*.json`` / ``*.jsonl`` (``.gz`` allowed) -- JSON lines in any of the usual Amazon layouts:
  MARC (``stars``, ``review_body``, ``review_title``), McAuley 2018 (``overall``, ``reviewText``,
  ``summary``) or 2023 (``rating``, ``text``, ``title``). Title and body are joined with a newline.

A rating must be a whole number 1..5 (label = rating - 1, i.e. class name ``str(rating)``). Reviews whose
text is blank carry no input to classify and are skipped and counted under the shared rule
(:mod:`road_repro.data.unusable`): 79 of the 3,150 Alexa rows (2.5 %), hence this spec's ``max_unusable_share``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import ClassificationExample
from road_repro.data.sets.formats import hub_row, iter_delimited, iter_jsonl, label_index, typed
from road_repro.data.unusable import note_unusable, skip_unusable
from road_repro.errors import DataError

#: (rating, body, title) field names of the JSON-lines layouts, tried in order.
JSON_LAYOUTS = (("stars", "review_body", "review_title"), ("overall", "reviewText", "summary"), ("rating", "text", "title"))
TSV_COLUMNS = ("rating", "verified_reviews")


def rating_label(rating: Any, where: str) -> int:
    """Class id of a 1..5 star rating (``5``, ``"5"`` or ``5.0`` -> 4); anything else raises :class:`DataError`."""
    try:
        value = float(rating)
    except (TypeError, ValueError):
        raise DataError(f"{where}: rating {rating!r} is not a number") from None
    if isinstance(rating, bool) or not value.is_integer() or not 1 <= value <= 5:
        raise DataError(f"{where}: rating {rating!r} is not a whole number of stars in 1..5")
    label = label_index("sentiment", str(int(value)), where)
    assert label is not None
    return label


def _review(ex_id: str, text: str, rating: Any, where: str) -> ClassificationExample:
    """A validated single-text sentiment example."""
    return ClassificationExample(id=ex_id, text_a=text, label=rating_label(rating, where), task="sentiment").validate(where)


def _tsv_rows(path: Path) -> Iterator[tuple[str, str, Any]]:
    """``(where, text, rating)`` for each row of an Alexa-style TSV."""
    for row_no, row in iter_delimited(path, TSV_COLUMNS, quoted=True):
        yield f"{path}: row {row_no}", row["verified_reviews"], row["rating"]


def _json_rows(path: Path) -> Iterator[tuple[str, str, Any]]:
    """``(where, text, rating)`` for each line of an Amazon JSON-lines file (layout from the first line)."""
    layout = None
    for line_no, rec in iter_jsonl(path):
        where = f"{path}: line {line_no}"
        layout = layout or next((lay for lay in JSON_LAYOUTS if lay[0] in rec), None)
        if layout is None or layout[0] not in rec:
            raise DataError(f"{where}: no rating field (expected one of {[lay[0] for lay in JSON_LAYOUTS]}; has {sorted(rec)})")
        rating_key, body_key, title_key = layout
        parts = [rec.get(title_key) or "", rec.get(body_key) or ""]
        yield where, "\n".join(p for p in parts if isinstance(p, str) and p.strip()), rec[rating_key]


def from_file(path: Path) -> list[ClassificationExample]:
    """Read one local Amazon reviews file (TSV or JSON lines, see the module docstring)."""
    name = path.name
    if name.endswith(".tsv"):
        rows = _tsv_rows(path)
    elif name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        rows = _json_rows(path)
    else:
        raise DataError(f"{path}: unknown Amazon reviews format (expected .tsv or JSON lines .json/.jsonl[.gz])")
    out = []
    for i, (where, text, rating) in enumerate(rows):
        if not isinstance(text, str) or not text.strip():
            rating_label(rating, where)  # a bad rating is still an error
            note_unusable("empty text", f"{where}: blank review")
            continue
        with skip_unusable():  # one row read (the rows a cap samples, road_repro.data.unusable)
            out.append(_review(f"{path.stem}-{i}", text, rating, where))
    return out


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[ClassificationExample]:
    """Convert ``mteb/AmazonReviewsClassification`` rows: ``label`` 0..4 is stars - 1."""
    out = []
    for i, rec in enumerate(records):
        row = hub_row(rec, i)
        row_where = f"{where} row {row}"
        if "text" not in rec or "label" not in rec:
            raise DataError(f"{row_where}: missing field(s) text/label (has {sorted(rec)})")
        label = rec["label"]
        if isinstance(label, bool) or not isinstance(label, int):
            raise DataError(f"{row_where}: label {label!r} is not an integer 0..4 (stars - 1)")
        text = typed(rec["text"], str, "text", row_where)
        with skip_unusable():
            out.append(_review(str(rec.get("id", f"amazon-{row}")), text, label + 1, row_where))
    return out


SPEC = register_dataset(
    DatasetSpec(
        name="amazon",
        task="sentiment",
        hub=("mteb/AmazonReviewsClassification", "en"),
        hub_revision="6b5d328eaae8ef408dd7d775040245cf86f92e9d",  # as MTEB loads it: docs/datasets.md
        hub_rows_are_examples=True,
        hub_splits={"train": "train", "dev": "validation", "test": "test"},
        local={
            "train": ("amazon_reviews_multi/json/train/dataset_en_train.json", "amazon/train.jsonl", "amazon/train.jsonl.gz"),
            "dev": (
                "amazon_reviews_multi/json/dev/dataset_en_dev.json",
                "amazon/dev.jsonl",
                "amazon/dev.jsonl.gz",
                "amazon_reviews/amazon_alexa.tsv",
                "amazon_alexa.tsv",
            ),
            "test": ("amazon_reviews_multi/json/test/dataset_en_test.json", "amazon/test.jsonl", "amazon/test.jsonl.gz"),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="MARC / hub: Amazon's Multilingual Amazon Reviews Corpus terms (non-commercial research); Alexa TSV: not stated",
        size="hub en: 200,000 train / 5,000 dev / 5,000 test; Alexa TSV: 3,150 rows (Table 1: 1000K)",
        examples={"train": 1_000_000, "dev": 5_000},
        max_unusable_share=0.03,  # the Alexa TSV: 79 of 3,150 reviews are blank (2.5 %)
        notes=(
            "The paper's 1000K reviews (Ni et al., 2019 crawl) have no parquet copy on the hub; the MARC English "
            "part stands in (same task: 5-way star rating). Shared data holds only the Alexa device reviews, used "
            "as the last dev fallback. Blank reviews are skipped."
        ),
    )
)
