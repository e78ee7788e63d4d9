"""SQuAD 2.0 scoring, re-implemented to agree exactly with the official v2.0 evaluation script.

The official "Official evaluation script for SQuAD version 2.0" (Rajpurkar, Jia and Liang, 2018,
https://rajpurkar.github.io/SQuAD-explorer/) defines the numbers every SQuAD 2.0 paper reports,
ROaD's Tables 2-7 included. This module follows it function by function -- same names, same
arithmetic, same summation order, same output keys in the same order, values in percent -- so that
its output equals the official one to the last bit:

* answers are normalised (lower case, ASCII punctuation removed, articles a/an/the removed,
  whitespace collapsed) before exact match and bag-of-tokens F1;
* an unanswerable question's only gold answer is ``''``; F1 against an empty token list is 1 when
  both are empty and 0 otherwise;
* a question whose no-answer probability exceeds ``na_prob_thresh`` is scored as a "" prediction;
* with no-answer probabilities, ``best_exact``/``best_f1`` are the scores at the best threshold
  found by the official sweep (quirks included: ties in probability are split mid-group).

Where the official script crashes (``KeyError`` on a missing prediction or probability) this module
raises :class:`~road_repro.errors.DataError` naming the file or the missing ids before scoring.
The official precision-recall plots (``--out-image-dir``) are not reproduced.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from road_repro.data.schema import QAExample
from road_repro.errors import DataError

log = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)

Number = int | float


# --- answer normalisation and per-question scores -------------------------------------------------


def normalize_answer(s: str) -> str:
    """Lower ``s`` and drop ASCII punctuation, the articles a/an/the and extra whitespace (official order)."""
    lowered = s.lower()
    no_punc = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punc)
    return " ".join(no_articles.split())


def get_tokens(s: str) -> list[str]:
    """The normalised whitespace tokens of ``s`` that F1 counts; ``[]`` for an empty string."""
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    """1 if gold and prediction are equal after normalisation, else 0."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> Number:
    """Bag-of-tokens F1 of a prediction against one gold answer (official: 1/0 when either is empty)."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def gold_answers(texts: Iterable[str]) -> list[str]:
    """The gold answers a prediction is scored against: texts that normalise to something, else ``['']``.

    An unanswerable question (no texts) thus has ``''`` as its only correct answer.
    """
    kept = [t for t in texts if normalize_answer(t)]
    return kept or [""]


# --- gold answers from the official JSON or from our schema ---------------------------------------


def make_qid_to_has_ans(dataset: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """Map each question id of the official ``data`` articles to whether it lists any answer."""
    return {qa["id"]: bool(qa["answers"]) for qa in _iter_qas(dataset)}


def _iter_qas(dataset: Sequence[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    """Every question record of the official ``data`` articles, in file order."""
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def _golds_from_dataset(dataset: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Question id -> gold answers (see :func:`gold_answers`), in file order, from the official JSON."""
    return {qa["id"]: gold_answers(a["text"] for a in qa["answers"]) for qa in _iter_qas(dataset)}


def _golds_from_examples(examples: Sequence[QAExample]) -> dict[str, list[str]]:
    """Question id -> gold answers from our schema (answer texts, or ``['']`` when unanswerable)."""
    return {ex.id: gold_answers(a.text for a in ex.answers) for ex in examples}


def _raw_scores(golds: Mapping[str, list[str]], preds: Mapping[str, str]) -> tuple[dict[str, int], dict[str, Number]]:
    """Exact and F1 of each predicted question: the max over its gold answers; unpredicted ids are skipped."""
    exact_scores: dict[str, int] = {}
    f1_scores: dict[str, Number] = {}
    for qid, answers in golds.items():
        if qid not in preds:
            log.warning("Missing prediction for %s", qid)
            continue
        a_pred = preds[qid]
        exact_scores[qid] = max(compute_exact(a, a_pred) for a in answers)
        f1_scores[qid] = max(compute_f1(a, a_pred) for a in answers)
    return exact_scores, f1_scores


def get_raw_scores(
    dataset: Sequence[Mapping[str, Any]], preds: Mapping[str, str]
) -> tuple[dict[str, int], dict[str, Number]]:
    """Official ``get_raw_scores``: per-question exact/F1 before any no-answer threshold.

    Like the official script a question without prediction is reported (a logged warning here) and left out.
    """
    return _raw_scores(_golds_from_dataset(dataset), preds)


# --- aggregation (official output keys and order) ------------------------------------------------


