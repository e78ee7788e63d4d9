"""Every dataset's ``from_hub`` on hand-made records shaped exactly like the hub rows it assumes (the hub
is unreachable here): label mapping through the hub's ClassLabel names, span conventions, unanswerable
questions, and bad rows raising DataError that names the row."""

from __future__ import annotations

import pytest

from road_repro.data.registry import ROW_KEY, get_dataset
from road_repro.data.schema import LABELS, Answer
from road_repro.data.sets import amazon, mnli, natural_questions, newsqa, qa_srl, qa_zre, qqp, quac, snli, triviaqa
from road_repro.data.sets.formats import hub_label
from road_repro.data.squad_v2 import from_hub_records as squad_from_hub
from road_repro.errors import DataError

NLI = LABELS["nli"]
PARA = LABELS["paraphrase"]

# GLUE MNLI validation_matched row 0 (its well-known first dev pair); hub label 1 = "neutral".
MNLI_ROW = {"premise": "The new rights are nice enough", "hypothesis": "Everyone really likes the newest benefits ",
            "label": 1, "idx": 0}

MRQA_CONTEXT = "Super Bowl 50 was won by the Denver Broncos, who beat the Carolina Panthers 24-10."


def mrqa_row(subset: str, qid: str, start: int, end_inclusive: int, text: str) -> dict:
    """One ``mrqa-workshop/mrqa`` row (nested sequences in the Arrow dict-of-lists layout)."""
    return {
        "subset": subset,
        "context": MRQA_CONTEXT,
        "context_tokens": {"tokens": MRQA_CONTEXT.split(), "offsets": [0] * len(MRQA_CONTEXT.split())},
        "qid": qid,
        "question": "Who won Super Bowl 50?",
        "question_tokens": {"tokens": ["Who", "won", "Super", "Bowl", "50", "?"], "offsets": [0, 4, 8, 14, 19, 21]},
        "detected_answers": {
            "text": [text],
            "char_spans": [{"start": [start], "end": [end_inclusive]}],
            "token_spans": [{"start": [6], "end": [8]}],
        },
        "answers": [text],
    }


BRONCOS = MRQA_CONTEXT.index("the Denver Broncos")

QUAC_CONTEXT = "Daffy Duck first appeared in 1937. He was created by Tex Avery at Warner Bros. CANNOTANSWER"


def quac_row() -> dict:
    """One ``allenai/quac`` dialog row with an answerable, a multi-reference and an unanswerable turn."""
    c = QUAC_CONTEXT
    return {
        "dialogue_id": "C_1_0",
        "wikipedia_page_title": "Daffy Duck",
        "background": "Daffy Duck is a cartoon character.",
        "section_title": "Origin",
        "context": c,
        "turn_ids": ["C_1_0_q#0", "C_1_0_q#1", "C_1_0_q#2"],
        "questions": ["When did Daffy first appear?", "Who created him?", "What was his salary?"],
        "followups": [0, 0, 1],
        "yesnos": [2, 2, 2],
        "answers": {
            "texts": [["in 1937"], ["Tex Avery", "by Tex Avery"], ["CANNOTANSWER"]],
            "answer_starts": [[c.index("in 1937")], [c.index("Tex Avery"), c.index("by Tex")], [c.index("CANNOTANSWER")]],
        },
        "orig_answers": {
            "texts": ["in 1937", "Tex Avery", "CANNOTANSWER"],
            "answer_starts": [c.index("in 1937"), c.index("Tex Avery"), c.index("CANNOTANSWER")],
        },
    }


QA_SRL_ROW = {
    "sentence": "Searches are presently suspended until morning .",
    "sent_id": "Wiki1k:wikinews:1823406:3:4",
    "predicate_idx": 3,
    "predicate": "suspended",
    "is_verbal": True,
    "verb_form": "suspend",
    "question": ["how long", "is", "something", "being suspended", "_", "_", "_", "?"],
    "answers": ["until morning"],
    "answer_ranges": [[4, 6]],
}

QA_ZRE_ROW = {
    "relation": "educated at",
    "question": "Where was XXX educated?",
    "subject": "Ada Lovelace",
    "context": "Ada Lovelace was educated at home by private tutors .",
    "answers": ["home"],
}

SQUAD_CONTEXT = "The Normans gave their name to Normandy, a region in France."

