"""Claims as data: every spec's claims resolve; verdicts come from the per-seed values of the two rows."""

import pandas as pd
import pytest

from road_repro.config import ABLATIONS_DIR, load_table_spec
from road_repro.report.claims import evaluate_claims


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([
        {"table": "T5", "row": i, "method": method, "paper_model": "", "seed": s + 1, "metric": "f1", "value": v,
         "dataset": "squad_v2", "split": "dev", "data_source": "x", "profile": "smoke", "run_id": f"r{i}{s}"}
        for i, (method, vs) in enumerate(values.items(), start=1) for s, v in enumerate(vs)
    ])


def test_table5_claims_from_hand_made_seeds():
    spec = load_table_spec("table5")
    frame = _frame({
        "single model average without distillation": [80.0, 80.2, 79.9, 80.1, 80.0],
        "teachers ensemble of 3 models": [81.0],
        "KD": [81.0, 81.1, 80.9, 81.2, 81.0],
        "annealing KD": [79.0, 79.2, 78.9, 79.1, 79.0],
        "weighted KD": [83.0, 83.1, 82.9, 83.2, 83.0],
    })
    claims = evaluate_claims(frame, spec).set_index("claim")
    row = claims.loc["Weighted KD beats KD"]
    assert row["paper_diff"] == pytest.approx(0.14) and row["verdict"] == "holds"
    assert row["mean_diff"] == pytest.approx(2.0) and row["n_better"] == 5
    assert claims.loc["annealing KD is below KD", "verdict"] == "holds"
    ensemble = claims.loc["the Weighted KD student beats the teacher ensemble"]  # one value: a fixed reference
    assert ensemble["verdict"] == "holds" and ensemble["n_worse"] == 1 and ensemble["df"] == 4
    assert "fixed reference" in ensemble["test"] and ensemble["p_value"] < 0.05 / len(spec.claims)
    equal = claims.loc["KD is about equal to the teacher ensemble"]
    assert equal["verdict"] == "inconclusive" and equal["margin"] == 0.07
    assert "Weighted KD over KD" in equal["margin_source"]
    assert "on the seeded row" in equal["change"]
    far = frame.assign(value=frame["value"].where(frame["method"] != "KD", frame["value"] + 2.0))
    assert evaluate_claims(far, spec).set_index("claim").loc["KD is about equal to the teacher ensemble",
                                                             "verdict"] == "reversed"
    reversed_frame = frame.assign(value=frame["value"].where(frame["method"] != "weighted KD", 78.0 + frame["seed"] / 10))
    assert evaluate_claims(reversed_frame, spec).set_index("claim").loc["Weighted KD beats KD", "verdict"] == "reversed"


