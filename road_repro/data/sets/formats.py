"""Readers shared by several dataset modules: JSON lines, delimited files, NLI/paraphrase pair files,
label mapping, MRQA hub rows and open-domain question lists.

Every reader names the file and the row (or line) in the :class:`DataError` it raises, and validates
each example it builds, so a bad row stops loading before any compute starts.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from road_repro.data.registry import ROW_KEY
from road_repro.data.schema import LABELS, Answer, ClassificationExample, QAExample
from road_repro.data.unusable import UnusableRow, note_no_gold_label, skip_unusable
from road_repro.errors import DataError

#: Extra spellings accepted for label names, per task (lower-cased); ``None`` marks "no gold label".
LABEL_ALIASES: dict[str, dict[str, int | None]] = {
    "nli": {"-": None},
    "paraphrase": {"0": 0, "1": 1},
    "sentiment": {},
}

#: Pair-file field names: (first text, second text, label), tried in order.
PairFields = tuple[str, str, str]

# GLUE, SNLI and MultiNLI files hold long parse strings; the csv module's default field cap is 128 KiB.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def is_int(value: Any) -> bool:
    """True for an integer that is not a bool (JSON ``true`` must not pass as an offset or label)."""
    return isinstance(value, int) and not isinstance(value, bool)


def typed(value: Any, kind: type, what: str, where: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is no ``int``), else a :class:`DataError` naming ``what`` and ``where``."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{where}: {what} should be {kind.__name__}, found {type(value).__name__} {value!r:.80}")
    return value


def str_list(value: Any, what: str, where: str) -> list[str]:
    """``value`` if it is a list of strings, else a :class:`DataError` naming ``what`` and ``where``."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: {what} should be a list of strings, found {value!r:.80}")
    return value


def require_file(path: Path) -> Path:
    """Return ``path`` if it is an existing file, else raise :class:`DataError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return path


#: What reading a non-UTF-8, corrupt or truncated (gzip) file raises: gzip.BadGzipFile is an OSError.
READ_ERRORS = (UnicodeDecodeError, OSError, EOFError, zlib.error)


@contextmanager
def open_text(path: Path) -> Iterator[IO[str]]:
    """Open a UTF-8 text file for reading (``.gz`` transparently, a leading BOM dropped).

    A decoding or decompression error while the file is read inside the ``with`` block becomes a
    :class:`DataError` naming the file.
    """
    path = require_file(path)
    try:
        if path.name.endswith(".gz"):
            fh = gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        else:
            fh = open(path, encoding="utf-8-sig", newline="")
        with fh:
            yield fh
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read as UTF-8 text{' (gzip)' if path.name.endswith('.gz') else ''}: "
                        f"{type(exc).__name__}: {exc}") from exc


def read_json(path: Path) -> Any:
    """Parse one JSON document, raising :class:`DataError` with the file and position when it is malformed."""
    with open_text(path) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSON-lines file (``.gz`` allowed)."""
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {line_no}: invalid JSON: {exc.msg}") from exc
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {line_no}: expected a JSON object, got {type(obj).__name__}")
            yield line_no, obj


