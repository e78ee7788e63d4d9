"""Real data as it is, local files: the same skip-count-bound rule as the hub (road_repro.data.unusable),
zero usable rows named with the file and why, data paths that are no regular file named (never a silent
fallback), SQuAD 1.1 in SQuAD 2.0's place said once, seeded caps at the paper Table 1 sizes that MT-DNN's
proportions follow, and the paper profile's pins."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest
from datasets import Dataset

from road_repro.config import load_profile
from road_repro.data import registry
from road_repro.data.mixing import MtdnnSampler
from road_repro.data.registry import cap_rows, data_source, get_dataset, load_examples
from road_repro.data.unusable import SkipTally, UnusableRow, collecting, skip_unusable
from road_repro.errors import DataError

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(registry, "_SKIPPED", {})
    monkeypatch.delenv("ROAD_DATA_DIR", raising=False)


def write_qqp(root: Path, good: int, empty: int) -> Path:
    path = root / "QQP" / "train.tsv"
    path.parent.mkdir(parents=True)
    rows = [f"{i}\t1\t2\tHow do I learn {i}?\tHow can I study {i}?\t{i % 2}\n" for i in range(good)]
    rows += [f"{good + i}\t1\t2\tWhy is the sky blue?\t\t0\n" for i in range(empty)]  # GLUE QQP's empty question2
    path.write_text(QQP_HEADER + "".join(rows))
    return path


def test_local_file_under_the_share_skips_counts_and_records(tmp_path, caplog):
    path = write_qqp(tmp_path, good=1999, empty=1)
    caplog.set_level("WARNING", logger="road_repro")
    assert len(load_examples("qqp", "train", data_dir=tmp_path)) == 1999
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "skipped 1 of 2,000 rows: 1 empty text" in said[0] and str(path) in said[0]
    assert data_source("qqp", "train", tmp_path) == f"{path.resolve()}; skipped 1 of 2,000 rows: 1 empty text"


def test_local_file_over_the_share_stops_naming_file_and_rows(tmp_path):
    path = write_qqp(tmp_path, good=20, empty=2)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}\): 2 of 22 rows \(9.09 %\) are unusable.*"
                                        rf"first: {re.escape(str(path))}: row 21: .*empty or missing second text"):
        load_examples("qqp", "train", data_dir=tmp_path)
    assert len(load_examples("qqp", "train", data_dir=tmp_path, max_unusable_share=0.1)) == 20  # the setting


def test_mnli_file_whose_labels_are_all_dash_names_file_and_why(tmp_path):
    path = tmp_path / "MNLI" / "train.tsv"
    path.parent.mkdir()
    path.write_text("index\tsentence1\tsentence2\tgold_label\n" + "".join(f"{i}\tA man.\tA person.\t-\n" for i in range(5)))
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}\): no usable rows: every row has label '-' \(no gold label, 5 rows\)"):
        load_examples("mnli", "train", data_dir=tmp_path)


def test_a_few_dash_labels_are_dropped_without_counting_against_the_share(tmp_path):
    """SNLI train has 785 pairs without a gold label (0.14 %, over 0.1 %): the datasets' own convention."""
    path = tmp_path / "MNLI" / "train.tsv"
    path.parent.mkdir()
    rows = [f"{i}\tA man.\tA person.\tentailment\n" for i in range(8)] + ["8\tA.\tB.\t-\n", "9\tC.\tD.\t-\n"]
    path.write_text("index\tsentence1\tsentence2\tgold_label\n" + "".join(rows))
    assert len(load_examples("mnli", "train", data_dir=tmp_path)) == 8
    assert data_source("mnli", "train", tmp_path).endswith("skipped 2 of 10 rows: 2 no gold label (label '-')")


def test_empty_file_is_no_split(tmp_path):
    (tmp_path / "MNLI").mkdir()
    (tmp_path / "MNLI" / "train.tsv").write_text("index\tsentence1\tsentence2\tgold_label\n")
    with pytest.raises(DataError, match="no rows"):
        load_examples("mnli", "train", data_dir=tmp_path)


# --- data paths that are no regular file (issue 21) ---------------------------------------------------------


def test_a_directory_where_a_file_is_expected_is_named(tmp_path):
    (tmp_path / "squad2" / "train-v2.0.json").mkdir(parents=True)
    (tmp_path / "squad2" / "train-v2.0.first10articles.json").write_text("{}")  # a later candidate: never read
    with pytest.raises(DataError, match=r"squad2/train-v2.0.json is a directory where a data file is expected"):
        load_examples("squad_v2", "train", data_dir=tmp_path)
    with pytest.raises(DataError, match="is a directory"):
        data_source("squad_v2", "train", tmp_path)