#: Hand-made rows per registered hub dataset, shaped like the hub features each module documents.
HUB_ROWS: dict[str, list[dict]] = {
    "mnli": [MNLI_ROW],
    "snli": [{"premise": "Two women are embracing.", "hypothesis": "Two woman are holding packages.", "label": 0}],
    "qqp": [{"question1": "How do I learn Python?", "question2": "How can I study Python?", "label": 1, "idx": 7}],
    "amazon": [{"text": "Works great, love it.", "label": 4}],
    "squad_v2": [
        {"id": "q1", "title": "Normans", "context": SQUAD_CONTEXT, "question": "Where is Normandy?",
         "answers": {"text": ["France"], "answer_start": [SQUAD_CONTEXT.index("France")]}},
        {"id": "q2", "title": "Normans", "context": SQUAD_CONTEXT, "question": "Who named Brittany?",
         "answers": {"text": [], "answer_start": []}},
    ],
    "newsqa": [mrqa_row("NewsQA", "n1", BRONCOS, BRONCOS + 17, "the Denver Broncos")],
    "natural_questions": [mrqa_row("NaturalQuestionsShort", "nq1", BRONCOS, BRONCOS + 17, "the Denver Broncos")],
    "triviaqa": [mrqa_row("TriviaQA-web", "tq1", BRONCOS, BRONCOS + 17, "the Denver Broncos")],
    "quac": [quac_row()],
    "qa_srl": [QA_SRL_ROW],
    "qa_zre": [QA_ZRE_ROW],
}


# --- label mapping ------------------------------------------------------------------------------------


def test_mnli_known_dev_pair_gets_neutral():
    """GLUE validation_matched row 0 is neutral; a mixed-up label order would give another class."""
    (ex,) = mnli.from_hub([MNLI_ROW], "hub")
    assert NLI[ex.label] == "neutral" and ex.label == 1
    assert ex.text_a == MNLI_ROW["premise"] and ex.text_b == MNLI_ROW["hypothesis"] and ex.id == "0"


@pytest.mark.parametrize("module", [mnli, snli])
@pytest.mark.parametrize("hub_id, name", [(0, "entailment"), (1, "neutral"), (2, "contradiction")])
def test_nli_hub_labels_follow_classlabel_names(module, hub_id, name):
    (ex,) = module.from_hub([{**MNLI_ROW, "label": hub_id}], "hub")
    assert NLI[ex.label] == name


def test_hub_label_maps_by_name_when_the_hub_order_differs():
    """A hub with another ClassLabel order is mapped by name, not by position."""
    other_order = ("contradiction", "entailment", "neutral")
    assert [hub_label("nli", i, other_order, "w") for i in range(3)] == [2, 0, 1]
    assert hub_label("paraphrase", 0, ("duplicate", "not_duplicate"), "w") == PARA.index("duplicate")


def test_no_gold_label_rows_are_dropped():
    rows = [{**MNLI_ROW, "label": -1}, {**MNLI_ROW, "label": 2}]
    assert [NLI[e.label] for e in snli.from_hub(rows, "hub")] == ["contradiction"]


def test_qqp_labels():
    rows = [{"question1": "a?", "question2": "b?", "label": 0, "idx": 1}, {"question1": "a?", "question2": "a ?", "label": 1, "idx": 2}]
    assert [PARA[e.label] for e in qqp.from_hub(rows, "hub")] == ["not_duplicate", "duplicate"]


def test_amazon_hub_label_is_stars_minus_one():
    rows = [{"text": f"review {k}", "label": k} for k in range(5)]
    assert [LABELS["sentiment"][e.label] for e in amazon.from_hub(rows, "hub")] == ["1", "2", "3", "4", "5"]


# --- MRC rows -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("module, subset", [(newsqa, "NewsQA"), (natural_questions, "NaturalQuestionsShort"), (triviaqa, "TriviaQA-web")])
def test_mrqa_rows_are_filtered_by_subset_and_spans_are_inclusive(module, subset):
    rows = [mrqa_row("SQuAD", "s1", 0, 9, "Super Bowl"), mrqa_row(subset, "x1", BRONCOS + 4, BRONCOS + 17, "the Denver Broncos")]
    (ex,) = module.from_hub(rows, "hub")
    # the span (inclusive end) wins over MRQA's "text", which here carries an extra leading article
    assert ex.id == "x1" and ex.answers == (Answer("Denver Broncos", BRONCOS + 4),)


