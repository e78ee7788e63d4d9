"""Property-based fuzzing of every file loader and hub converter: bad input is a RoadError, never a crash.

Each case writes a file in one of a dataset's local formats (or builds hub rows) from a *valid template*
that hypothesis then mutates -- fields dropped, values replaced by values of the wrong type, empty texts,
out-of-range offsets, bad labels, odd delimiters, random bytes, damaged gzip -- and calls the loader exactly
as the registry does (``get_dataset(name).from_file(path)`` / ``.from_hub(records, where)``). Every call must
either return valid examples or raise :class:`~road_repro.errors.RoadError` (DataError / ConfigError);
any other exception type fails the test with hypothesis's shrunk example. The unmutated templates are
checked to load, so the fuzzing starts from inputs that reach the deepest code.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from road_repro.data.mrqa import load_mrqa
from road_repro.data.registry import dataset_names, get_dataset
from road_repro.data.schema import ClassificationExample, QAExample
from road_repro.data.squad_v2 import load_squad_v2_json
from road_repro.errors import RoadError
from tests.data.test_sets_hub_shaped import HUB_ROWS

#: Examples per case: enough to hit every branch of a small loader, few enough for ~1 s per case.
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

CONTEXT = "the cat sat on the mat ."
SCALARS = st.none() | st.booleans() | st.integers(-3, 40) | st.floats() | st.text(max_size=10)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
#: Values that sit on the edges of what loaders check: empty/blank texts, markers, bad offsets and spans.
TRICKY = st.sampled_from([
    "", " ", "-", "?", "XXX", "CANNOTANSWER", "0:2", "2:1", "x:y", "~!~", "\x00", "é\u2028", -1, 0, 1, 3, 10**12,
    2.5, float("nan"), True, False, None, [], {}, [0, 1], [[0, 1]], [[5, 2]], [-1, 2], {"start": [0], "end": [99]},
])  # fmt: skip
TRICKY_TEXT = st.sampled_from(["", " ", "-", "\t", '"', "a\nb", "0:2", "x:y", "5", "9.5", "neutral", "1", "-1", "~!~"])


def _mutate(draw: Callable, value: Any) -> Any:
    """``value`` with random parts kept, recursed into, replaced by edge values or by random JSON."""
    action = draw(st.sampled_from(("keep", "recurse", "recurse", "recurse", "tricky", "random")))
    if action == "tricky":
        return draw(TRICKY)
    if action == "random":
        return draw(JSON)
    if action == "keep" or not isinstance(value, (dict, list)):
        return value
    if isinstance(value, dict):
        return _mutate_fields(draw, value)
    items = [_mutate(draw, v) for v in value if draw(st.integers(0, 7))]
    if not draw(st.integers(0, 7)):
        items.append(items[0] if items else draw(JSON))  # a repeated entry (duplicate ids, spans)
    return items


def _mutate_fields(draw: Callable, record: dict) -> dict:
    """A dict with some fields dropped, the others mutated, and sometimes an unexpected field added."""
    out = {k: _mutate(draw, v) for k, v in record.items() if draw(st.integers(0, 7))}
    if not draw(st.integers(0, 7)):
        out[draw(st.text(max_size=6))] = draw(JSON)
    return out


@st.composite
def mutated(draw: Callable, template: Any) -> Any:
    """A random mutation of a (JSON-shaped) template."""
    return _mutate(draw, template)


@st.composite
def mutated_record(draw: Callable, record: dict) -> dict:
    """A random mutation of a hub row that stays a dict (the hub always yields dict rows)."""
    return _mutate_fields(draw, record)


@st.composite
def mutated_rows(draw: Callable, rows: list[list[str]]) -> list[list[str]]:
    """Delimited-file rows with cells replaced, dropped or added (a header row stays a row to mutate)."""
    out = []
    for row in rows + draw(st.lists(st.just(rows[-1]), max_size=1)):
        cells = [draw(TRICKY_TEXT | st.text(max_size=8)) if not draw(st.integers(0, 3)) else c for c in row]
        if not draw(st.integers(0, 7)):
            cells = cells[:-1] if draw(st.booleans()) else cells + [draw(st.text(max_size=4))]
        out.append(cells)
    return out


def damaged_gzip(payload: bytes, cut: int) -> bytes:
    """A gzip stream of ``payload`` cut short or with one byte flipped (a truncated download, bit rot)."""
    blob = bytearray(gzip.compress(payload))
    at = 10 + cut % (len(blob) - 10)  # past the 10-byte header
    if cut % 2:
        return bytes(blob[:at])
    blob[at] ^= 0xFF
    return bytes(blob)


def or_bytes(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy`` or, now and then, random bytes or a damaged gzip stream in place of the whole file."""
    return strategy | st.binary(max_size=40) | st.builds(damaged_gzip, st.binary(max_size=40), st.integers(0, 10**6))