def test_a_broken_symlink_is_named_with_its_target(tmp_path):
    (tmp_path / "squad2").mkdir()
    os.symlink(tmp_path / "gone.json", tmp_path / "squad2" / "dev-v2.0.json")
    with pytest.raises(DataError, match=r"dev-v2.0.json is a broken symlink \(to .*gone.json\)"):
        load_examples("squad_v2", "dev", data_dir=tmp_path)


def test_a_directory_matching_a_glob_candidate_is_named(tmp_path):
    gold = tmp_path / "qa_srl" / "qasrl-gs" / "gold"
    (gold / "wikinews.dev.gold.csv").mkdir(parents=True)
    with pytest.raises(DataError, match="wikinews.dev.gold.csv is a directory"):
        load_examples("qa_srl", "dev", data_dir=tmp_path)


def squad_file(path: Path, impossible: bool | None) -> Path:
    qa = {"id": "q1", "question": "Who won?", "answers": [{"text": "Denver", "answer_start": 0}]}
    if impossible is not None:
        qa["is_impossible"] = False
    extra = [{"id": "q2", "question": "Who lost?", "answers": [], "is_impossible": True}] if impossible else []
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "Denver won.", "qas": [qa, *extra]}]}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_squad11_in_the_squad2_place_is_read_and_said_once(tmp_path, caplog):
    path = squad_file(tmp_path / "squad2" / "dev-v2.0.json", impossible=None)
    caplog.set_level("WARNING", logger="road_repro")
    assert len(load_examples("squad_v2", "dev", data_dir=tmp_path)) == 1
    assert len(load_examples("squad_v2", "dev", data_dir=tmp_path)) == 1
    said = [r.getMessage() for r in caplog.records if "SQuAD 1.1" in r.getMessage()]
    assert len(said) == 1 and str(path) in said[0] and "no unanswerable questions" in said[0]


def test_a_real_squad2_file_says_nothing(tmp_path, caplog):
    squad_file(tmp_path / "squad2" / "dev-v2.0.json", impossible=True)
    caplog.set_level("WARNING", logger="road_repro")
    assert len(load_examples("squad_v2", "dev", data_dir=tmp_path)) == 2
    assert not [r for r in caplog.records if "SQuAD 1.1" in r.getMessage()]


# --- the shared rule, on its own --------------------------------------------------------------------------


def test_skip_unusable_is_strict_outside_a_load_and_counts_inside():
    with pytest.raises(UnusableRow):
        with skip_unusable():
            raise UnusableRow("row 3: empty", "empty text")
    with collecting() as tally:
        for row in range(3):
            with skip_unusable():
                raise UnusableRow(f"row {row}: empty", "empty text")
        with pytest.raises(DataError, match="broken"):  # a broken file is no row to skip
            with skip_unusable():
                raise DataError("f: broken")
    assert tally.unusable == {"empty text": 3} and tally.first == ["row 0: empty", "row 1: empty", "row 2: empty"]


def test_share_threshold_is_exact():
    tally = SkipTally()
    tally.add("empty text", "row 1")
    assert tally.check(999, "f", 0.001) == "skipped 1 of 1,000 rows: 1 empty text"  # 0.1 % is allowed
    tally.add("empty text", "row 2")
    with pytest.raises(DataError, match="f: 2 of 1,001 rows"):
        tally.check(999, "f", 0.001)


# --- caps --------------------------------------------------------------------------------------------------


def test_cap_rows_is_a_seeded_sorted_sample():
    a = cap_rows(1000, 10, "qa_zre:train")
    assert a == cap_rows(1000, 10, "qa_zre:train") and a == sorted(a) and len(set(a)) == 10
    assert a != cap_rows(1000, 10, "snli:train") and cap_rows(5, 10, "k") == [0, 1, 2, 3, 4]


def test_local_cap_keeps_a_seeded_sample_in_file_order(tmp_path):
    write_qqp(tmp_path, good=50, empty=0)
    capped = load_examples("qqp", "train", data_dir=tmp_path, cap=10)
    ids = [int(e.id.split("-")[-1]) for e in capped]
    assert len(capped) == 10 and ids == sorted(ids) and ids != list(range(10))
    assert [e.id for e in load_examples("qqp", "train", data_dir=tmp_path, cap=10)] == [e.id for e in capped]
    assert len(load_examples("qqp", "train", data_dir=tmp_path, cap=10, limit=3)) == 3


