"""The dataset registry: the contract every registered dataset meets, spec checks, and how
``load_examples`` picks generated data, local files (first existing candidate, globs, limit) or the hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from road_repro.data import registry
from road_repro.data.registry import (
    DATA_DIR_ENV,
    ROW_KEY,
    DatasetSpec,
    dataset_names,
    get_dataset,
    load_examples,
    register_dataset,
)
from road_repro.data.schema import LABELS, TASK_TYPES, ClassificationExample, QAExample
from road_repro.errors import ConfigError, DataError
from tests.data.test_sets_hub_shaped import HUB_ROWS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
TABLE1 = {"triviaqa", "natural_questions", "quac", "qa_srl", "qa_zre", "mnli", "snli", "amazon", "qqp"}
EVALUATION = {"squad_v2", "mnli", "qqp", "newsqa"}
SYNTHETIC = {"synthetic_nli", "synthetic_sentiment", "synthetic_paraphrase", "synthetic_squad", "synthetic_squad_warmup",
             "synthetic_squad_facts_warmup", "synthetic_nli_warmup", "synthetic_sentiment_warmup",
             "synthetic_paraphrase_warmup"}


def test_all_paper_and_synthetic_datasets_are_registered():
    assert set(dataset_names()) == TABLE1 | EVALUATION | SYNTHETIC


def _check_examples(examples: list, task: str) -> None:
    """Non-empty, of the task's example type, and valid."""
    assert examples
    for ex in examples:
        if task == "mrc":
            assert isinstance(ex, QAExample)
        else:
            assert isinstance(ex, ClassificationExample) and ex.task == task
        ex.validate("contract")


@pytest.mark.parametrize("name", sorted(TABLE1 | EVALUATION | SYNTHETIC))
def test_dataset_contract(name):
    """Task type known, licence/size filled, and the hub converter turns a hub-shaped row into valid examples."""
    spec = get_dataset(name)
    assert spec.name == name and spec.task in TASK_TYPES
    assert spec.licence.strip() and spec.size.strip() and spec.splits
    if spec.generate is not None:
        _check_examples(spec.generate("dev", 6), spec.task)
        return
    assert spec.hub is not None and spec.from_hub is not None and spec.from_file is not None
    assert set(spec.hub_splits) <= set(spec.splits) and "dev" in spec.splits
    _check_examples(spec.from_hub(HUB_ROWS[name], f"hub {spec.hub[0]}"), spec.task)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ConfigError, match="unknown dataset 'mnlii'.*mnli.*squad_v2"):
        get_dataset("mnlii")


@pytest.mark.parametrize("split, limit, message", [("validation", None, "no split 'validation'"), ("dev", 0, "positive integer")])
def test_bad_split_or_limit(split, limit, message):
    with pytest.raises(ConfigError, match=message):
        load_examples("mnli", split, limit=limit)


def test_spec_checks():
    base = dict(name="toy", task="nli", hub=None, hub_splits={}, local={"dev": ("a.jsonl",)}, from_hub=None,
                from_file=lambda p: [], licence="x", size="1")
    DatasetSpec(**base)
    with pytest.raises(ConfigError, match="task 'ner'"):
        DatasetSpec(**{**base, "task": "ner"})
    with pytest.raises(ConfigError, match="hub source needs from_hub"):
        DatasetSpec(**{**base, "hub": ("a/b", None), "hub_splits": {"dev": "validation"}})
    with pytest.raises(ConfigError, match="licence and size"):
        DatasetSpec(**{**base, "licence": " "})
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset(DatasetSpec(**{**base, "name": "mnli"}))
    with pytest.raises(ConfigError, match="hub_layout 'folders' is not one of"):
        DatasetSpec(**{**base, "hub_layout": "folders"})
    with pytest.raises(ConfigError, match="refs/convert/parquet needs hub_layout 'parquet_export'"):
        DatasetSpec(**{**base, "hub_revision": "refs/convert/parquet"})


# --- local files --------------------------------------------------------------------------------------


def _toy_reader(path: Path) -> list[ClassificationExample]:
    """Each line "<text>\t<label name>" is one NLI example (a stand-in for a dataset's file reader)."""
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [ClassificationExample(f"{path.name}-{i}", a, LABELS["nli"].index(b), "", "nli") for i, (a, b) in enumerate(rows)]


@pytest.fixture
def toy(monkeypatch):
    """A registry holding everything plus a toy dataset with two local candidates and a glob candidate."""
    dataset_names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return register_dataset(DatasetSpec(
        name="toy", task="nli", hub=None, hub_splits={},
        local={"dev": ("first/dev.tsv", "second/dev.tsv"), "test": ("parts/*.tsv",)},
        from_hub=None, from_file=_toy_reader, licence="test", size="tiny",
    ))


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_first_existing_candidate_wins_and_limit_truncates(toy, tmp_path):
    _write(tmp_path / "second/dev.tsv", ["b\tneutral"])
    assert [e.text_a for e in load_examples("toy", "dev", tmp_path)] == ["b"]
    _write(tmp_path / "first/dev.tsv", ["a1\tentailment", "a2\tcontradiction", "a3\tneutral"])
    assert [e.text_a for e in load_examples("toy", "dev", tmp_path)] == ["a1", "a2", "a3"]
    assert [e.label for e in load_examples("toy", "dev", tmp_path, limit=2)] == [0, 2]


