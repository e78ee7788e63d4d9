"""SQuAD 2.0 scoring: hand-computed cases, the independent oracle on the real dev set, the CLI, bad input."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from road_repro.data.schema import Answer, QAExample
from road_repro.errors import DataError
from road_repro.evaluate import squad_v2 as sq
from tests.reference.squad_v2_oracle import oracle_evaluate

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_KEYS = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
                 "NoAns_total"]
BEST_KEYS = ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]


def _qa(qid: str, *answers: str) -> dict:
    return {"id": qid, "question": f"question {qid}?", "answers": [{"text": a, "answer_start": 0} for a in answers]}


def _articles(*qas: dict) -> list[dict]:
    return [{"title": "T", "paragraphs": [{"context": "Denver Broncos beat the Carolina Panthers.", "qas": list(qas)}]}]


#: q1/q2 answerable, q3/q4 unanswerable; see the docstrings below for the hand computation.
TOY = _articles(_qa("q1", "Denver Broncos", "Broncos"), _qa("q2", "Carolina Panthers"), _qa("q3"), _qa("q4"))
TOY_PREDS = {"q1": "the Broncos", "q2": "Panthers team", "q3": "", "q4": "Levi's Stadium"}
TOY_NA = {"q1": 0.1, "q2": 0.6, "q3": 0.9, "q4": 0.7}


def assert_same_eval(ours: dict, expected: dict, tol: float = 1e-9) -> None:
    """Same keys in the same order and every value within ``tol``."""
    assert list(ours) == list(expected)
    for k in expected:
        assert ours[k] == pytest.approx(expected[k], abs=tol, rel=0), k


# --- normalisation and per-question scores ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("Theatre anthem", "theatre anthem"),  # articles only as whole words
        ("A.B.C.", "abc"),  # punctuation goes before articles: 'abc' is not an article
        ("a-n", ""),  # "a-n" -> "an", a whole-word article -> ""
        ("café—the end", "café— end"),  # unicode dash is kept but bounds the article
        ("  \tLevi's\nStadium ", "levis stadium"),
    ],
)
def test_normalize_answer(raw: str, normal: str) -> None:
    assert sq.normalize_answer(raw) == normal


def test_get_tokens() -> None:
    assert sq.get_tokens("") == []
    assert sq.get_tokens("The Denver  Broncos.") == ["denver", "broncos"]


def test_exact_match_after_normalisation() -> None:
    assert sq.compute_exact("Denver Broncos", "the denver broncos!") == 1
    assert sq.compute_exact("Denver Broncos", "Broncos") == 0


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        ("the cat sat on the mat", "cat on mat now", 0.75),  # 3 shared of 4 and 4: P = R = 3/4
        ("Barack Obama", "President Barack Obama Jr", 2 / 3),  # P = 2/4, R = 2/2 -> 2PR/(P+R) = 2/3
        ("x y y", "y y y z", 4 / 7),  # shared y twice: P = 2/4, R = 2/3 -> 4/7
        ("Denver", "Carolina", 0),
        ("", "", 1),  # no-answer agreed
        ("", "Denver", 0),
        ("Denver", "", 0),
        ("", "the", 1),  # 'the' normalises to no tokens, which agrees with no answer
    ],
)
def test_compute_f1(gold: str, pred: str, expected: float) -> None:
    assert sq.compute_f1(gold, pred) == pytest.approx(expected, abs=1e-12)


def test_gold_answers_drop_empty_texts() -> None:
    assert sq.gold_answers(["Denver", "the", "."]) == ["Denver"]
    assert sq.gold_answers([]) == [""]
    assert sq.gold_answers(["a"]) == [""]


def test_sweep_penalises_any_nonempty_raw_prediction_on_unanswerable() -> None:
    """' ' normalises to '' (raw exact 1), yet the official sweep tests the raw string: starting from 2
    unanswerable, u1 (0.2) costs 1, u2 (0.3) nothing, h (0.4) gains 1: never above 2, so 2/3 at 0.0."""
    articles = _articles(_qa("u1"), _qa("u2"), _qa("h", "Denver"))
    out = sq.evaluate(articles, {"u1": " ", "u2": "", "h": "Denver"}, {"u1": 0.2, "h": 0.4, "u2": 0.3})
    assert out["exact"] == 100.0
    assert (out["best_exact"], out["best_exact_thresh"]) == (pytest.approx(200 / 3), 0.0)


def test_empty_prediction_on_unanswerable_is_exact() -> None:
    exact, f1 = sq.get_raw_scores(_articles(_qa("u")), {"u": ""})
    assert exact == {"u": 1} and f1 == {"u": 1}
    exact, f1 = sq.get_raw_scores(_articles(_qa("u")), {"u": "Denver"})
    assert exact == {"u": 0} and f1 == {"u": 0}


# --- hand-computed aggregate --------------------------------------------------------------------------


def test_evaluate_toy_without_probabilities() -> None:
    """q1: 'the Broncos' matches gold 'Broncos' (1, 1); q2: tokens {panthers, team} vs {carolina, panthers}
    (0, 1/2); q3: '' on unanswerable (1, 1); q4: text on unanswerable (0, 0)."""
    out = sq.evaluate(TOY, TOY_PREDS)
    expected = dict(zip(OFFICIAL_KEYS, [50.0, 62.5, 4, 50.0, 75.0, 2, 50.0, 50.0, 2]))
    assert_same_eval(out, expected, tol=1e-12)


def test_evaluate_toy_threshold_and_best_threshold() -> None:
    """Threshold 0.5: q2 (0.6) becomes a no-answer on an answerable question (0, 0), q4 (0.7) a no-answer on an
    unanswerable one (1, 1); q1 (0.1) and q3 keep theirs.

    Sweep, ascending probability q1 .1, q2 .6, q4 .7, q3 .9, starting from 2 unanswerable questions:
    exact 2 -> 3 (q1) -> 3 -> 2 (q4 answered wrongly) -> 2: best 3/4 at 0.1;
    f1    2 -> 3 (q1) -> 3.5 (q2) -> 2.5 -> 2.5: best 3.5/4 at 0.6.
    """
    out = sq.evaluate(TOY, TOY_PREDS, TOY_NA, na_prob_thresh=0.5)
    values = [75.0, 75.0, 4, 50.0, 50.0, 2, 100.0, 100.0, 2, 75.0, 0.1, 87.5, 0.6]
    assert_same_eval(out, dict(zip(OFFICIAL_KEYS + BEST_KEYS, values)), tol=1e-12)


def test_default_threshold_keeps_raw_scores_and_adds_best_keys() -> None:
    plain = sq.evaluate(TOY, TOY_PREDS)
    with_probs = sq.evaluate(TOY, TOY_PREDS, TOY_NA)
    assert list(with_probs) == OFFICIAL_KEYS + BEST_KEYS
    assert_same_eval({k: with_probs[k] for k in OFFICIAL_KEYS}, plain)


def test_best_thresh_splits_ties_like_the_official_sweep() -> None:
    """Tied probabilities: the official sweep takes qa (+1) before qb (-1) and reports the unreachable 2/2."""
    qid_to_has_ans = {"qa": True, "qb": False}
    best, at = sq.find_best_thresh({"qa": "x", "qb": "y"}, {"qa": 1, "qb": 0}, {"qa": 0.5, "qb": 0.5}, qid_to_has_ans)
    assert (best, at) == (100.0, 0.5)
    best, at = sq.find_best_thresh({"qa": "x", "qb": "y"}, {"qa": 1, "qb": 0}, {"qb": 0.5, "qa": 0.5}, qid_to_has_ans)
    assert (best, at) == (50.0, 0.0)  # qb first: 1 -> 0 -> 1, never above the start


def test_only_answerable_questions_have_no_noans_keys() -> None:
    out = sq.evaluate(_articles(_qa("q1", "Denver")), {"q1": "Denver"})
    assert list(out) == ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total"]


def test_evaluate_examples_matches_evaluate() -> None:
    ctx = "Denver Broncos beat the Carolina Panthers."
    examples = [
        QAExample("q1", ctx, "who won?", (Answer("Denver Broncos", 0), Answer("Broncos", 7))),
        QAExample("q2", ctx, "who lost?", (Answer("Carolina Panthers", 24),)),
        QAExample("q3", ctx, "where?"),
        QAExample("q4", ctx, "when?"),
    ]
    assert_same_eval(sq.evaluate_examples(examples, TOY_PREDS, TOY_NA, 0.5), sq.evaluate(TOY, TOY_PREDS, TOY_NA, 0.5),
                     tol=0)


def test_missing_prediction_or_probability_is_a_data_error() -> None:
    with pytest.raises(DataError, match="miss 1 of 4.*q4"):
        sq.evaluate(TOY, {k: v for k, v in TOY_PREDS.items() if k != "q4"})
    with pytest.raises(DataError, match="no-answer probabilities miss 1"):
        sq.evaluate(TOY, TOY_PREDS, {k: v for k, v in TOY_NA.items() if k != "q2"})
    with pytest.raises(DataError, match="strings"):
        sq.evaluate(TOY, {**TOY_PREDS, "q1": 3})


# --- the oracle: small data and the real dev set ------------------------------------------------------


def test_oracle_agrees_on_toy() -> None:
    for na, t in ((None, 1.0), (TOY_NA, 1.0), (TOY_NA, 0.5), (TOY_NA, 0.0)):
        assert_same_eval(sq.evaluate(TOY, TOY_PREDS, na, t), oracle_evaluate(TOY, TOY_PREDS, na, t))


def synthetic_predictions(articles: list[dict], seed: int) -> tuple[dict[str, str], dict[str, float]]:
    """Seeded mix of exact, partial, wrong and empty answers with no-answer probabilities that, like a real
    model's, tend to be lower for answered questions; two decimals make many ties, and the probabilities are
    given in shuffled order, so the sweep's tie order and mid-range thresholds are exercised."""
    rng = random.Random(seed)
    qas = [qa for a in articles for p in a["paragraphs"] for qa in p["qas"]]
    texts = [ans["text"] for qa in qas for ans in qa["answers"] + qa.get("plausible_answers", [])]
    preds, na = {}, {}
    for qa in qas:
        gold = rng.choice(qa["answers"])["text"] if qa["answers"] else rng.choice(texts)
        words = gold.split()
        kind = rng.random()
        if kind < 0.35:
            preds[qa["id"]] = gold.upper() if rng.random() < 0.2 else gold
        elif kind < 0.6:
            cut = rng.randint(0, len(words))
            preds[qa["id"]] = " ".join(words[:cut] + ["the", "extra", "words"][: rng.randint(0, 3)])
        elif kind < 0.8:
            preds[qa["id"]] = rng.choice(texts)
        else:
            preds[qa["id"]] = rng.choice(["", "", " ", "."])
        answered_well = bool(qa["answers"]) and kind < 0.6
        na[qa["id"]] = round(rng.betavariate(2, 5) if answered_well else rng.betavariate(5, 2), 2)
    ids = list(na)
    rng.shuffle(ids)
    return preds, {q: na[q] for q in ids}