def test_hub_cap_converts_only_a_sample_of_the_rows(monkeypatch):
    """QA-ZRE: the hub split is ~8.4x Table 1; only the rows the cap keeps are ever converted."""
    rows = {"relation": ["r"] * 5000, "question": ["Where was XXX?"] * 5000, "subject": ["Ada"] * 5000,
            "context": [f"Ada was at home {i} ." for i in range(5000)], "answers": [["home"]] * 5000}
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: Dataset.from_dict(rows))
    converted = []
    spec = get_dataset("qa_zre")
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "qa_zre": registry.DatasetSpec(**{
        **{f: getattr(spec, f) for f in spec.__dataclass_fields__},
        "from_hub": lambda recs, where: (converted.extend(recs), spec.from_hub(recs, where))[1]})})
    examples = load_examples("qa_zre", "train", cap=400)
    assert len(examples) == 400 and len(converted) == 400  # the capped rows, not 5,000
    assert examples == load_examples("qa_zre", "train", cap=400)


PAPER = load_profile("paper")


def test_paper_profile_caps_every_mtl_dataset_at_its_table1_size():
    for name, split in PAPER.mtl.datasets.items():
        assert split.cap == get_dataset(split.dataset).examples["train"], name
    assert PAPER.mtl.datasets["qa_zre"].cap == 1_000_000


def test_mtdnn_proportions_follow_the_capped_sizes():
    """Uncapped, QA-ZRE's ~8.4M hub rows would take 74.5 % of MT-DNN's steps; capped, 25.8 %."""
    capped = {n: s.cap for n, s in PAPER.mtl.datasets.items()}
    sampler = MtdnnSampler(capped, PAPER.mtl.optim.batch_size, seed=1)
    batches = {n: -(-size // PAPER.mtl.optim.batch_size) for n, size in capped.items()}
    assert sampler.probabilities["qa_zre"] == pytest.approx(batches["qa_zre"] / sum(batches.values()))
    assert 0.25 < sampler.probabilities["qa_zre"] < 0.26
    uncapped = MtdnnSampler({**capped, "qa_zre": 8_400_000}, PAPER.mtl.optim.batch_size, seed=1)
    assert uncapped.probabilities["qa_zre"] > 0.7


def test_paper_profile_pins_every_hub_model_to_a_commit():
    for key, model in PAPER.models.items():
        assert re.fullmatch(r"[0-9a-f]{40}", model.revision or ""), key
        assert model.trust_remote_code is False


# --- one cap rule for a local file and the hub ---------------------------------------------------------------


def squad_json(path: Path, rows: list[dict]) -> Path:
    """An official SQuAD 2.0 file holding hub-shaped ``rows`` as one paragraph each, in order."""
    paragraphs = [{"context": r["context"], "qas": [{"id": r["id"], "question": r["question"], "is_impossible": False,
                                                     "answers": [{"text": t, "answer_start": s} for t, s in
                                                                 zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
                  for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "NFL", "paragraphs": paragraphs}]}))
    return path


def mrqa_jsonl(path: Path, rows: list[dict]) -> Path:
    """An MRQA jsonl.gz file holding hub-shaped ``rows`` (one context line each, inclusive char spans)."""
    lines = [{"header": {"dataset": "NewsQA"}}]
    for r in rows:
        spans = [[s, e] for group in r["detected_answers"]["char_spans"] for s, e in zip(group["start"], group["end"])]
        lines.append({"context": r["context"], "qas": [{"qid": r["qid"], "question": r["question"], "answers": r["answers"],
                                                        "detected_answers": [{"text": r["answers"][0], "char_spans": spans}]}]})
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.mark.parametrize("name", ["squad_v2", "newsqa"])
def test_the_same_rows_give_the_same_capped_examples_from_a_local_file_and_the_hub(name, tmp_path, monkeypatch):
    """400 rows, every 40th unusable (an empty question), cap 50: the hub (SQuAD: rows picked before
    conversion; NewsQA: MRQA rows of other subsets in between, all converted) keeps the examples the
    local file keeps. Before, the hub drew 151 rows with one seed, then 50 examples of those with another."""
    from tests.data.test_hub_fixtures import fixture, mrqa, squad

    if name == "squad_v2":
        rows = [squad(f"q{i}", " " if i % 40 == 7 else f"Who won game {i}?") for i in range(400)]
        hub_rows, local = rows, squad_json(tmp_path / "squad2" / "train-v2.0.json", rows)
    else:
        rows = [mrqa("NewsQA", f"n{i}", question="" if i % 40 == 7 else f"Who won game {i}?") for i in range(400)]
        hub_rows = [r for i, row in enumerate(rows) for r in ([row, mrqa("SQuAD", f"s{i}")] if i % 3 else [row])]
        local = mrqa_jsonl(tmp_path / "mrqa" / "train" / "NewsQA.jsonl.gz", rows)
    assert data_source(name, "train", tmp_path) == str(local.resolve())  # the spec's first local candidate
    from_local = load_examples(name, "train", data_dir=tmp_path, cap=50, max_unusable_share=0.05)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: fixture(name, hub_rows))
    from_hub = load_examples(name, "train", cap=50, max_unusable_share=0.05)
    assert [e.id for e in from_hub] == [e.id for e in from_local]
    assert 45 <= len(from_local) <= 50  # the unusable rows among the 50 drawn are dropped, not replaced
    kept = [int(e.id[1:]) for e in from_local]
    assert kept == sorted(kept) and [i for i in cap_rows(400, 50, f"{name}:train") if i % 40 != 7] == kept


def test_a_cap_at_the_labelled_size_keeps_every_labelled_pair(tmp_path, monkeypatch):
    """Pairs without a gold label are no rows of the dataset (SNLI's Table 1 size, 549,367, counts the
    labelled pairs of 550,152): a cap at the labelled count keeps all of them, local file or hub."""
    from tests.data.test_hub_fixtures import CASES, fixture

    path = tmp_path / "MNLI" / "train.tsv"
    path.parent.mkdir()
    rows = [f"{i}\tA man {i}.\tA person.\t{'-' if i % 4 == 1 else 'entailment'}\n" for i in range(40)]
    path.write_text("index\tsentence1\tsentence2\tgold_label\n" + "".join(rows))
    assert len(load_examples("mnli", "train", data_dir=tmp_path, cap=30)) == 30
    good, bad, _ = CASES["snli"]
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: fixture("snli", (good + bad) * 10))
    assert len(load_examples("snli", "train", cap=20, max_unusable_share=0.5)) == 20