def apply_no_ans_threshold(
    scores: Mapping[str, Number],
    na_probs: Mapping[str, Number],
    qid_to_has_ans: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, Number]:
    """Score a question as a "" prediction (1.0 iff unanswerable) when its no-answer probability exceeds the
    threshold; other questions keep their raw score."""
    new_scores: dict[str, Number] = {}
    for qid, s in scores.items():
        if na_probs[qid] > na_prob_thresh:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def make_eval_dict(
    exact_scores: Mapping[str, Number], f1_scores: Mapping[str, Number], qid_list: Sequence[str] | None = None
) -> collections.OrderedDict:
    """``exact``, ``f1`` (percent) and ``total`` over ``qid_list`` (all scored questions when it is empty/None)."""
    if not qid_list:
        total = len(exact_scores)
        return collections.OrderedDict(
            [
                ("exact", 100.0 * sum(exact_scores.values()) / total),
                ("f1", 100.0 * sum(f1_scores.values()) / total),
                ("total", total),
            ]
        )
    total = len(qid_list)
    return collections.OrderedDict(
        [
            ("exact", 100.0 * sum(exact_scores[k] for k in qid_list) / total),
            ("f1", 100.0 * sum(f1_scores[k] for k in qid_list) / total),
            ("total", total),
        ]
    )


def merge_eval(main_eval: dict[str, Any], new_eval: Mapping[str, Any], prefix: str) -> None:
    """Copy ``new_eval`` into ``main_eval`` under ``<prefix>_<key>`` (e.g. ``HasAns_exact``)."""
    for k in new_eval:
        main_eval[f"{prefix}_{k}"] = new_eval[k]


def find_best_thresh(
    preds: Mapping[str, str],
    scores: Mapping[str, Number],
    na_probs: Mapping[str, Number],
    qid_to_has_ans: Mapping[str, bool],
) -> tuple[float, Number]:
    """Official threshold sweep: the best score (percent) and the no-answer probability that reaches it.

    Starting from "every question predicted unanswerable" (score = number of unanswerable questions),
    questions are switched to their own prediction in ascending ``na_probs`` order (stable, ties in
    ``na_probs`` order): an answerable one adds its score, an unanswerable one loses 1 if the raw
    prediction is non-empty. The threshold is the probability at the first strict improvement.
    """
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score: Number = num_no_ans
    best_score: Number = cur_score
    best_thresh: Number = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff: Number = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(
    main_eval: dict[str, Any],
    preds: Mapping[str, str],
    exact_raw: Mapping[str, Number],
    f1_raw: Mapping[str, Number],
    na_probs: Mapping[str, Number],
    qid_to_has_ans: Mapping[str, bool],
) -> None:
    """Add ``best_exact``, ``best_exact_thresh``, ``best_f1``, ``best_f1_thresh`` to ``main_eval`` (official order)."""
    best_exact, exact_thresh = find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


# --- input checks (the official script would crash with KeyError/TypeError instead) ---------------


