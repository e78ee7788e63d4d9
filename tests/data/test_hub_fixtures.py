"""Every registered hub dataset loaded through :func:`load_examples` (test_sets_hub_shaped.py calls the
converters directly on plain dicts) from a fixture with the hub's exact features (column names, dtypes, ClassLabel names; docs/datasets.md says where each was checked), built
with ``datasets.Dataset.from_dict`` and served in place of ``datasets.load_dataset``, with the rows real
releases are known to contain: skipped, counted, said once and recorded in the split's provenance."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from road_repro.data import registry
from road_repro.data.registry import data_source, dataset_names, get_dataset, load_examples
from road_repro.data.schema import LABELS
from road_repro.errors import DataError
from tests.data.test_sets_hub_shaped import QA_SRL_ROW, QA_ZRE_ROW  # the converters' own hub-shaped rows

S, I32 = Value("string"), Value("int32")
NLI_LABEL = ClassLabel(names=["entailment", "neutral", "contradiction"])
SPANS = Sequence({"start": I32, "end": I32})
TOKENS = Sequence({"tokens": S, "offsets": I32})

#: The hub's features per dataset (the fixture must carry them exactly, so a mapping that relies on another
#: layout fails here).
FEATURES: dict[str, Features] = {
    "qqp": Features({"question1": S, "question2": S, "label": ClassLabel(names=["not_duplicate", "duplicate"]), "idx": I32}),
    "mnli": Features({"premise": S, "hypothesis": S, "label": NLI_LABEL, "idx": I32}),
    "snli": Features({"premise": S, "hypothesis": S, "label": NLI_LABEL}),
    "amazon": Features({"text": S, "label": Value("int64")}),  # the dataset card's en config: no id column
    "squad_v2": Features({"id": S, "title": S, "context": S, "question": S,
                          "answers": Sequence({"text": S, "answer_start": I32})}),
    "qa_zre": Features({"relation": S, "question": S, "subject": S, "context": S, "answers": Sequence(S)}),
    "qa_srl": Features({"sentence": S, "sent_id": S, "predicate_idx": I32, "predicate": S, "is_verbal": Value("bool"),
                        "verb_form": S, "question": Sequence(S), "answers": Sequence(S),
                        "answer_ranges": Sequence(Sequence(I32))}),
    "quac": Features({"dialogue_id": S, "wikipedia_page_title": S, "background": S, "section_title": S, "context": S,
                      "turn_ids": Sequence(S), "questions": Sequence(S),
                      "followups": Sequence(ClassLabel(names=["y", "n", "m"])),
                      "yesnos": Sequence(ClassLabel(names=["y", "n", "x"])),
                      "answers": Sequence({"texts": Sequence(S), "answer_starts": Sequence(I32)}),
                      "orig_answers": {"texts": Sequence(S), "answer_starts": Sequence(I32)}}),
}
MRQA = Features({"subset": S, "context": S, "context_tokens": TOKENS, "qid": S, "question": S,
                 "question_tokens": TOKENS,
                 "detected_answers": Sequence({"text": S, "char_spans": SPANS, "token_spans": SPANS}),
                 "answers": Sequence(S)})
MRQA_SUBSETS = {"triviaqa": "TriviaQA-web", "natural_questions": "NaturalQuestionsShort", "newsqa": "NewsQA"}

CTX = "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers 24-10."
QUAC_CTX = "Daffy Duck first appeared in 1937. He was created by Tex Avery. CANNOTANSWER"


def mrqa(subset: str, qid: str, question: str = "Who won Super Bowl 50?") -> dict:
    start = CTX.index("Denver Broncos")
    return {"subset": subset, "context": CTX, "context_tokens": {"tokens": ["Super"], "offsets": [0]}, "qid": qid,
            "question": question, "question_tokens": {"tokens": ["Who"], "offsets": [0]},
            "detected_answers": {"text": ["Denver Broncos"], "char_spans": [{"start": [start], "end": [start + 13]}],
                                 "token_spans": [{"start": [6], "end": [7]}]},
            "answers": ["Denver Broncos"]}


def quac_row(dialog: str, second_question: str) -> dict:
    c = QUAC_CTX
    return {"dialogue_id": dialog, "wikipedia_page_title": "Daffy Duck", "background": "A duck.", "section_title": "Origin",
            "context": c, "turn_ids": [f"{dialog}#0", f"{dialog}#1"], "questions": ["When?", second_question],
            "followups": [0, 1], "yesnos": [2, 2],
            # datasets>=4 reads Sequence({texts: Sequence, answer_starts: Sequence}) as one {texts, answer_starts} per turn
            "answers": [{"texts": ["in 1937"], "answer_starts": [c.index("in 1937")]},
                        {"texts": ["CANNOTANSWER"], "answer_starts": [c.index("CANNOTANSWER")]}],
            "orig_answers": {"texts": ["in 1937", "CANNOTANSWER"], "answer_starts": [c.index("in 1937"), c.index("CANNOTANSWER")]}}


def squad(qid: str, question: str) -> dict:
    return {"id": qid, "title": "NFL", "context": CTX, "question": question,
            "answers": {"text": ["Denver Broncos"], "answer_start": [CTX.index("Denver Broncos")]}}


def srl(sid: str, sentence: str) -> dict:
    return {**QA_SRL_ROW, "sent_id": sid, "sentence": sentence}


SENT = QA_SRL_ROW["sentence"]
ZRE = QA_ZRE_ROW

#: (good rows, bad rows, what the bad rows are): the bad rows are those real releases are known to contain.
CASES: dict[str, tuple[list[dict], list[dict], str]] = {
    "qqp": ([{"question1": "How do I learn Python?", "question2": "How can I study Python?", "label": 1, "idx": 0},
             {"question1": "Is it cold?", "question2": "Is it hot?", "label": 0, "idx": 1}],
            [{"question1": "How can I develop android app?", "question2": "", "label": 0, "idx": 2}],  # GLUE QQP train
            "1 empty text"),
    "mnli": ([{"premise": "The cat sat.", "hypothesis": "A cat sat.", "label": 0, "idx": 0},
              {"premise": "It rained.", "hypothesis": "It was dry.", "label": 2, "idx": 1}],
             [{"premise": "No majority.", "hypothesis": "Annotators split.", "label": -1, "idx": 2}],
             "1 no gold label (label '-1')"),
    "snli": ([{"premise": "Two women are embracing.", "hypothesis": "Two women hug.", "label": 0},
              {"premise": "A man runs.", "hypothesis": "A man sleeps.", "label": 2}],
             [{"premise": "A dog.", "hypothesis": "An animal.", "label": -1}],  # 785 such pairs in SNLI train
             "1 no gold label (label '-1')"),
    "amazon": ([{"text": "Works great.", "label": 4}, {"text": "Broke at once.", "label": 0}],
               [{"text": "   ", "label": 2}], "1 empty text"),
    "squad_v2": ([squad("q1", "Who won Super Bowl 50?"), squad("q2", "Which team won?")], [squad("q3", " ")],
                 "1 empty question"),
    "qa_zre": ([ZRE, {**ZRE, "answers": []}], [{**ZRE, "answers": ["Cambridge"]}], "1 answer not in its context"),
    "qa_srl": ([srl("s1", SENT), srl("s2", SENT)], [srl("s3", "  ")], "1 empty text"),
    "quac": ([quac_row("C_1", "Did he marry?"), quac_row("C_2", "Was it popular?")], [quac_row("C_3", "")],
             "1 empty question"),
    **{name: ([mrqa(subset, f"{name}-1"), mrqa(subset, f"{name}-2"), mrqa("SQuAD", "other-subset")],
              [mrqa(subset, f"{name}-3", question="")], "1 empty question")
       for name, subset in MRQA_SUBSETS.items()},
}


def hub_datasets() -> list[str]:
    return [n for n in dataset_names() if get_dataset(n).hub is not None]


def test_every_registered_hub_dataset_has_a_fixture():
    assert sorted(hub_datasets()) == sorted(CASES)


def fixture(name: str, rows: list[dict]) -> Dataset:
    features = MRQA if name in MRQA_SUBSETS else FEATURES[name]
    return Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


@pytest.fixture
def serve(monkeypatch):
    """Serve a fixture as the hub and record each ``load_dataset`` call (id, args)."""
    calls = []

    def install(ds: Dataset) -> list:
        monkeypatch.delenv("ROAD_DATA_DIR", raising=False)
        monkeypatch.setattr(registry, "_SKIPPED", {})
        monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: calls.append((a, k)) or ds)
        return calls

    return install


@pytest.mark.parametrize("name", sorted(CASES))
def test_hub_fixture_loads_skipping_the_known_bad_rows(name, serve, caplog):
    good, bad, said = CASES[name]
    spec = get_dataset(name)
    calls = serve(fixture(name, good[:1] + bad + good[1:]))
    caplog.set_level("WARNING", logger="road_repro")
    examples = load_examples(name, "train", max_unusable_share=0.5)
    load_examples(name, "train", max_unusable_share=0.5)  # said once per split and process
    expected = {"quac": 5}.get(name, 2)  # QuAC: one example per dialog turn (the bad dialog keeps its good turn)
    assert len(examples) == expected, examples
    if spec.task != "mrc":
        assert all(0 <= e.label < len(LABELS[spec.task]) for e in examples)
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1 and said in lines[0], lines
    assert said in data_source(name, "train")  # recorded with the split's provenance
    assert f"@{spec.hub_revision or 'main (not pinned)'}" in data_source(name, "train")
    (args, kwargs), *_ = calls
    assert args[0] == spec.hub[0] and kwargs.get("revision") == spec.hub_revision


@pytest.mark.parametrize("name", ["qqp", "squad_v2", "quac", "qa_srl"])
def test_the_default_share_stops_naming_the_split_and_the_row(name, serve):
    good, bad, _ = CASES[name]
    serve(fixture(name, good + bad))
    with pytest.raises(DataError, match=rf"dataset '{name}' split 'train' \(hub:{get_dataset(name).hub[0]}.*are unusable, "
                                        r"more than the 0.1 % allowed.*first: hub .*row 2"):
        load_examples(name, "train")


def test_qqp_at_hub_scale_goes_on_under_the_share(serve):
    """One empty question2 in 2,000 rows (0.05 %) is skipped and the split loads."""
    good, bad, _ = CASES["qqp"]
    rows = [{**good[i % 2], "idx": i} for i in range(1999)] + bad
    serve(fixture("qqp", rows))
    assert len(load_examples("qqp", "train")) == 1999
    assert "skipped 1 of 2,000 rows: 1 empty text" in data_source("qqp", "train")


def test_every_label_minus_one_is_named_as_such(serve):
    """An unlabelled split (GLUE test: every label -1) stops the load, saying why."""
    _, bad, _ = CASES["mnli"]
    serve(fixture("mnli", bad * 3))
    with pytest.raises(DataError, match=r"no usable rows: every row has label '-1' \(no gold label, 3 rows\)"):
        load_examples("mnli", "train")


def test_a_wrong_classlabel_order_on_the_hub_is_an_error(serve):
    other = Features({**FEATURES["qqp"], "label": ClassLabel(names=["duplicate", "not_duplicate"])})
    good, _, _ = CASES["qqp"]
    serve(Dataset.from_dict({k: [r[k] for r in good] for k in other}, features=other))
    with pytest.raises(DataError, match="label names are"):
        load_examples("qqp", "train")


def many(name: str, n: int) -> list[dict]:
    """``n`` good rows of ``name`` with distinct ids (SQuAD and MRQA ids must be unique)."""
    good = [r for r in CASES[name][0] if r.get("subset", "") != "SQuAD"]
    out = []
    for i in range(n):
        row = dict(good[i % len(good)])
        for key in ("id", "qid", "dialogue_id", "sent_id"):
            if key in row:
                row[key] = f"{row[key]}-{i}"
        out.append(row)
    return out


def test_paper_profile_data_preflight_passes_on_hub_fixtures_and_reports_skips(monkeypatch, tmp_path):
    """Issue 17's "done when": the paper profile's preflight over every hub split, each replaced by a fixture
    of 1,000 good rows plus one known bad row, passes and records what it skipped."""
    from road_repro.config import load_profile
    from road_repro.experiments.preflight import Needs, data_problems
    from road_repro.experiments.context import mtl_task
    from road_repro.experiments.stages import Experiment

    by_hub: dict[tuple, Dataset] = {}
    for name in CASES:
        spec = get_dataset(name)
        rows = many(name, 1000) + CASES[name][1]
        if name in MRQA_SUBSETS:  # one hub dataset holds the three subsets
            rows = [r for other in MRQA_SUBSETS for r in many(other, 1000) + CASES[other][1]]
        by_hub[spec.hub] = fixture(name, rows)
    monkeypatch.delenv("ROAD_DATA_DIR", raising=False)
    monkeypatch.setattr(registry, "_SKIPPED", {})
    monkeypatch.setattr("datasets.load_dataset", lambda hub_id, config=None, **k: by_hub[(hub_id, config or k.get("data_dir"))])
    profile = load_profile("paper")
    exp = Experiment(profile, tmp_path / "runs", progress=False)
    needs = Needs(tasks=set(profile.tasks) | {mtl_task(n) for n in profile.mtl.datasets})
    assert data_problems(exp, needs) == []
    for name in ["qqp", "mnli", "snli", "amazon", "quac", "qa_zre", "qa_srl", "triviaqa", "natural_questions"]:
        assert "; skipped 1 of " in data_source(name, "train"), name
    assert "skipped 1 of 1,001 rows: 1 empty text" in data_source("qqp", "train")