@pytest.fixture(scope="module")
def dev_articles(shared_data: Path) -> list[dict]:
    """The real SQuAD 2.0 dev articles (official file), loaded once."""
    return sq.load_squad_json(shared_data / "squad2" / "dev-v2.0.json")["data"]


def test_oracle_agrees_on_real_dev_set(dev_articles: list[dict]) -> None:
    preds, na = synthetic_predictions(dev_articles, seed=0)
    assert len(preds) == 11873
    for probs, t in ((None, 1.0), (na, 1.0), (na, 0.5)):
        ours = sq.evaluate(dev_articles, preds, probs, t)
        assert ours["total"] == 11873 and ours["HasAns_total"] == 5928 and ours["NoAns_total"] == 5945
        assert_same_eval(ours, oracle_evaluate(dev_articles, preds, probs, t))
    assert 0 < ours["exact"] < ours["f1"] < 100  # the mix really is mixed
    assert 0.2 < ours["best_exact_thresh"] < 0.7 and ours["best_f1"] > ours["f1"]  # the sweep finds a mid threshold


def test_all_empty_predictions_on_real_dev_set(dev_articles: list[dict]) -> None:
    """Predicting no answer everywhere scores exactly the unanswerable share, 5945 / 11873."""
    ids = [qa["id"] for a in dev_articles for p in a["paragraphs"] for qa in p["qas"]]
    out = sq.evaluate(dev_articles, dict.fromkeys(ids, ""))
    share = 100.0 * 5945 / 11873
    assert (out["exact"], out["f1"], out["HasAns_f1"], out["NoAns_exact"]) == (share, share, 0.0, 100.0)


