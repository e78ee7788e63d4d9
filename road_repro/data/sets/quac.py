"""QuAC (Choi et al., 2018): question answering in information-seeking dialogs, used as MRC
(Table 1: "MRC*", 83K).

Decisions: every dialog turn becomes one independent MRC example over the dialog's section text; the
dialog history is ignored (the paper's shared MRC head takes a question and a context, nothing more), so
questions that refer back to earlier turns ("what happened after that?") stay as asked. QuAC marks
unanswerable turns with the answer ``CANNOTANSWER``, a token appended to every context: it is removed
from the context and such turns become unanswerable (no answers), as in SQuAD 2.0. A turn is
unanswerable when its original answer (the teacher's, ``orig_answer``) is ``CANNOTANSWER``; otherwise its
answers are the original answer followed by the other annotators' spans (dev has several).

Hub: ``allenai/quac``, config ``plain_text``. Its main branch held a loading script, so the spec reads
the hub's parquet conversion (branch ``refs/convert/parquet``, ``hub_layout="parquet_export"``); no commit
of that branch was found to pin (docs/datasets.md), so the commit actually read is recorded in each run's
data source. Assumed row features (the former loading script, ``huggingface/datasets``
``datasets/quac/quac.py``; the same in the TFDS community catalog, ``huggingface:quac/plain_text``): one row per
dialog with ``dialogue_id``, ``wikipedia_page_title``, ``background``, ``section_title``, ``context``
(stripped, still ending in ``CANNOTANSWER``), ``turn_ids`` [str], ``questions`` [str], ``followups`` /
``yesnos`` [ClassLabel], ``answers`` {``texts``: [[str]], ``answer_starts``: [[int]]} (texts stripped),
``orig_answers`` {``texts``: [str], ``answer_starts``: [int]}. Splits: ``train``, ``validation``.

Local format: the official ``train_v0.2.json`` / ``val_v0.2.json`` (SQuAD-like ``data`` -> ``paragraphs``
-> ``qas`` with ``answers``, ``orig_answer``, ``followup``, ``yesno``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from road_repro.data.registry import DatasetSpec, register_dataset
from road_repro.data.schema import QAExample
from road_repro.data.sets.formats import answer_at, hub_row, is_int, read_json, str_list, typed, unique_answers
from road_repro.data.unusable import skip_unusable
from road_repro.errors import DataError

CANNOTANSWER = "CANNOTANSWER"
#: (text, character start) of one answer.
Span = tuple[str, int]


def strip_cannotanswer(context: str) -> str:
    """The context without QuAC's trailing ``CANNOTANSWER`` marker (and the whitespace before it)."""
    text = context.rstrip()
    return text[: -len(CANNOTANSWER)].rstrip() if text.endswith(CANNOTANSWER) else text


def turn_example(turn_id: str, question: str, orig: Span, others: Sequence[Span], context: str, title: str, where: str) -> QAExample:
    """One dialog turn as an MRC example over ``context`` (already without ``CANNOTANSWER``)."""
    if orig[0].strip() == CANNOTANSWER:
        answers: tuple = ()
    else:
        spans = [orig, *(s for s in others if s[0].strip() != CANNOTANSWER)]
        answers = unique_answers(answer_at(context, text, where, start) for text, start in spans)
    return QAExample(id=turn_id, context=context, question=question, answers=answers, title=title).validate(where)


def _span(obj: Any, where: str) -> Span:
    """``(text, answer_start)`` of an official answer object."""
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str) or not isinstance(obj.get("answer_start"), int):
        raise DataError(f"{where}: answer {obj!r} needs a string 'text' and an integer 'answer_start'")
    return obj["text"], obj["answer_start"]


