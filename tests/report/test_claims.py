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
    assert claims.loc["the Weighted KD student beats the teacher ensemble", "verdict"] == "too few seeds"  # n = 1
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