# --- command line -------------------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    """Run ``python -m road_repro.evaluate.squad_v2 ARGS`` as the official script would be run."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "road_repro.evaluate.squad_v2", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def write_json(path: Path, obj: object) -> Path:
    """Write ``obj`` as JSON to ``path`` and return the path."""
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_cli_prints_the_oracle_json(tmp_path: Path) -> None:
    data = write_json(tmp_path / "data.json", {"version": "v2.0", "data": TOY})
    preds = write_json(tmp_path / "preds.json", TOY_PREDS)
    na = write_json(tmp_path / "na.json", TOY_NA)
    done = run_cli(data, preds, "--na-prob-file", na, "--na-prob-thresh", "0.5")
    assert done.returncode == 0, done.stderr
    expected = oracle_evaluate(TOY, TOY_PREDS, TOY_NA, 0.5)
    assert_same_eval(json.loads(done.stdout), expected)
    assert done.stdout.strip() == json.dumps(sq.evaluate(TOY, TOY_PREDS, TOY_NA, 0.5), indent=2)

    out = tmp_path / "eval.json"
    done = run_cli(data, preds, "-o", out)
    assert done.returncode == 0 and done.stdout == ""
    assert_same_eval(json.loads(out.read_text()), oracle_evaluate(TOY, TOY_PREDS))