def iter_delimited(
    path: Path, required: Sequence[str], delimiter: str = "\t", quoted: bool = False
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(row number, {column: value})`` for the data rows of a delimited file with a header line.

    Columns are found by header name, so column order does not matter. ``quoted=False`` reads GLUE-style
    TSV (quote characters are plain text); ``quoted=True`` honours CSV quoting (quoted multi-line fields).
    A missing required column or a row with the wrong number of fields raises :class:`DataError`.
    """
    quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header with columns {list(required)})")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the header has {header}")
        for row_no, row in enumerate(reader, start=1):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}: row {row_no} (line {reader.line_num}) has {len(row)} fields, the header has {len(header)}"
                )
            yield row_no, dict(zip(header, row))


def label_index(task: str, raw: Any, where: str) -> int | None:
    """Map a raw label onto the task's class id in :data:`LABELS`; ``None`` means "no gold label" (drop).

    Strings are matched by name (case-insensitive, plus :data:`LABEL_ALIASES`). Integers are read in the
    GLUE / Hugging Face order, which is this library's order for NLI and paraphrase; ``-1`` is "no gold
    label". Sentiment integers are ambiguous (stars or stars - 1) and must be converted by the caller.
    """
    names = LABELS[task]
    if isinstance(raw, str):
        key = raw.strip().lower()
        lowered = [n.lower() for n in names]
        if key in lowered:
            return lowered.index(key)
        if key in LABEL_ALIASES[task]:
            return LABEL_ALIASES[task][key]
    elif isinstance(raw, int) and not isinstance(raw, bool) and task != "sentiment":
        if raw == -1:
            return None
        if 0 <= raw < len(names):
            return raw
    raise UnusableRow(f"{where}: label {raw!r} is not one of {task} labels {list(names)}", "label outside the label set")


def hub_label(task: str, value: Any, hub_names: Sequence[str], where: str) -> int | None:
    """Map a hub ClassLabel integer through the hub's own label names onto this library's class id.

    ``-1`` (the hub's "no label") gives ``None``. Mapping by name keeps the result right even where a hub
    orders its classes differently from :data:`LABELS`.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: hub label {value!r} is not an integer")
    if value == -1:
        return None
    if not 0 <= value < len(hub_names):
        raise UnusableRow(f"{where}: hub label {value} is outside 0..{len(hub_names) - 1} ({list(hub_names)})",
                          "label outside the label set")
    return label_index(task, hub_names[value], where)


def pair_example(task: str, ex_id: str, text_a: Any, text_b: Any, label: int, where: str) -> ClassificationExample:
    """Build and validate a sentence-pair example; both texts must be non-empty strings."""
    for name, text in (("first text", text_a), ("second text", text_b)):
        if not isinstance(text, str) or not text.strip():
            raise UnusableRow(f"{where}: example {ex_id!r} has an empty or missing {name} ({text!r})", "empty text")
    return ClassificationExample(id=ex_id, text_a=text_a, text_b=text_b, label=label, task=task).validate(where)


def _pick_fields(available: Iterable[str], fields: Sequence[PairFields], where: str) -> PairFields:
    """Return the first field-name triple whose names are all present, else raise naming what was found."""
    have = set(available)
    for triple in fields:
        if set(triple) <= have:
            return triple
    raise DataError(f"{where}: none of the expected field sets {[list(f) for f in fields]} is present (found {sorted(have)})")


def _pairs_from_rows(
    rows: Iterable[tuple[str, dict[str, Any]]], task: str, fields: Sequence[PairFields], stem: str
) -> list[ClassificationExample]:
    """Turn ``(where, record)`` rows into pair examples, dropping rows without a gold label."""
    out: list[ClassificationExample] = []
    chosen: PairFields | None = None
    for i, (where, rec) in enumerate(rows):
        chosen = chosen or _pick_fields(rec.keys(), fields, where)
        missing = [f for f in chosen if f not in rec]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing}")
        a, b, raw = (rec[f] for f in chosen)
        with skip_unusable():
            label = label_index(task, raw, where)
            if label is None:
                note_no_gold_label(raw)
            else:
                out.append(pair_example(task, f"{stem}-{i}", a, b, label, where))
    return out


def _senteval_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield rows of an InferSent/SentEval triple ``s1.X``, ``s2.X``, ``labels.X`` (one item per line)."""
    split = path.name[len("s1.") :]
    files = [path, path.with_name(f"s2.{split}"), path.with_name(f"labels.{split}")]
    columns = []
    for f in files:
        with open_text(f) as fh:
            columns.append(fh.read().splitlines())
    lengths = [len(c) for c in columns]
    if len(set(lengths)) != 1:
        raise DataError(f"{path}: s1/s2/labels files have different line counts {lengths} ({[str(f) for f in files]})")
    for line_no, (s1, s2, label) in enumerate(zip(*columns), start=1):
        yield f"{path}: line {line_no}", {"s1": s1.strip(), "s2": s2.strip(), "label": label}


def read_pair_file(path: Path, task: str, fields: Sequence[PairFields]) -> list[ClassificationExample]:
    """Read an NLI or paraphrase file, its format decided by its name.

    * ``s1.<split>`` -- the InferSent/SentEval triple (``s2.<split>`` and ``labels.<split>`` beside it);
    * ``*.tsv`` / ``*.txt`` -- GLUE-style TSV (or the SNLI/MultiNLI ``.txt`` release), columns by header name;
    * ``*.jsonl`` / ``*.jsonl.gz`` -- one object per line;
    * ``*.json`` -- ``{"<i>": {"text_a", "text_b", "label"}}`` (or a list of such objects).

    ``fields`` lists the (text, text, label) names to look for; rows whose label means "no gold label"
    (SNLI ``"-"``, hub ``-1``) are dropped, any other unknown label raises :class:`DataError`.
    """
    path = require_file(path)
    name = path.name
    stem = re.sub(r"\.(jsonl\.gz|jsonl|json|tsv|txt)$", "", name)
    if name.startswith("s1."):
        return _pairs_from_rows(_senteval_rows(path), task, [("s1", "s2", "label")], name[len("s1.") :])
    if name.endswith((".tsv", ".txt")):
        with open_text(path) as fh:
            header = fh.readline().rstrip("\r\n").split("\t")
        triple = _pick_fields([h.strip() for h in header], fields, f"{path}: header")
        rows = ((f"{path}: row {n}", r) for n, r in iter_delimited(path, triple))
        return _pairs_from_rows(rows, task, [triple], stem)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return _pairs_from_rows(((f"{path}: line {n}", r) for n, r in iter_jsonl(path)), task, fields, stem)
    if name.endswith(".json"):
        data = read_json(path)
        items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else None
        if items is None:
            raise DataError(f"{path}: expected a JSON object or list of examples, got {type(data).__name__}")
        rows = []
        for key, rec in items:
            if not isinstance(rec, dict):
                raise DataError(f"{path}: entry {key!r} is not an object")
            rows.append((f"{path}: entry {key!r}", rec))
        return _pairs_from_rows(rows, task, fields, stem)
    raise DataError(f"{path}: unknown {task} file format (expected s1.<split>, .tsv, .txt, .jsonl[.gz] or .json)")


def hub_row(rec: dict[str, Any], position: int) -> int:
    """The row number of a hub record in its split (added by the registry), else its position."""
    row = rec.get(ROW_KEY, position)
    return row if isinstance(row, int) else position


def pairs_from_hub(
    records: Iterable[dict[str, Any]], where: str, task: str, fields: PairFields, hub_names: Sequence[str], stem: str
) -> list[ClassificationExample]:
    """Convert hub rows with two text columns and a ClassLabel ``label`` (mapped through ``hub_names``)."""
    out: list[ClassificationExample] = []
    a_key, b_key, label_key = fields
    for i, rec in enumerate(records):
        row = hub_row(rec, i)
        row_where = f"{where} row {row}"
        missing = [k for k in fields if k not in rec]
        if missing:
            raise DataError(f"{row_where}: missing field(s) {missing} (has {sorted(rec)})")
        with skip_unusable():
            label = hub_label(task, rec[label_key], hub_names, row_where)
            if label is None:
                note_no_gold_label(rec[label_key])
            else:
                ex_id = str(rec.get("idx", rec.get("id", f"{stem}-{row}")))
                out.append(pair_example(task, ex_id, rec[a_key], rec[b_key], label, row_where))
    return out


def answer_at(context: str, text: str, where: str, start: int | None = None) -> Answer:
    """Locate ``text`` in ``context``: at ``start`` if it is there, else the occurrence nearest to
    ``start`` (e.g. when a loader stripped whitespace off the text but kept its offset), else -- with no
    ``start`` -- its first occurrence.

    Raises :class:`DataError` naming ``where`` when the text is empty or does not occur in the context.
    """
    if not text.strip():
        raise UnusableRow(f"{where}: empty answer text", "empty answer")
    if start is None:
        found = [context.find(text)]
    else:
        found = [context.rfind(text, 0, max(start, 0) + len(text)), context.find(text, max(start, 0))]
    found = [f for f in found if f >= 0]
    if not found:
        raise UnusableRow(f"{where}: answer {text!r} does not occur in its context", "answer not in its context")
    best = min(found, key=lambda f: abs(f - start)) if start is not None else found[0]
    return Answer(text=text, start=best)


def unique_answers(answers: Iterable[Answer]) -> tuple[Answer, ...]:
    """Drop repeated (text, start) answers, keeping first-seen order."""
    return tuple(dict.fromkeys(answers))


# MRQA hub rows (mrqa-workshop/mrqa, config "plain_text", parquet, pinned at MRQA_REVISION; checked on
# the dataset card and the "Convert dataset to Parquet" commit, 2024): subset, context, context_tokens, qid, question,
# question_tokens, detected_answers {text: [str], char_spans: [{start: [int], end: [int]}],
# token_spans: [...]}, answers [str]. Character spans are inclusive at both ends, as in the MRQA jsonl
# files; the answer text is taken from the context at the span (MRQA's "text" may differ in case or
# a leading article from the span).
MRQA_HUB = ("mrqa-workshop/mrqa", "plain_text")
#: The main-branch commit "Convert dataset to Parquet (#6)" of ``mrqa-workshop/mrqa`` (docs/datasets.md).
MRQA_REVISION = "f3178d9888471dfb2b67c93de14f0ddf499a8d9f"


def _span_pairs(group: Any, where: str) -> list[Any]:
    """The candidate ``[start, end]`` pairs of one ``char_spans`` group (Arrow dict of lists, or a list of pairs)."""
    if isinstance(group, dict):
        starts, ends = group.get("start", []), group.get("end", [])
        if not (isinstance(starts, list) and isinstance(ends, list) and len(starts) == len(ends)):
            raise DataError(f"{where}: char_spans {group!r:.80} needs 'start' and 'end' lists of one length")
        return list(zip(starts, ends))
    if isinstance(group, list):
        return group
    raise DataError(f"{where}: char_spans {group!r:.80} is neither a dict of lists nor a list of [start, end]")


def _mrqa_spans(detected: Any, where: str) -> Iterator[tuple[int, int]]:
    """Yield inclusive ``(start, end)`` character spans from a hub ``detected_answers`` value."""
    if isinstance(detected, dict):  # Arrow layout: a dict of lists
        groups = detected.get("char_spans", [])
    elif isinstance(detected, list):  # row-wise layout: a list of answer dicts
        groups = [typed(d, dict, "a detected answer", where).get("char_spans", []) for d in detected]
    else:
        raise DataError(f"{where}: detected_answers has an unexpected type {type(detected).__name__}")
    for group in typed(groups, list, "char_spans", where):
        for pair in _span_pairs(group, where):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(is_int(x) for x in pair)):
                raise DataError(f"{where}: char span {pair!r:.80} is not a [start, end] pair of integers")
            yield pair[0], pair[1]


def mrqa_hub_examples(records: Iterable[dict[str, Any]], where: str, subset: str) -> list[QAExample]:
    """Convert MRQA hub rows of one ``subset`` (e.g. ``"TriviaQA-web"``) into answerable :class:`QAExample`."""
    out: list[QAExample] = []
    for i, rec in enumerate(records):
        if rec.get("subset") != subset:
            continue
        row_where = f"{where} row {hub_row(rec, i)}"
        with skip_unusable():
            context = typed(rec.get("context"), str, "context", row_where)
            answers = []
            for start, end in _mrqa_spans(rec.get("detected_answers"), row_where):
                if not 0 <= start <= end < len(context):
                    raise DataError(f"{row_where}: answer span {start}..{end} is outside its context of {len(context)} characters")
                answers.append(Answer(text=context[start : end + 1], start=start))
            if not answers:
                raise DataError(f"{row_where}: question {rec.get('qid')!r} has no detected answer span")
            ex = QAExample(id=str(rec.get("qid", f"{subset}-{hub_row(rec, i)}")), context=context,
                           question=typed(rec.get("question"), str, "question", row_where), answers=unique_answers(answers))
            out.append(ex.validate(row_where))
    return out


@dataclass(frozen=True)
class OpenQuestion:
    """A question with its accepted answer strings but no context (NQ-open, TriviaQA without evidence).

    Usable for answer-string checks only: span-extraction MRC needs a context.
    """

    id: str
    question: str
    answers: tuple[str, ...]

    def validate(self, where: str) -> "OpenQuestion":
        """Raise :class:`DataError` naming ``where`` if the question or every answer is empty."""
        if not self.question.strip():
            raise DataError(f"{where}: question {self.id!r} is empty")
        if not self.answers or not all(a.strip() for a in self.answers):
            raise DataError(f"{where}: question {self.id!r} has an empty answer list or an empty answer")
        return self
