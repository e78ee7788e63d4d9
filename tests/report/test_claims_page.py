"""The claims section of a table page shows the test per claim: the test used, n per row, the statistic and
p-value, eps_min, the margin and why, what would change the verdict, a flagged contradiction and the notes
on how the table was run (issue 18, items 3-6). Built from hand-made files, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from road_repro.config import load_table_spec
from road_repro.report.claims import evaluate_claims
from road_repro.report.html import build_report
from road_repro.report.summary import summarize


def _write_table(folder: Path, name: str, values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """``<name>.json``, ``.csv``, ``_summary.csv``, ``_claims.csv`` and ``.png`` as ``run_table`` writes them."""
    spec = load_table_spec(name)
    rows = {(r.method, r.paper_model or ""): i for i, r in enumerate(spec.rows, start=1)}
    frame = pd.DataFrame([
        {"table": spec.table, "row": rows[key], "method": key[0], "paper_model": key[1],
         "seed": s + 1 if len(vs) > 1 else None, "metric": "f1", "value": v, "dataset": "squad_v2", "split": "dev",
         "data_source": "x", "profile": "mini", "run_id": f"r{rows[key]}{s}"}
        for key, vs in values.items() for s, v in enumerate(vs)])
    frame["seed"] = frame["seed"].astype("Int64")
    meta = {"name": name, "table": spec.table, "title": spec.title, "evaluate": {"squad_v2": ["f1"]},
            "profile": {"name": "mini", "tasks": {}}, "seeds": [1, 2, 3], "seconds": 1.0, "finished": "now",
            "provenance": {"git": "x", "torch": "x", "transformers": "x", "device": "cpu"}}
    (folder / f"{name}.json").write_text(json.dumps(meta))
    frame.to_csv(folder / f"{name}.csv", index=False)
    summarize(frame, spec).to_csv(folder / f"{name}_summary.csv", index=False)
    claims = evaluate_claims(frame, spec)
    claims.to_csv(folder / f"{name}_claims.csv", index=False)
    (folder / f"{name}.png").write_bytes(b"\x89PNG")
    return claims


def test_page_shows_the_test_per_claim(tmp_path: Path) -> None:
    folder = tmp_path / "mini"
    folder.mkdir()
    t5 = _write_table(folder, "table5", {
        ("single model average without distillation", ""): [80.0, 80.2, 79.9],
        ("teachers ensemble of 3 models", ""): [81.0],
        ("KD", ""): [81.0, 81.1, 80.9], ("annealing KD", ""): [79.0, 79.2, 78.9],
        ("weighted KD", ""): [83.0, 83.1, 82.9]})
    _write_table(folder, "table3", {
        ("baseline", "ALBERT-xlarge"): [88.0, 87.8, 88.1], ("label smoothing", "ALBERT-xlarge"): [88.3, 88.1, 88.4]})
    build_report(tmp_path, "mini")
    page = (folder / "report" / "table5.html").read_text()
    for header in ("test", "n (A / B)", "statistic", "margin", "what would change it", "seeds needed"):
        assert f"<th>{header}</th>" in page, header
    ensemble = t5.set_index("claim").loc["the Weighted KD student beats the teacher ensemble"]
    assert "one-sample t vs the ensemble&#39;s single value (fixed reference)" in page
    assert f"t = {ensemble['statistic']:.2f}, df = 2.0, p = {ensemble['p_value']:.3g}" in page
    assert "<td>3 / 1</td>" in page  # n per row: three seeds against the ensemble's one value
    assert "±0.07" in page and "Weighted KD over KD" in page  # the claim's own margin and why
    assert "on the seeded row" in page and "at this spread and n: holds above" in page
    assert "one run (mtl.seed = 1)" in page  # every MTL table says it has one MTL run per arm
    t3 = (folder / "report" / "table3.html").read_text()
    assert t3.count('class="conflict"') == 4 and "its own table shows +0.3" in t3  # both readings, flagged
    assert "Both readings of ALBERT are claims below" in t3
    # 'not worse' is one-sided (lower end above -d), not the two-sided +-d of 'about equal'
    assert "−0.15 (one-sided: interval&#39;s lower end above it)" in t3 and "±0.15" not in t3
    assert "±0.07 (two-sided: interval within it)" in page and "0 (beats: interval above 0)" in page