def test_mrqa_span_outside_context_names_the_row():
    bad = {**mrqa_row("NewsQA", "n9", 5, 500, "x"), ROW_KEY: 41}
    with pytest.raises(DataError, match="row 41.*outside"):
        newsqa.from_hub([bad], "hub")


def test_quac_turns_history_ignored_and_cannotanswer_removed():
    examples = quac.from_hub([quac_row()], "hub")
    assert [e.id for e in examples] == ["C_1_0_q#0", "C_1_0_q#1", "C_1_0_q#2"]
    assert all("CANNOTANSWER" not in e.context for e in examples)
    assert examples[0].context == "Daffy Duck first appeared in 1937. He was created by Tex Avery at Warner Bros."
    assert examples[1].question == "Who created him?"  # as asked, without the dialog history
    assert [a.text for a in examples[1].answers] == ["Tex Avery", "by Tex Avery"]
    assert examples[2].is_impossible


def test_quac_stripped_answer_text_is_realigned():
    """The hub strips answer texts but keeps their offsets: the nearest occurrence is used."""
    row = quac_row()
    start = QUAC_CONTEXT.index("Tex Avery")
    row["orig_answers"]["answer_starts"][1] = start - 1  # offset of " Tex Avery" before stripping
    assert quac.from_hub([row], "hub")[1].answers[0] == Answer("Tex Avery", start)


def test_quac_answer_missing_from_context_is_an_error():
    row = quac_row()
    row["orig_answers"]["texts"][0] = "in 1938"
    with pytest.raises(DataError, match="turn 'C_1_0_q#0'.*1938"):
        quac.from_hub([row], "hub")


def test_qa_srl_slots_and_end_convention():
    (ex,) = qa_srl.from_hub([QA_SRL_ROW], "hub")
    assert ex.question == "how long is something being suspended?"
    assert ex.answers == (Answer("until morning", QA_SRL_ROW["sentence"].index("until")),)
    inclusive = {**QA_SRL_ROW, "answer_ranges": [[4, 5]]}
    assert qa_srl.from_hub([inclusive], "hub")[0].answers == ex.answers


def test_qa_srl_rows_without_answers_are_skipped_and_mismatches_fail():
    assert qa_srl.from_hub([{**QA_SRL_ROW, "answers": [], "answer_ranges": []}], "hub") == []
    with pytest.raises(DataError, match="row 0.*matches neither"):
        qa_srl.from_hub([{**QA_SRL_ROW, "answer_ranges": [[1, 3]]}], "hub")


def test_qa_zre_template_filled_and_negatives_unanswerable():
    pos, neg = qa_zre.from_hub([QA_ZRE_ROW, {**QA_ZRE_ROW, "answers": []}], "hub")
    assert pos.question == "Where was Ada Lovelace educated?"
    assert pos.answers == (Answer("home", QA_ZRE_ROW["context"].index("home")),)
    assert neg.is_impossible and pos.id != neg.id
    with pytest.raises(DataError, match="row 0.*'Cambridge' does not occur"):
        qa_zre.from_hub([{**QA_ZRE_ROW, "answers": ["Cambridge"]}], "hub")


def test_squad_rows_use_the_official_converter():
    assert get_dataset("squad_v2").from_hub is squad_from_hub
    answerable, impossible = squad_from_hub(HUB_ROWS["squad_v2"], "hub")
    assert answerable.answers == (Answer("France", SQUAD_CONTEXT.index("France")),) and impossible.is_impossible


# --- bad classification rows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row, message",
    [
        ({**MNLI_ROW, "label": 3}, "row 5: hub label 3 is outside"),
        ({**MNLI_ROW, "premise": "  "}, "row 5: example '0' has an empty or missing first text"),
        ({"premise": "p", "label": 0}, "row 5: missing field"),
        ({**MNLI_ROW, "label": "neutral"}, "row 5: hub label 'neutral' is not an integer"),
    ],
)
def test_bad_hub_rows_raise_naming_the_row(row, message):
    with pytest.raises(DataError, match=message):
        mnli.from_hub([{**row, ROW_KEY: 5}], "hub nyu-mll/glue")


def test_amazon_non_integer_label_fails():
    with pytest.raises(DataError, match="row 0: label '5' is not an integer"):
        amazon.from_hub([{"text": "fine", "label": "5"}], "hub")