# -- writers: content -> the file(s) the loader reads ------------------------------------------------------


def _write(path: Path, content: bytes | str) -> Path:
    """Write text (gzipped when the name ends in ``.gz``) or raw bytes as they are; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = gzip.compress(content.encode("utf-8")) if path.name.endswith(".gz") else content.encode("utf-8")
    path.write_bytes(content)
    return path


def json_doc(rel: str) -> Callable[[Path, Any], Path]:
    return lambda root, doc: _write(root / rel, doc if isinstance(doc, bytes) else json.dumps(doc))


def jsonl(rel: str) -> Callable[[Path, Any], Path]:
    def write(root: Path, lines: Any) -> Path:
        if isinstance(lines, bytes):
            return _write(root / rel, lines)
        lines = lines if isinstance(lines, list) else [lines]  # a mutation may replace the list of lines
        return _write(root / rel, "".join(json.dumps(line) + "\n" for line in lines))

    return write


def delimited(rel: str, delimiter: str = "\t", quoted: bool = False) -> Callable[[Path, Any], Path]:
    def write(root: Path, rows: Any) -> Path:
        if isinstance(rows, bytes):
            return _write(root / rel, rows)
        return _write(root / rel, _rows_text(rows, delimiter, quoted))

    return write


def _rows_text(rows: list[list[str]], delimiter: str, quoted: bool) -> str:
    if not quoted:
        return "".join(delimiter.join(row) + "\n" for row in rows)
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows(rows)
    return buf.getvalue()


def senteval(root: Path, columns: Any) -> Path:
    """The InferSent/SentEval triple ``s1.dev`` / ``s2.dev`` / ``labels.dev`` (one item per line)."""
    for name, lines in zip(("s1", "s2", "labels"), columns):
        _write(root / f"{name}.dev", lines if isinstance(lines, bytes) else "".join(f"{x}\n" for x in lines))
    return root / "s1.dev"


def qa_srl_gold(root: Path, tables: Any) -> Path:
    """A QA-SRL GS gold csv and the sentences csv it refers to (``../sentences/<stem>.full.csv``)."""
    gold, sentences = tables
    delimited("sentences/wikinews.dev.full.csv", ",", True)(root, sentences)
    return delimited("gold/wikinews.dev.gold.csv", ",", True)(root, gold)


def triviaqa_official(root: Path, content: Any) -> Path:
    """An official TriviaQA JSON under ``qa/`` with its evidence document under ``evidence/wikipedia``."""
    doc, evidence = content
    _write(root / "evidence" / "wikipedia" / "doc.txt", evidence)
    return json_doc("qa/web-dev.json")(root, doc)


# -- valid templates ---------------------------------------------------------------------------------------

SQUAD_DOC = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": [
    {"id": "q1", "question": "who sat ?", "answers": [{"text": "cat", "answer_start": 4}], "is_impossible": False},
    {"id": "q2", "question": "who ran ?", "answers": [], "is_impossible": True},
]}]}]}  # fmt: skip
MRQA_LINES = [
    {"header": {"dataset": "NewsQA", "split": "dev"}},
    {"context": CONTEXT, "qas": [{"qid": "q1", "question": "who sat ?", "answers": ["cat"],
                                  "detected_answers": [{"text": "cat", "char_spans": [[4, 6]]}]}]},
]
NLI_JSONL = [{"sentence1": "a man sleeps", "sentence2": "a person rests", "gold_label": "entailment"},
             {"sentence1": "a dog runs", "sentence2": "a cat sits", "gold_label": "-"}]
NLI_TSV = [["index", "sentence1", "sentence2", "gold_label"], ["0", "a man sleeps", "a person rests", "neutral"]]
NLI_JSON = {"0": {"text_a": "a man sleeps", "text_b": "a person rests", "label": "contradiction"}}
QQP_TSV = [["id", "question1", "question2", "is_duplicate"], ["0", "how do i cook ?", "how can i cook ?", "1"]]
QQP_JSON = {"0": {"text_a": "how do i cook ?", "text_b": "how can i cook ?", "label": "1"}}
NLI_SENTEVAL = (["a man sleeps", "a dog runs"], ["a person rests", "a cat sits"], ["entailment", "neutral"])
QQP_SENTEVAL = (["how do i cook ?"], ["how can i cook ?"], ["1"])
AMAZON_TSV = [["rating", "date", "verified_reviews"], ["5", "31-Jul-18", "Love my Echo!"], ["4", "31-Jul-18", ""]]
AMAZON_JSONL = [{"stars": 5, "review_body": "great", "review_title": "nice"}, {"stars": "2", "review_body": "bad"}]
QA_SRL_GOLD = ([["qasrl_id", "verb_idx", "question", "answer_range"], ["s1", "2", "who sat ?", "0:2~!~3:5"]],
               [["qasrl_id", "tokens"], ["s1", CONTEXT]])
QA_SRL_BANK = [{"sentenceId": "s1", "sentenceTokens": CONTEXT.split(), "verbEntries": {"2": {"questionLabels": {
    "who sat ?": {"answerJudgments": [{"isValid": True, "spans": [[0, 2]]}, {"isValid": True, "spans": [[1, 2]]},
                                       {"isValid": False}]}}}}}]
QA_ZRE_TSV = [["born in", "where was XXX born ?", "the cat", CONTEXT, "mat"], ["r", "what is XXX ?", "cat", CONTEXT]]
QUAC_DOC = {"data": [{"title": "t", "paragraphs": [{"context": CONTEXT + " CANNOTANSWER", "qas": [
    {"id": "d#0", "question": "who sat ?", "orig_answer": {"text": "cat", "answer_start": 4},
     "answers": [{"text": "the cat", "answer_start": 0}]},
    {"id": "d#1", "question": "why ?", "orig_answer": {"text": "CANNOTANSWER", "answer_start": 25}, "answers": []},
]}]}]}  # fmt: skip
TRIVIAQA_DOC = ({"Data": [{"Question": "who sat ?", "QuestionId": "tq1", "Answer": {"Value": "cat", "Aliases": ["the cat"]},
                           "EntityPages": [{"Filename": "doc.txt"}], "SearchResults": []}]}, CONTEXT)


@dataclass(frozen=True)
class FileCase:
    """One local format of one loader: how to write it, a valid template, and how to mutate it."""

    name: str
    loader: Callable[[Path], list]
    write: Callable[[Path, Any], Path]
    template: Any
    strategy: st.SearchStrategy


def _from_file(dataset: str) -> Callable[[Path], list]:
    return lambda path: get_dataset(dataset).from_file(path)


def _case(name: str, loader: Callable[[Path], list], write: Callable, template: Any, rows: bool = False) -> FileCase:
    return FileCase(name, loader, write, template, or_bytes(mutated_rows(template) if rows else mutated(template)))


def _pair_cases(
    dataset: str, tsv: list[list[str]], json_obj: dict, jsonl_lines: list[dict], triple: tuple[list[str], ...]
) -> list[FileCase]:
    """The four local formats of an NLI / paraphrase dataset."""
    load = _from_file(dataset)
    return [
        _case(f"{dataset}-tsv", load, delimited("dev.tsv"), tsv, rows=True),
        _case(f"{dataset}-jsonl", load, jsonl("dev.jsonl"), jsonl_lines),
        _case(f"{dataset}-json", load, json_doc("dev.json"), json_obj),
        FileCase(f"{dataset}-senteval", load, senteval, triple,
                 st.tuples(*(or_bytes(st.lists(TRICKY_TEXT | st.text(max_size=8), max_size=3)) for _ in range(3)))),
    ]


QQP_JSONL = [{"question1": "how do i cook ?", "question2": "how can i cook ?", "is_duplicate": 0}]
FILE_CASES = [
    _case("squad_v2-json", _from_file("squad_v2"), json_doc("dev-v2.0.json"), SQUAD_DOC),
    _case("load_squad_v2_json", load_squad_v2_json, json_doc("train.json"), SQUAD_DOC),
    _case("load_mrqa-jsonl", load_mrqa, jsonl("NewsQA.jsonl"), MRQA_LINES),
    _case("load_mrqa-jsonl.gz", load_mrqa, jsonl("NewsQA.jsonl.gz"), MRQA_LINES),
    *[_case(f"{d}-jsonl.gz", _from_file(d), jsonl(f"{d}.jsonl.gz"), MRQA_LINES)
      for d in ("natural_questions", "newsqa", "triviaqa", "qa_zre")],
    _case("qa_zre-tsv", _from_file("qa_zre"), delimited("relation_splits/dev.0"), QA_ZRE_TSV, rows=True),
    FileCase("triviaqa-json", _from_file("triviaqa"), triviaqa_official, TRIVIAQA_DOC,
             st.tuples(or_bytes(mutated(TRIVIAQA_DOC[0])), TRICKY_TEXT | st.just(CONTEXT))),
    *_pair_cases("mnli", NLI_TSV, NLI_JSON, NLI_JSONL, NLI_SENTEVAL),
    *_pair_cases("snli", NLI_TSV, NLI_JSON, NLI_JSONL, NLI_SENTEVAL),
    *_pair_cases("qqp", QQP_TSV, QQP_JSON, QQP_JSONL, QQP_SENTEVAL),
    _case("amazon-tsv", _from_file("amazon"), delimited("amazon_alexa.tsv", quoted=True), AMAZON_TSV, rows=True),
    _case("amazon-jsonl", _from_file("amazon"), jsonl("amazon/dev.jsonl"), AMAZON_JSONL),
    FileCase("qa_srl-gold-csv", _from_file("qa_srl"), qa_srl_gold, QA_SRL_GOLD,
             st.tuples(or_bytes(mutated_rows(QA_SRL_GOLD[0])), or_bytes(mutated_rows(QA_SRL_GOLD[1])))),
    _case("qa_srl-bank-jsonl", _from_file("qa_srl"), jsonl("qasrl-v2/orig/dev.jsonl.gz"), QA_SRL_BANK),
    _case("quac-json", _from_file("quac"), json_doc("quac/val_v0.2.json"), QUAC_DOC),
]
HUB_DATASETS = sorted(n for n in dataset_names() if get_dataset(n).from_hub is not None)


def assert_valid(examples: Any) -> None:
    """An accepted input gives a list of examples that each pass their own validation."""
    assert isinstance(examples, list)
    for ex in examples:
        assert isinstance(ex, (QAExample, ClassificationExample)), type(ex)
        assert isinstance(ex.id, str), ex
        ex.validate("re-validated")


def accepted_or_road_error(call: Callable[[], list]) -> None:
    """Run ``call``: valid examples or a RoadError pass; any other exception propagates and fails the test."""
    try:
        examples = call()
    except RoadError:
        return
    assert_valid(examples)


def test_every_file_based_dataset_is_fuzzed():
    """A newly registered dataset with local files must get a case here."""
    fuzzed = {case.name.split("-")[0] for case in FILE_CASES}
    assert {n for n in dataset_names() if get_dataset(n).from_file is not None} <= fuzzed


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.name)
def test_templates_are_valid(case: FileCase, tmp_path: Path):
    """The unmutated templates load into examples, so mutations start from deep inside each loader."""
    examples = case.loader(case.write(tmp_path, case.template))
    assert examples
    assert_valid(examples)


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.name)
def test_file_loaders_accept_or_raise_road_error(case: FileCase):
    with tempfile.TemporaryDirectory() as tmp:

        @FUZZ
        @given(content=case.strategy)
        def check(content: Any) -> None:
            accepted_or_road_error(lambda: case.loader(case.write(Path(tmp), content)))

        check()


@pytest.mark.parametrize("name", HUB_DATASETS)
def test_hub_converters_accept_or_raise_road_error(name: str):
    spec = get_dataset(name)
    rows = st.lists(
        st.sampled_from(HUB_ROWS[name]).flatmap(mutated_record) | st.dictionaries(st.text(max_size=8), JSON, max_size=4),
        max_size=3,
    )

    @FUZZ
    @given(records=rows)
    def check(records: list[dict]) -> None:
        accepted_or_road_error(lambda: spec.from_hub(records, f"hub {name}"))

    check()