def test_cli_names_a_missing_or_malformed_file(tmp_path: Path) -> None:
    data = write_json(tmp_path / "data.json", {"version": "v2.0", "data": TOY})
    bad = tmp_path / "preds.json"
    bad.write_text("{not json", encoding="utf-8")
    done = run_cli(data, bad)
    assert done.returncode != 0 and "preds.json" in done.stderr and "malformed JSON" in done.stderr
    done = run_cli(tmp_path / "nowhere.json", bad)
    assert done.returncode != 0 and "nowhere.json" in done.stderr and "not found" in done.stderr


def test_main_in_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_json(tmp_path / "data.json", {"version": "v2.0", "data": TOY})
    preds = write_json(tmp_path / "preds.json", TOY_PREDS)
    out = sq.main([str(data), str(preds)])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(out))
    with pytest.raises(SystemExit, match="preds.json.*miss 1 of 4"):
        sq.main([str(data), str(write_json(tmp_path / "preds.json", {"q1": "x", "q2": "", "q3": ""}))])


# --- bad input ----------------------------------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="absent.json: file not found"):
        sq.load_squad_json(tmp_path / "absent.json")


def test_load_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"data": [', encoding="utf-8")
    with pytest.raises(DataError, match="broken.json: malformed JSON at line 1"):
        sq.load_squad_json(path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([1, 2], "not a SQuAD file"),
        ({"version": "v2.0"}, "not a SQuAD file"),
        ({"data": {"title": "x"}}, "'data' must be a list"),
        ({"data": [{"title": "x"}]}, r"data\[0\] is not an article"),
        ({"data": [{"paragraphs": [{"context": "c"}]}]}, r"data\[0\].paragraphs\[0\] has no 'qas'"),
        ({"data": _articles({"question": "q?", "answers": []})}, r"qas\[0\]: question record without"),
        ({"data": _articles({"id": "q", "answers": [{"answer_start": 0}]})}, r"id 'q'.*'answers' must be"),
    ],
)
def test_load_non_squad_json(tmp_path: Path, obj: object, message: str) -> None:
    path = write_json(tmp_path / "other.json", obj)
    with pytest.raises(DataError, match=message) as err:
        sq.load_squad_json(path)
    assert "other.json" in str(err.value)


def test_load_real_dev_file(dev_articles: list[dict]) -> None:
    assert len(dev_articles) == 35
    assert sum(len(p["qas"]) for a in dev_articles for p in a["paragraphs"]) == 11873
