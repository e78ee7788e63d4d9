"""Local files: every file of the shared real data (counts from its SOURCES.md, labels cross-checked
against an independent pandas read), hand-made files in the other original formats, and bad input
raising DataError that names the file and the row."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from road_repro.data.registry import load_examples
from road_repro.data.schema import LABELS, Answer
from road_repro.data.sets import amazon, mnli, natural_questions, newsqa, qa_srl, qa_zre, qqp, quac, snli, squad_v2, triviaqa
from road_repro.errors import DataError

NLI = LABELS["nli"]


def nli_counts(examples) -> tuple[int, int, int]:
    """(entailment, neutral, contradiction) counts."""
    c = Counter(NLI[e.label] for e in examples)
    return c["entailment"], c["neutral"], c["contradiction"]


# --- shared real data ---------------------------------------------------------------------------------


def test_mnli_dev_matched_counts_and_known_labels(shared_data):
    examples = mnli.from_file(shared_data / "mnli/dev_matched.jsonl")
    assert len(examples) == 9815 and nli_counts(examples) == (3479, 3123, 3213)
    # the first two GLUE dev_matched pairs: neutral, then contradiction (fails if the label order is mixed up)
    assert examples[0].text_a == "The new rights are nice enough" and NLI[examples[0].label] == "neutral"
    assert examples[1].text_b.startswith("The Government Executive articles") and NLI[examples[1].label] == "contradiction"


@pytest.mark.parametrize("split, n, counts", [("train", 8999, (3061, 2980, 2958)), ("dev", 1000, (347, 333, 320))])
def test_mnli_glue_pretrain_json(shared_data, split, n, counts):
    examples = mnli.from_file(shared_data / f"mnli/glue_pretrain_subset/{split}.json")
    assert len(examples) == n and nli_counts(examples) == counts


@pytest.mark.parametrize(
    "module, rel, label_column, names",
    [
        (mnli, "mnli/k-shot_16-42_glue_format/train.tsv", "gold_label", None),
        (mnli, "mnli/k-shot_16-42_glue_format/dev_matched.tsv", "gold_label", None),
        (qqp, "qqp/k-shot_16-42_glue_format/train.tsv", "is_duplicate", ("not_duplicate", "duplicate")),
        (qqp, "qqp/k-shot_16-42_glue_format/dev.tsv", "is_duplicate", ("not_duplicate", "duplicate")),
    ],
)
def test_glue_tsv_labels_match_an_independent_read(shared_data, module, rel, label_column, names):
    frame = pd.read_csv(shared_data / rel, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    examples = module.from_file(shared_data / rel)
    assert len(examples) == len(frame) == (48 if module is mnli else 32)
    task = "nli" if module is mnli else "paraphrase"
    expected = [names[int(v)] if names else v for v in frame[label_column]]
    assert [LABELS[task][e.label] for e in examples] == expected
    first_text = "sentence1" if module is mnli else "question1"
    assert [e.text_a for e in examples] == list(frame[first_text])


@pytest.mark.parametrize("split, n, counts", [("train", 8999, (5747, 3252)), ("dev", 1000, (623, 377))])
def test_qqp_glue_pretrain_json(shared_data, split, n, counts):
    examples = qqp.from_file(shared_data / f"qqp/glue_pretrain_subset/{split}.json")
    c = Counter(e.label for e in examples)
    assert len(examples) == n and (c[0], c[1]) == counts


def test_snli_dev_in_two_formats_agree(shared_data):
    derived = snli.from_file(shared_data / "snli/dev.jsonl")
    senteval = snli.from_file(shared_data / "snli/esnli_senteval_format/s1.dev")
    assert len(derived) == len(senteval) == 9842 and nli_counts(derived) == (3329, 3235, 3278)
    assert [e.label for e in derived] == [e.label for e in senteval]
    assert len(snli.from_file(shared_data / "snli/esnli_senteval_format/s1.test")) == 9824


@pytest.mark.parametrize("split, lines, no_gold", [("dev", 1289, 16), ("test", 1277, 23)])
def test_snli_original_jsonl_drops_no_gold_pairs(shared_data, split, lines, no_gold):
    examples = snli.from_file(shared_data / f"snli/snli_1.0_subset/snli_1.0_{split}.jsonl")
    assert len(examples) == lines - no_gold


def test_amazon_alexa_tsv(shared_data):
    path = shared_data / "amazon_reviews/amazon_alexa.tsv"
    frame = pd.read_csv(path, sep="\t", encoding="utf-8-sig", dtype={"rating": int}, keep_default_na=False)
    assert len(frame) == 3150 and (frame["rating"] == 5).sum() == 2286
    kept = frame[frame["verified_reviews"].str.strip() != ""]
    examples = amazon.from_file(path)
    assert len(examples) == len(kept) == 3150 - 79
    assert [e.label for e in examples] == list(kept["rating"] - 1)
    assert [e.text_a for e in examples] == list(kept["verified_reviews"])
    quoted = [e.text_a for e in examples if '"' in e.text_a]  # CSV-quoted reviews with "" escapes
    assert len(quoted) == 18 and not any(t.startswith('"') and t.endswith('"') for t in quoted)


@pytest.mark.parametrize("domain, split, rows", [("wikinews", "dev", 3714), ("wikipedia", "dev", 3474), ("wikinews", "test", 3623), ("wikipedia", "test", 3479)])
def test_qa_srl_gold_csv(shared_data, domain, split, rows):
    examples = qa_srl.from_file(shared_data / f"qa_srl/qasrl-gs/gold/{domain}.{split}.gold.csv")
    assert len(examples) == rows
    first = examples[0]
    if (domain, split) == ("wikinews", "dev"):
        # row 1: "How long is something being suspended?" -> tokens 4:6 of the sentence
        assert first.context == "Searches are presently suspended until morning ."
        assert first.answers == (Answer("until morning", 33),)
    assert sum(len(e.answers) > 1 for e in examples) > 0  # "~!~"-joined multi-span answers


def test_nq_open(shared_data):
    questions = natural_questions.read_nq_open(shared_data / "nq_open/NQ-open.dev.jsonl")
    assert len(questions) == 3610
    assert questions[0].question == "when was the last time anyone was on the moon"
    assert questions[0].answers == ("14 December 1972 UTC", "December 1972")


def test_newsqa_mrqa_sample(shared_data):
    examples = newsqa.SPEC.from_file(shared_data / "mrqa/samples/NewsQA_sample.jsonl")
    assert len(examples) == 17 and all(not e.is_impossible for e in examples)


def test_mrqa_gzip_file_through_a_registered_reader(shared_data):
    """The MRQA reader shared by TriviaQA/NQ/NewsQA/QA-ZRE, on the official MRQA SQuAD dev file."""
    assert len(triviaqa.SPEC.from_file(shared_data / "mrqa/dev/SQuAD.jsonl.gz")) == 10507


def test_triviaqa_official_sample(shared_data):
    path = shared_data / "triviaqa/triviaqa_sample.json"
    (q,) = triviaqa.read_triviaqa_questions(path)
    assert q.id == "tc_33" and q.answers[0] == "Sunset Boulevard" and "Sunset Blvd." in q.answers
    with pytest.raises(DataError, match="evidence file .*Andrew_Lloyd_Webber.txt not found"):
        triviaqa.from_file(path)


@pytest.mark.parametrize(
    "name, split, n",
    [
        ("squad_v2", "dev", 11873), ("squad_v2", "train", 4719), ("mnli", "dev", 9815), ("mnli", "train", 8999),
        ("snli", "dev", 9842), ("snli", "test", 9824), ("qqp", "train", 8999), ("qqp", "dev", 1000),
        ("amazon", "dev", 3071), ("qa_srl", "dev", 3714 + 3474), ("qa_srl", "test", 3623 + 3479),
    ],
)  # fmt: skip
def test_registry_reads_the_shared_layout(shared_data, name, split, n):
    assert len(load_examples(name, split, data_dir=shared_data)) == n


def test_squad_dev_answerable_split(shared_data):
    examples = load_examples("squad_v2", "dev", data_dir=shared_data)
    assert sum(e.is_impossible for e in examples) == 5945


# --- other original formats, hand-made ----------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_glue_mnli_tsv_by_header_name_with_quotes(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label"
    rows = ['0\t1\t1n\tfiction\tHe said "hi.\tHe spoke.\tentailment\tentailment',
            "1\t2\t2c\tfiction\tIt rains.\tIt is dry.\tcontradiction\tcontradiction"]
    examples = mnli.from_file(write(tmp_path / "MNLI/dev_matched.tsv", "\n".join([header, *rows]) + "\n"))
    assert [(e.text_a, NLI[e.label]) for e in examples] == [('He said "hi.', "entailment"), ("It rains.", "contradiction")]


def test_snli_txt_release(tmp_path):
    text = "gold_label\tsentence1_parse\tsentence1\tsentence2\n-\t(X)\tA b.\tC d.\nneutral\t(X)\tA dog runs.\tA dog plays.\n"
    (ex,) = snli.from_file(write(tmp_path / "snli_1.0/snli_1.0_dev.txt", text))
    assert NLI[ex.label] == "neutral" and ex.text_b == "A dog plays."


def test_amazon_json_lines_layouts(tmp_path):
    marc = [{"stars": 2, "review_body": "Broke fast.", "review_title": "Meh"}, {"stars": 5, "review_body": "", "review_title": ""}]
    y2018 = [{"overall": 4.0, "reviewText": "Good value.", "summary": "Nice"}]
    a = amazon.from_file(write(tmp_path / "dataset_en_dev.json", "\n".join(json.dumps(r) for r in marc)))
    path = tmp_path / "Books_5.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(y2018[0]) + "\n")
    b = amazon.from_file(path)
    assert [(e.text_a, e.label) for e in a] == [("Meh\nBroke fast.", 1)]  # the blank review is skipped
    assert [(e.text_a, e.label) for e in b] == [("Nice\nGood value.", 3)]


def test_quac_official_json(tmp_path):
    context = "He was born in Ohio. He moved to Texas. CANNOTANSWER"
    qas = [
        {"id": "d#0", "question": "Where was he born?", "followup": "y", "yesno": "x",
         "orig_answer": {"text": "in Ohio", "answer_start": 12}, "answers": [{"text": "Ohio", "answer_start": 15}]},
        {"id": "d#1", "question": "Did he marry?", "followup": "n", "yesno": "x",
         "orig_answer": {"text": "CANNOTANSWER", "answer_start": 40}, "answers": [{"text": "CANNOTANSWER", "answer_start": 40}]},
    ]
    data = {"data": [{"title": "Bio", "section_title": "Life", "background": "b", "paragraphs": [{"id": "d", "context": context, "qas": qas}]}]}
    first, second = quac.from_file(write(tmp_path / "val_v0.2.json", json.dumps(data)))
    assert first.context == "He was born in Ohio. He moved to Texas."
    assert first.answers == (Answer("in Ohio", 12), Answer("Ohio", 15))
    assert second.is_impossible and second.title == "Bio"


def test_qa_zre_relation_splits_tsv(tmp_path):
    lines = ["educated at\tWhere did XXX study?\tAda\tAda studied at home .\thome",
             "spouse\tWho is XXX married to?\tAda\tAda studied at home ."]
    pos, neg = qa_zre.from_file(write(tmp_path / "relation_splits/dev.0", "\n".join(lines) + "\n"))
    assert pos.question == "Where did Ada study?" and pos.answers == (Answer("home", 15),)
    assert neg.is_impossible


def test_qa_srl_bank_jsonl(tmp_path):
    judgment = {"sourceId": "w1", "isValid": True, "spans": [[0, 2]]}
    labels = {
        "Who ate something?": {"questionString": "Who ate something?", "answerJudgments": [judgment, judgment, {"sourceId": "w3", "isValid": False}]},
        "What did someone eat?": {"questionString": "What did someone eat?", "answerJudgments": [judgment, {"sourceId": "w2", "isValid": False}]},
    }
    rec = {"sentenceId": "s1", "sentenceTokens": ["The", "cat", "ate", "fish", "."], "verbEntries": {"2": {"verbIndex": 2, "questionLabels": labels}}}
    path = tmp_path / "qasrl-v2/orig/dev.jsonl.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    (ex,) = qa_srl.from_file(path)  # the second question has no valid majority and is skipped
    assert ex.question == "Who ate something?" and ex.answers == (Answer("The cat", 0),)


def test_triviaqa_official_json_with_evidence(tmp_path):
    item = {"QuestionId": "q1", "Question": "Which city?", "Answer": {"Value": "Paris", "Aliases": ["Paris", "City of Light"]},
            "EntityPages": [{"Filename": "France.txt"}], "SearchResults": [{"Filename": "1/1_2.txt"}, {"Filename": "1/none.txt"}]}
    path = write(tmp_path / "qa/web-dev.json", json.dumps({"Data": [item], "Domain": "Web"}))
    write(tmp_path / "evidence/wikipedia/France.txt", "Its capital is Paris, the City of Light.")
    write(tmp_path / "evidence/web/1/1_2.txt", "Paris is big.")
    write(tmp_path / "evidence/web/1/none.txt", "No answer here.")
    a, b = triviaqa.from_file(path)
    assert a.id == "q1--France.txt" and a.answers == (Answer("Paris", 15), Answer("City of Light", 26))
    assert b.answers == (Answer("Paris", 0),)


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("dev.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{"premise": "a", "hypothesis": "b", "label": "maybe"}\n',
         r"dev.jsonl: line 2: label 'maybe' is not one of nli labels"),
        ("dev.jsonl", '{"premise": "", "hypothesis": "b", "label": "neutral"}\n', r"dev.jsonl: line 1: .*empty or missing first text"),
        ("dev.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{oops\n', r"dev.jsonl: line 2: invalid JSON"),
        ("dev.tsv", "sentence1\tsentence2\nA\tB\n", r"dev.tsv: header: none of the expected field sets"),
        ("dev.tsv", "sentence1\tsentence2\tgold_label\nA\tB\tneutral\nA\tB\n", r"dev.tsv: row 2 \(line 3\) has 2 fields, the header has 3"),
        ("dev.json", '{"0": {"text_a": "a", "text_b": "b", "label": 7}}', r"dev.json: entry '0': label 7 is not one of nli labels"),
    ],
)  # fmt: skip
def test_bad_nli_files(tmp_path, name, text, message):
    with pytest.raises(DataError, match=message):
        mnli.from_file(write(tmp_path / name, text))


def test_missing_file_and_senteval_mismatch(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        snli.from_file(tmp_path / "nope.jsonl")
    write(tmp_path / "s1.dev", "a\nb\n")
    write(tmp_path / "s2.dev", "c\nd\n")
    write(tmp_path / "labels.dev", "neutral\n")
    with pytest.raises(DataError, match=r"s1.dev: s1/s2/labels files have different line counts \[2, 2, 1\]"):
        snli.from_file(tmp_path / "s1.dev")


@pytest.mark.parametrize(
    "text, message",
    [
        ("rating\tverified_reviews\n6\tToo good\n", r"alexa.tsv: row 1: rating '6' is not a whole number of stars"),
        ("rating\tverified_reviews\n\tNo rating\n", r"alexa.tsv: row 1: rating '' is not a number"),
        ("rating\treview\n5\tGood\n", r"alexa.tsv: missing column\(s\) \['verified_reviews'\]"),
    ],
)
def test_bad_amazon_rows(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        amazon.from_file(write(tmp_path / "alexa.tsv", text))


def test_bad_qa_srl_range_names_the_row(tmp_path):
    write(tmp_path / "sentences/x.dev.full.csv", "qasrl_id,tokens,sentence\ns1,A cat ran .,A cat ran .\n")
    gold = write(tmp_path / "gold/x.dev.gold.csv", "qasrl_id,verb_idx,question,answer_range\ns1,2,Who ran?,0:2\ns1,2,Where did someone run?,3:9\n")
    with pytest.raises(DataError, match=r"x.dev.gold.csv: row 2: token range 3:9 is outside a sentence of 4 tokens"):
        qa_srl.from_file(gold)
    (tmp_path / "sentences/x.dev.full.csv").unlink()
    with pytest.raises(DataError, match="its sentences file .*x.dev.full.csv .*not found"):
        qa_srl.from_file(gold)


def test_squad_module_uses_the_official_reader(tmp_path):
    with pytest.raises(DataError, match="missing.json"):
        squad_v2.SPEC.from_file(tmp_path / "missing.json")