def test_a_reader_that_does_not_mark_its_rows_cannot_be_capped():
    tally = SkipTally()
    with collecting() as tally:
        with skip_unusable():
            pass
        tally.add("empty text", "row 2")
    assert tally.example_rows(1, "f") == [0]
    with pytest.raises(RuntimeError, match="f: the reader marked 2 rows but returned 3 examples"):
        tally.example_rows(3, "f")


# --- QA-SRL: an empty sentence is skipped and counted, local file or hub --------------------------------------


def qa_srl_gold(root: Path, sentences: dict[str, str]) -> Path:
    """A QA-SRL GS dev gold csv (one question per sentence) with its sentences csv."""
    (root / "qa_srl/qasrl-gs/sentences").mkdir(parents=True)
    (root / "qa_srl/qasrl-gs/gold").mkdir(parents=True)
    (root / "qa_srl/qasrl-gs/sentences/x.dev.full.csv").write_text(
        "qasrl_id,tokens\n" + "".join(f"{sid},{text}\n" for sid, text in sentences.items()))
    gold = root / "qa_srl/qasrl-gs/gold/x.dev.gold.csv"
    gold.write_text("qasrl_id,verb_idx,question,answer_range\n" + "".join(f"{sid},1,Who ran?,0:1\n" for sid in sentences))
    return gold


def test_qa_srl_local_empty_sentence_is_skipped_and_counted(tmp_path):
    gold = qa_srl_gold(tmp_path, {"s1": "Ann ran .", "s2": "", "s3": "Bob ran ."})
    examples = load_examples("qa_srl", "dev", data_dir=tmp_path, max_unusable_share=0.5)
    assert [e.context for e in examples] == ["Ann ran .", "Bob ran ."]
    assert data_source("qa_srl", "dev", tmp_path).endswith("skipped 1 of 3 rows: 1 empty text")
    with pytest.raises(DataError, match=rf"{re.escape(str(gold))}: row 2: empty sentence"):
        load_examples("qa_srl", "dev", data_dir=tmp_path)  # 1 of 3 is over the default 0.1 %