def test_glob_candidate_reads_all_matches_sorted(toy, tmp_path):
    _write(tmp_path / "parts/b.tsv", ["y\tneutral"])
    _write(tmp_path / "parts/a.tsv", ["x\tentailment"])
    assert [e.text_a for e in load_examples("toy", "test", tmp_path)] == ["x", "y"]


def test_data_dir_from_environment(toy, tmp_path, monkeypatch):
    _write(tmp_path / "first/dev.tsv", ["env\tneutral"])
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert load_examples("toy", "dev")[0].text_a == "env"


def test_missing_data_dir_is_an_error(toy, tmp_path):
    with pytest.raises(DataError, match="data directory .*nope does not exist"):
        load_examples("toy", "dev", tmp_path / "nope")


def test_no_local_file_and_no_hub(toy, tmp_path):
    with pytest.raises(DataError, match=r"'toy' split 'dev': no local file found in data dir .*first/dev.tsv.*no hub"):
        load_examples("toy", "dev", tmp_path)


def test_offline_hub_failure_names_dataset_split_dir_and_hub(tmp_path, monkeypatch):
    """Offline (as here), a dataset with no local file raises one DataError naming everything tried."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_examples("mnli", "dev", tmp_path)
    message = str(err.value)
    for part in ("'mnli'", "'dev'", str(tmp_path), "MNLI/dev_matched.tsv", "nyu-mll/glue", "validation_matched"):
        assert part in message


# --- hub path, with datasets.load_dataset replaced by an in-memory dataset -----------------------------


def _fake_hub(monkeypatch, rows: list[dict], names: list[str], calls: list) -> None:
    import datasets

    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")})

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split, kwargs))
        return datasets.Dataset.from_list(rows, features=features)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def _mnli_rows(n: int) -> list[dict]:
    return [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3, "idx": i} for i in range(n)]


def test_hub_load_maps_labels_and_stops_at_limit(monkeypatch):
    calls: list = []
    _fake_hub(monkeypatch, _mnli_rows(10), ["entailment", "neutral", "contradiction"], calls)
    seen_rows: list[int] = []
    spec = get_dataset("mnli")
    monkeypatch.setattr(registry, "HUB_CHUNK", 4)
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "mnli": DatasetSpec(**{
        **{f: getattr(spec, f) for f in spec.__dataclass_fields__},
        "from_hub": lambda recs, where: (seen_rows.extend(r[ROW_KEY] for r in recs), spec.from_hub(recs, where))[1],
    })})
    examples = load_examples("mnli", "dev", limit=5)
    assert calls == [("nyu-mll/glue", "mnli", "validation_matched", {"revision": spec.hub_revision})]  # the pinned commit
    assert [e.label for e in examples] == [0, 1, 2, 0, 1] and examples[4].id == "4"
    assert seen_rows == list(range(8))  # two chunks of 4 rows, then the limit was reached


def test_parquet_export_revision_loads_the_config_folder(monkeypatch):
    """QuAC's and QA-SRL's main branches hold a loading script: their parquet export (the branch, or a
    pinned commit of it) is loaded with the config as folder."""
    calls: list = []
    _fake_hub(monkeypatch, _mnli_rows(1), ["entailment", "neutral", "contradiction"], calls)
    with pytest.raises(DataError, match="not a QuAC hub row"):  # the fake rows are MNLI-shaped
        load_examples("quac", "dev")
    with pytest.raises(DataError, match="expected a 'sentence' string"):
        load_examples("qa_srl", "dev")
    assert calls == [("allenai/quac", None, "validation", {"revision": "refs/convert/parquet", "data_dir": "plain_text"}),
                     ("biu-nlp/qa_srl2018", None, "validation",
                      {"revision": "23408b463cf52b0248f1482fd912d9f01ef5cc88", "data_dir": "v2"})]


def test_hub_label_names_are_checked(monkeypatch):
    _fake_hub(monkeypatch, _mnli_rows(3), ["contradiction", "entailment", "neutral"], [])
    with pytest.raises(DataError, match="label names are .*contradiction.*expected .*entailment"):
        load_examples("mnli", "dev")


# --- generated datasets -------------------------------------------------------------------------------


def test_generated_datasets_sizes_and_splits():
    assert len(load_examples("synthetic_nli", "train")) == 2000
    dev = load_examples("synthetic_sentiment", "dev", limit=30)
    assert len(dev) == 30 and {e.task for e in dev} == {"sentiment"}
    train = load_examples("synthetic_sentiment", "train", limit=30)
    assert [e.text_a for e in train] != [e.text_a for e in dev]
    squad = load_examples("synthetic_squad", "dev", limit=7)
    assert len(squad) == 7 and squad[0].id == "syn-dev-0"


def test_hub_rows_cover_every_hub_dataset():
    """A new hub dataset must bring a hand-made hub-shaped row for the contract test."""
    hub_names = {n for n in dataset_names() if get_dataset(n).hub is not None}
    assert hub_names == set(HUB_ROWS)
    assert json.dumps(HUB_ROWS)  # plain JSON-like rows, as the hub yields


def test_docs_table_names_every_dataset_and_hub_id():
    text = DOCS.read_text(encoding="utf-8")
    for name in dataset_names():
        spec = get_dataset(name)
        assert f"| `{name}` | {spec.task} |" in text
        if spec.hub is not None:
            assert f"`{spec.hub[0]}`" in text