def from_file(path: Path) -> list[QAExample]:
    """Read an official QuAC JSON file (one example per dialog turn, history ignored)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(f"{path}: expected an official QuAC JSON object with a 'data' list")
    out = []
    for s_i, section in enumerate(data["data"]):
        where_s = f"{path}: data[{s_i}]"
        section = typed(section, dict, "section", where_s)
        title = str(section.get("title", ""))
        for p_i, para in enumerate(typed(section.get("paragraphs", []), list, "paragraphs", where_s)):
            where_p = f"{where_s}.paragraphs[{p_i}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str):
                raise DataError(f"{where_p}: missing 'context' string")
            context = strip_cannotanswer(para["context"])
            for q_i, qa in enumerate(typed(para.get("qas", []), list, "qas", where_p)):
                where = f"{where_p}.qas[{q_i}]"
                if not isinstance(qa, dict) or "orig_answer" not in qa or not isinstance(qa.get("question"), str):
                    raise DataError(f"{where}: missing 'question' string or 'orig_answer'")
                others = [_span(a, where) for a in typed(qa.get("answers", []), list, "answers", where)]
                with skip_unusable():
                    out.append(turn_example(str(qa.get("id", f"{p_i}-{q_i}")), qa["question"], _span(qa["orig_answer"], where),
                                            others, context, title, where))
    return out


def _turn_spans(texts: Any, starts: Any, where: str) -> list[Span]:
    """``(text, start)`` pairs of one turn from parallel hub lists (strings and integers of one length)."""
    if not isinstance(starts, list) or len(str_list(texts, "answer texts", where)) != len(starts):
        raise DataError(f"{where}: answer texts {texts!r:.80} and answer_starts {starts!r:.80} are not parallel lists")
    if not all(is_int(s) for s in starts):
        raise DataError(f"{where}: answer_starts {starts!r:.80} should be integers")
    return list(zip(texts, starts))


def from_hub(records: Iterable[dict[str, Any]], where: str) -> list[QAExample]:
    """Convert ``allenai/quac`` dialog rows into one example per turn."""
    out = []
    for i, rec in enumerate(records):
        row_where = f"{where} row {hub_row(rec, i)}"
        try:
            context = strip_cannotanswer(typed(rec["context"], str, "context", row_where))
            turn_ids, questions = rec["turn_ids"], rec["questions"]
            orig_texts, orig_starts = rec["orig_answers"]["texts"], rec["orig_answers"]["answer_starts"]
            answers = rec["answers"]
            if isinstance(answers, list):  # datasets>=4 may present Sequence({texts, answer_starts}) per turn
                answers = {"texts": [a["texts"] for a in answers], "answer_starts": [a["answer_starts"] for a in answers]}
            texts, starts = answers["texts"], answers["answer_starts"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"{row_where}: not a QuAC hub row ({type(exc).__name__}: {exc})") from exc
        per_turn = (turn_ids, questions, orig_texts, orig_starts, texts, starts)
        if not all(isinstance(x, list) for x in per_turn) or len({len(x) for x in per_turn}) != 1:
            raise DataError(f"{row_where}: per-turn fields are not lists of one length")
        str_list(turn_ids, "turn_ids", row_where)
        str_list(questions, "questions", row_where)
        title = str(rec.get("wikipedia_page_title", ""))
        for t in range(len(turn_ids)):
            turn_where = f"{row_where} turn {turn_ids[t]!r}"
            (orig,) = _turn_spans([orig_texts[t]], [orig_starts[t]], turn_where)
            others = _turn_spans(texts[t], starts[t], turn_where)
            with skip_unusable():
                out.append(turn_example(turn_ids[t], questions[t], orig, others, context, title, turn_where))
    return out


SPEC = register_dataset(
    DatasetSpec(
        name="quac",
        task="mrc",
        hub=("allenai/quac", "plain_text"),
        hub_revision="refs/convert/parquet",  # no commit of it found: docs/datasets.md
        hub_layout="parquet_export",
        hub_splits={"train": "train", "dev": "validation"},
        local={
            "train": ("quac/train_v0.2.json", "train_v0.2.json"),
            "dev": ("quac/val_v0.2.json", "val_v0.2.json"),
        },
        from_hub=from_hub,
        from_file=from_file,
        licence="CC BY-SA 4.0 (quac.ai; the hub card says MIT)",
        size="83,568 train / 7,354 dev questions in 11,567 / 1,000 dialogs (Table 1: 83K)",
        examples={"train": 83_568, "dev": 7_354},  # paper scale, for planning (DatasetSpec)
        context_tokens=397,  # QuAC paper: 396.8 tokens per section
        notes=(
            "Dialog history ignored (each turn is a standalone question); CANNOTANSWER removed from the context "
            "and such turns unanswerable. Not in shared data."
        ),
    )
)