def _check_inputs(
    golds: Mapping[str, list[str]],
    preds: Mapping[str, Any],
    na_probs: Mapping[str, Any] | None,
    where: str,
) -> None:
    """Raise :class:`DataError` if a question lacks a prediction or probability, or a value has the wrong type."""
    if not golds:
        raise DataError(f"{where}: the gold data holds no questions")
    missing = [qid for qid in golds if qid not in preds]
    if missing:
        raise DataError(
            f"{where}: predictions miss {len(missing)} of {len(golds)} questions (e.g. {missing[:3]}); "
            "the official script fails on a missing prediction"
        )
    bad = [qid for qid in golds if not isinstance(preds[qid], str)]
    if bad:
        raise DataError(f"{where}: predictions must be strings; question {bad[0]!r} has {preds[bad[0]]!r}")
    if na_probs is None:
        return
    missing = [qid for qid in golds if qid not in na_probs]
    if missing:
        raise DataError(
            f"{where}: no-answer probabilities miss {len(missing)} of {len(golds)} questions (e.g. {missing[:3]})"
        )
    bad = [k for k, v in na_probs.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise DataError(
            f"{where}: no-answer probabilities must be numbers; {bad[0]!r} has {na_probs[bad[0]]!r}"
        )


def _evaluate_golds(
    golds: Mapping[str, list[str]],
    qid_to_has_ans: Mapping[str, bool],
    preds: Mapping[str, str],
    na_probs: Mapping[str, Number] | None,
    na_prob_thresh: float,
) -> collections.OrderedDict:
    """The official ``main`` body: thresholded totals, HasAns_/NoAns_ splits, best thresholds with probabilities."""
    probs = na_probs if na_probs is not None else {k: 0.0 for k in preds}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = _raw_scores(golds, preds)
    exact_thresh = apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if na_probs is not None:
        find_all_best_thresh(out_eval, preds, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    return out_eval


# --- public entry points ---------------------------------------------------------------------------


def evaluate(
    dataset: Sequence[Mapping[str, Any]],
    preds: Mapping[str, str],
    na_probs: Mapping[str, Number] | None = None,
    na_prob_thresh: float = 1.0,
    *,
    where: str = "evaluate",
) -> collections.OrderedDict:
    """Score predictions on the official ``data`` articles exactly as the official script's output dict.

    ``preds`` maps question id -> answer text ("" = no answer); ``na_probs`` (optional) maps id ->
    no-answer probability/odds and adds the best-threshold keys. ``where`` names the inputs in errors.
    """
    _check_dataset_shape(dataset, where)
    golds = _golds_from_dataset(dataset)
    _check_inputs(golds, preds, na_probs, where)
    return _evaluate_golds(golds, make_qid_to_has_ans(dataset), preds, na_probs, na_prob_thresh)


def evaluate_examples(
    examples: Sequence[QAExample],
    preds: Mapping[str, str],
    na_probs: Mapping[str, Number] | None = None,
    na_prob_thresh: float = 1.0,
) -> collections.OrderedDict:
    """:func:`evaluate` for our :class:`QAExample` schema (gold = answer texts, ``['']`` when unanswerable)."""
    golds = _golds_from_examples(examples)
    _check_inputs(golds, preds, na_probs, "evaluate_examples")
    qid_to_has_ans = {ex.id: not ex.is_impossible for ex in examples}
    return _evaluate_golds(golds, qid_to_has_ans, preds, na_probs, na_prob_thresh)


def _read_json(path: Path) -> Any:
    """Parse a JSON file, raising :class:`DataError` naming it when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read file ({e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def _check_dataset_shape(dataset: Any, where: str) -> None:
    """Raise :class:`DataError` naming ``where`` and the record unless ``dataset`` is official-shaped articles."""
    if not isinstance(dataset, list):
        raise DataError(f"{where}: 'data' must be a list of articles, got {type(dataset).__name__}")
    for i, article in enumerate(dataset):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{where}: data[{i}] is not an article with a 'paragraphs' list")
        for j, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                raise DataError(f"{where}: data[{i}].paragraphs[{j}] has no 'qas' list")
            for k, qa in enumerate(qas):
                _check_qa(qa, f"{where}: data[{i}].paragraphs[{j}].qas[{k}]")


def _check_qa(qa: Any, where: str) -> None:
    """Raise :class:`DataError` unless ``qa`` has a string ``id`` and a list of answers with string ``text``."""
    if not isinstance(qa, dict) or not isinstance(qa.get("id"), str):
        raise DataError(f"{where}: question record without a string 'id'")
    answers = qa.get("answers")
    texts_ok = isinstance(answers, list) and all(
        isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers
    )
    if not texts_ok:
        raise DataError(f"{where} (id {qa['id']!r}): 'answers' must be a list of {{'text': str, ...}}")


def load_squad_json(path: str | Path) -> dict[str, Any]:
    """Load an official SQuAD JSON file (``{"version": ..., "data": [articles]}``), checking its shape.

    Raises :class:`DataError` naming the file (and record) if it is missing, not JSON or not SQuAD-shaped.
    """
    path = Path(path)
    obj = _read_json(path)
    if not isinstance(obj, dict) or "data" not in obj:
        raise DataError(f"{path}: not a SQuAD file (expected a JSON object with a 'data' list of articles)")
    _check_dataset_shape(obj["data"], str(path))
    return obj


def load_json_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Load a predictions or no-answer-probability file: a JSON object keyed by question id."""
    path = Path(path)
    obj = _read_json(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {what} must be a JSON object mapping question id -> value, got {type(obj).__name__}")
    return obj


def _parser() -> argparse.ArgumentParser:
    """The official script's command line (without its plotting options)."""
    parser = argparse.ArgumentParser("Official evaluation script for SQuAD version 2.0.")
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    parser.add_argument(
        "--out-file", "-o", metavar="eval.json", help="Write accuracy metrics to file (default is stdout)."
    )
    parser.add_argument(
        "--na-prob-file", "-n", metavar="na_prob.json", help="Model estimates of probability of no answer."
    )
    parser.add_argument(
        "--na-prob-thresh", "-t", type=float, default=1.0,
        help='Predict "" if no-answer probability exceeds this (default = 1.0).',
    )
    return parser


def main(argv: Sequence[str] | None = None) -> collections.OrderedDict:
    """Command-line drop-in for the official script: print the scores as indented JSON, or write ``--out-file``.

    A missing or malformed input file ends the program with a message naming it (``SystemExit``).
    """
    opts = _parser().parse_args(argv)
    try:
        dataset = load_squad_json(opts.data_file)["data"]
        preds = load_json_mapping(opts.pred_file, "predictions")
        na_probs = load_json_mapping(opts.na_prob_file, "no-answer probabilities") if opts.na_prob_file else None
        where = f"{opts.data_file} / {opts.pred_file}" + (f" / {opts.na_prob_file}" if opts.na_prob_file else "")
        out_eval = evaluate(dataset, preds, na_probs, opts.na_prob_thresh, where=where)
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    if opts.out_file:
        with open(opts.out_file, "w", encoding="utf-8") as fh:
            json.dump(out_eval, fh)
    else:
        print(json.dumps(out_eval, indent=2))
    return out_eval


if __name__ == "__main__":
    main()