@pytest.mark.parametrize("table", sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml")))
def test_every_table_states_its_claims_with_the_papers_difference(table):
    spec = load_table_spec(table)
    assert spec.claims, f"{table} lists no claims"
    empty = pd.DataFrame(columns=["table", "row", "method", "paper_model", "seed", "metric", "value", "dataset",
                                  "split", "data_source", "profile", "run_id"])
    claims = evaluate_claims(empty, spec)
    assert (claims["verdict"] == "not run").all()
    assert claims["paper_diff"].notna().all(), claims[claims["paper_diff"].isna()]["claim"].tolist()


#: The claims the seeds make (issue 18's list), each a claim entry of its table's spec.
CLAIMS_OF_THE_SEEDS = {
    "table5": ["Weighted KD beats annealing KD"],
    "table4": ["+ KD during MTL beats + MTL (MNLI-m)", "+ KD during MTL beats + MTL (QQP)"],
    "table2": ["MT-DNN does not help ALBERT", "ROaD MTL improves ALBERT"],
    "table3": ["negative questions do not improve ALBERT (the text)",
               "label smoothing does not improve ALBERT (the text)"],
    "table6": ["ROaD beats DeBERTa-large"],
    "table7": ["ROaD (base) beats DeBERTa-base (new state of the art)", "ROaD (base) beats RoBERTa-base"],
    "blog_teacher": ["a single larger teacher beats ensemble self-distillation"],
    "blog_passstep": ["pass-step 1 is slightly below no MTL", "MTL with pass-step 2 beats no MTL",
                      "MTL with pass-step 8 beats no MTL"],
    "blog_final": ["ROaD-Base v1.1 beats DeBERTa-base (the previous state of the art)",
                   "ROaD-Base v1.1 outperforms BERT-large"],
}


@pytest.mark.parametrize("table", sorted(CLAIMS_OF_THE_SEEDS))
def test_every_claim_of_the_seeds_is_a_claim_entry(table):
    assert set(CLAIMS_OF_THE_SEEDS[table]) <= {c.claim for c in load_table_spec(table).claims}


@pytest.mark.parametrize("table", sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml")))
def test_margins_fit_the_claim(table):
    """Each equal / not_worse claim has its own margin with a reason, smaller than the smallest improvement
    the same table claims with 'beats' (else a real gain could pass as 'no effect'); the paper's own numbers
    satisfy the claim within its margin unless the claim is flagged as a contradiction."""
    spec = load_table_spec(table)
    empty = pd.DataFrame(columns=["table", "row", "method", "paper_model", "seed", "metric", "value", "dataset",
                                  "split", "data_source", "profile", "run_id"])
    claims = evaluate_claims(empty, spec)
    gains = claims[claims["kind"] == "greater"].groupby("metric")["paper_diff"].min()
    for c in claims[claims["kind"] != "greater"].to_dict("records"):
        assert c["margin"] > 0 and c["margin_source"], c["claim"]
        if c["metric"] in gains:
            assert c["margin"] < gains[c["metric"]], c["claim"]
        inside = (abs(c["paper_diff"]) < c["margin"]) if c["kind"] == "equal" else c["paper_diff"] > -c["margin"]
        assert inside or c["conflict"], c["claim"]


def test_table3_shows_both_readings_of_albert():
    """Table 3's text says label smoothing / augmentation do not help ALBERT; its table shows +0.3 for both:
    each reading is a claim, flagged, with the paper's difference that contradicts the text."""
    claims = evaluate_claims(pd.DataFrame(columns=["table", "row", "method", "paper_model", "seed", "metric", "value",
                                                   "dataset", "split", "data_source", "profile", "run_id"]),
                             load_table_spec("table3")).set_index("claim")
    for text, table in (("label smoothing does not improve ALBERT (the text)",
                         "label smoothing improves ALBERT (the table)"),
                        ("negative questions do not improve ALBERT (the text)",
                         "negative questions improve ALBERT (the table)")):
        assert claims.loc[text, "conflict"] and claims.loc[table, "conflict"]
        assert claims.loc[text, "paper_diff"] == pytest.approx(-0.3)
        assert claims.loc[text, "paper_diff"] < -claims.loc[text, "margin"]
        assert claims.loc[table, "paper_diff"] == pytest.approx(0.3)


def test_table6_ensemble_claims_get_a_verdict_and_ask_seeds_of_the_seeded_row_only():
    """ROaD vs the 3-model ensemble (one number per task): a one-sample test, on SQuAD 2.0 and NewsQA."""
    spec = load_table_spec("table6")
    values = {("ROaD", "squad_v2"): [81.0, 81.4, 81.2], ("ensemble of 3 models", "squad_v2"): [79.0],
              ("ROaD", "newsqa"): [60.0, 58.0, 62.5], ("ensemble of 3 models", "newsqa"): [60.5]}
    frame = pd.DataFrame([
        {"table": "T6", "row": 7 if method == "ROaD" else 5, "method": method, "paper_model": "ELECTRA-large",
         "seed": s + 1, "metric": "f1", "value": v, "dataset": task, "split": "dev", "data_source": "x",
         "profile": "smoke", "run_id": f"{method}{task}{s}"}
        for (method, task), vs in values.items() for s, v in enumerate(vs)])
    claims = evaluate_claims(frame, spec).set_index("claim")
    squad = claims.loc["ROaD beats the 3-model ELECTRA-large ensemble"]
    newsqa = claims.loc["ROaD beats the ensemble out of domain (NewsQA)"]
    assert squad["verdict"] == "holds" and squad["n_worse"] == 1 and "fixed reference" in squad["test"]
    assert newsqa["verdict"] == "inconclusive" and "on the seeded row" in newsqa["change"]
    one_seed = evaluate_claims(frame[(frame["method"] != "ROaD") | (frame["seed"] == 1)], spec).set_index("claim")
    few = one_seed.loc["ROaD beats the 3-model ELECTRA-large ensemble"]
    assert few["verdict"] == "too few seeds" and few["n_better"] == 1 and "on the seeded row" in few["change"]


@pytest.mark.parametrize("claim", [
    "{claim: c, better: A, worse: B, kind: equal}",                                # no margin
    "{claim: c, better: A, worse: B, kind: not_worse, margin: 0.1}",               # no reason for it
    "{claim: c, better: A, worse: B, kind: not_worse, margin: 0, margin_source: x}",
    "{claim: c, better: A, worse: B, margin: 0.1, margin_source: x}",              # "beats" has no margin
])
def test_a_claim_without_a_fitting_margin_is_named(tmp_path, claim):
    from road_repro.errors import ConfigError

    path = tmp_path / "spec.yaml"
    path.write_text("table: T5\ntitle: t\nevaluate: {squad_v2: [f1]}\nrows:\n  - {method: A}\n  - {method: B}\n"
                    f"claims:\n  - {claim}\n")
    with pytest.raises(ConfigError, match=r"claims\[0\] \((equal|not_worse|greater)\) needs margin > 0"):
        load_table_spec(str(path))
