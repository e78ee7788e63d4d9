"""Learning floors on hand-made summaries: which rows are named, the report flag and the console warning."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from road_repro.report.floors import (
    HAS_ANS_F1,
    accuracy_floor,
    check_floors,
    check_table_files,
    span_floors,
    task_types,
)

TYPES = {"squad_v2": "mrc", "newsqa": "mrc", "mnli": "nli", "qqp": "paraphrase", "sst": "sentiment"}
NO_ANSWER = {"squad_v2": 46.5, "newsqa": 50.0}


def _summary(rows: list[tuple]) -> pd.DataFrame:
    """(row, method, dataset, metric, mean) tuples -> a summary frame like summarize() writes."""
    return pd.DataFrame(
        [{"table": "T4", "row": r, "method": m, "paper_model": "", "dataset": d, "metric": k, "n": 3,
          "mean": v, "std": 1.0, "profile": "smoke"} for r, m, d, k, v in rows])


def test_the_floors():
    assert accuracy_floor("nli") == pytest.approx(100 / 3 + 25)
    assert accuracy_floor("paraphrase") == 75.0
    assert accuracy_floor("sentiment") == 45.0
    assert span_floors(46.5) == {"f1": 61.5, "has_ans_f1": HAS_ANS_F1} and HAS_ANS_F1 == 50.0


def test_names_every_row_below_its_floor_and_only_those():
    summary = _summary([
        (1, "baseline", "mnli", "acc", 90.0),
        (1, "baseline", "qqp", "acc", 75.0),  # equal to the floor is not above it
        (1, "baseline", "sst", "acc", 45.1),
        (1, "baseline", "squad_v2", "f1", 80.0),
        (1, "baseline", "squad_v2", "has_ans_f1", 70.0),
        (1, "baseline", "squad_v2", "em", 10.0),  # no floor on EM
        (2, "+ MTL", "mnli", "acc", 52.0),  # near chance
        (2, "+ MTL", "squad_v2", "f1", 60.0),  # below 46.5 + 15
        (2, "+ MTL", "squad_v2", "has_ans_f1", 49.0),  # learned to abstain only
        (2, "+ MTL", "newsqa", "f1", 70.0),
        (2, "+ MTL", "newsqa", "has_ans_f1", float("nan")),  # no number is no learning
        (3, "+ KD during MTL", "sst", "acc", 40.0),
        (3, "+ KD during MTL", "unknown", "acc", 0.0),  # no task type known: not checked
    ])
    misses = check_floors(summary, "table4", TYPES, NO_ANSWER)
    got = [(m.row, m.method, m.dataset, m.metric) for m in misses]
    assert got == [
        (1, "baseline", "qqp", "acc"),
        (2, "+ MTL", "mnli", "acc"),
        (2, "+ MTL", "squad_v2", "f1"),
        (2, "+ MTL", "squad_v2", "has_ans_f1"),
        (2, "+ MTL", "newsqa", "has_ans_f1"),
        (3, "+ KD during MTL", "sst", "acc"),
    ]
    assert misses[2].floor == pytest.approx(61.5)
    assert "table4 row 2 '+ MTL': mnli acc mean 52.00 is not above the floor 58.33" in misses[1].message()


def test_span_rows_without_a_baseline_are_not_guessed():
    summary = _summary([(1, "x", "squad_v2", "f1", 1.0), (1, "x", "squad_v2", "has_ans_f1", 1.0)])
    assert [m.metric for m in check_floors(summary, "t", TYPES, {})] == ["has_ans_f1"]


def _meta(profile: str) -> dict:
    tasks = {"mnli": {"train": {"dataset": "synthetic_nli", "split": "train"},
                      "dev": {"dataset": "synthetic_nli", "split": "dev"}},
             "squad_v2": {"dev": {"dataset": "synthetic_squad", "split": "dev"}}}
    return {"name": "table4", "table": "T4", "title": "t", "profile": {"name": profile, "tasks": tasks},
            "no_answer_baseline_f1": {"squad_v2": 46.5}, "evaluate": {"mnli": ["acc"], "squad_v2": ["f1"]}}


def test_task_types_come_from_the_profile_datasets():
    assert task_types(_meta("smoke")["profile"]) == {"mnli": "nli", "squad_v2": "mrc"}


def test_only_the_smoke_scale_is_checked():
    summary = _summary([(1, "baseline", "mnli", "acc", 34.0)])
    assert len(check_table_files(_meta("smoke"), summary)) == 1
    assert check_table_files(_meta("mini"), summary) == []


def test_report_flags_and_console_warns(tmp_path, capsys):
    """The report page and `python -m road_repro.report` name a row below its floor."""
    from road_repro.report.__main__ import main

    folder = tmp_path / "smoke"
    folder.mkdir()
    meta = {**_meta("smoke"), "seeds": [1], "metrics": ["acc", "f1"], "seconds": 1.0, "finished": "now",
            "provenance": {"git": "x", "torch": "x", "transformers": "x", "device": "cpu"}}
    (folder / "table4.json").write_text(json.dumps(meta))
    summary = _summary([(1, "baseline", "mnli", "acc", 90.0), (2, "+ MTL", "mnli", "acc", 34.0)])
    summary.assign(min=0, max=0, seeds="1", paper=float("nan"), diff=float("nan")).to_csv(
        folder / "table4_summary.csv", index=False)
    (folder / "table4.png").write_bytes(b"\x89PNG")
    pd.DataFrame([{"table": "T4", "row": r, "method": m, "paper_model": "", "seed": 1, "metric": "acc", "value": v,
                   "dataset": "mnli", "split": "dev", "data_source": "x", "profile": "smoke", "run_id": f"r{r}"}
                  for r, m, v in [(1, "baseline", 90.0), (2, "+ MTL", 34.0)]]).to_csv(folder / "table4.csv", index=False)
    assert main(["--profile", "smoke", "--output-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: learning floor: table4 row 2 '+ MTL': mnli acc mean 34.00" in err
    assert "row 1" not in err
    html = (folder / "report" / "index.html").read_text()
    assert "Learning-floor check: 1 row(s) did not" in html
    assert "⚠ below: mnli acc" in (folder / "report" / "table4.html").read_text()
    assert main(["--profile", "smoke", "--output-dir", str(tmp_path), "--strict"]) == 1

    summary.loc[1, "mean"] = 80.0
    summary.assign(min=0, max=0, seeds="1", paper=float("nan"), diff=float("nan")).to_csv(
        folder / "table4_summary.csv", index=False)
    assert main(["--profile", "smoke", "--output-dir", str(tmp_path), "--strict"]) == 0
    assert "clears its floor" in capsys.readouterr().out
    assert "every row of every table clears its floor" in (folder / "report" / "index.html").read_text()