def test_qa_srl_bank_empty_sentence_is_skipped_and_counted(tmp_path):
    path = tmp_path / "qasrl-v2" / "orig" / "dev.jsonl.gz"
    path.parent.mkdir(parents=True)
    label = {"answerJudgments": [{"isValid": True, "spans": [[0, 1]]}]}
    lines = [{"sentenceId": sid, "sentenceTokens": tokens, "verbEntries": {"1": {"questionLabels": {"Who ran?": label}}}}
             for sid, tokens in (("s1", ["Ann", "ran", "."]), ("s2", []))]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(json.dumps(line) for line in lines) + "\n")
    assert [e.id for e in load_examples("qa_srl", "dev", data_dir=tmp_path, max_unusable_share=0.5)] == ["s1#1#Who ran?"]
    with pytest.raises(DataError, match="1 of 2 rows .* are unusable.*line 2 verb 1 question 'Who ran\\?': empty sentence"):
        load_examples("qa_srl", "dev", data_dir=tmp_path)


# --- the hub commit actually loaded ------------------------------------------------------------------------


SHA = "0123456789abcdef0123456789abcdef01234567"


def cached_hub_split(root: Path, rows: dict, commit: str) -> Dataset:
    """A Dataset read from an Arrow file where ``datasets`` caches a hub split loaded at ``commit``."""
    folder = root / "allenai___quac" / "plain_text" / "0.0.0" / commit
    folder.mkdir(parents=True)
    Dataset.from_dict(rows).save_to_disk(str(folder / "saved"))
    arrow = next((folder / "saved").glob("*.arrow"))
    arrow.rename(folder / "quac-validation.arrow")
    return Dataset.from_file(str(folder / "quac-validation.arrow"))


def test_the_hub_commit_loaded_is_recorded_outside_the_config(tmp_path, monkeypatch):
    """QuAC reads the moving refs/convert/parquet branch: the source names the commit it was read at."""
    from tests.data.test_sets_hub_shaped import quac_row

    monkeypatch.setattr(registry, "_HUB_COMMITS", {})
    row = quac_row()
    ds = cached_hub_split(tmp_path, {k: [row[k]] for k in row}, SHA)
    assert registry.loaded_commit(ds) == SHA
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: ds)
    before = data_source("quac", "dev")
    assert before.endswith("@refs/convert/parquet")
    assert len(load_examples("quac", "dev")) == 3
    assert data_source("quac", "dev") == f"{before} (loaded {SHA})"
    spec = get_dataset("quac")  # the same split from a spec that pins nothing
    unpinned = registry.DatasetSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__},
                                       "hub_revision": None, "hub_layout": "config"})
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "quac": unpinned})
    load_examples("quac", "dev")
    assert data_source("quac", "dev") == f"hub:allenai/quac[plain_text]:validation@main (not pinned; loaded {SHA})"


def test_a_pinned_commit_loaded_as_another_is_said_and_recorded(tmp_path, monkeypatch, caplog):
    """Offline, ``datasets`` reads the newest cached commit whatever the revision: the run config says so."""
    monkeypatch.setattr(registry, "_HUB_COMMITS", {})
    rows = {"premise": ["A man runs."], "hypothesis": ["A man moves."], "label": [0], "idx": [0]}
    ds = cached_hub_split(tmp_path, rows, SHA)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: ds)
    caplog.set_level("WARNING", logger="road_repro")
    load_examples("mnli", "dev")
    pinned = get_dataset("mnli").hub_revision
    assert data_source("mnli", "dev").endswith(f"@{pinned} (loaded {SHA})")
    assert [r.getMessage() for r in caplog.records if "pinned at" in r.getMessage()] == [
        f"dataset mnli split dev: hub nyu-mll/glue is pinned at {pinned} but was loaded at {SHA} (an offline cache "
        "of another commit?)"]


def test_a_dataset_without_a_cache_folder_has_no_commit():
    assert registry.loaded_commit(Dataset.from_dict({"a": [1]})) is None


def test_every_hub_dataset_is_pinned_to_a_commit_but_quac():
    """QuAC: no commit of its parquet export was found (docs/datasets.md says what was searched)."""
    from road_repro.data.registry import COMMIT_SHA, dataset_names

    unpinned = {n: get_dataset(n).hub_revision for n in dataset_names()
                if get_dataset(n).hub is not None and not COMMIT_SHA.fullmatch(get_dataset(n).hub_revision or "")}
    assert unpinned == {"quac": "refs/convert/parquet"}
