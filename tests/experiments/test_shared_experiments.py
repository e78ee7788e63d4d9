"""One Experiment per command: every table of ``python -m road_repro.experiments A B --plan`` reads each split once.

Before, the preflight, and then the planner, each built a new Experiment per table, so a split that two
tables read was loaded (and validated) four times -- at the paper scale, minutes and gigabytes per rank.
"""

from __future__ import annotations

import json
from collections import Counter

import road_repro.experiments.context as context
from road_repro.config import load_profile
from road_repro.experiments.__main__ import main
from road_repro.experiments.stages import Experiment
from road_repro.experiments.tables import SharedExperiments

TABLES = ["blog_teacher", "table5"]
ARGS = ["--profile", "smoke", "--seeds", "1"] + [f"--override={o}" for o in (
    "models.large.warm_start=null", "models.base.warm_start=null", "distill.n_teachers=1",
    "tasks.squad_v2.train.limit=16", "tasks.squad_v2.dev.limit=8", "mtl.optim.batch_size=8",
    "mtl.datasets.synthetic_squad_warmup.limit=8", "mtl.datasets.synthetic_nli.limit=8",
    "mtl.datasets.synthetic_sentiment.limit=8", "mtl.datasets.synthetic_paraphrase.limit=8",
)]


def _count_loads(monkeypatch) -> Counter:
    loads: Counter = Counter()
    real = context.load_examples
    monkeypatch.setattr(context, "load_examples", lambda dataset, split, **kw: loads.update(
        [(dataset, split, kw.get("limit"))]) or real(dataset, split, **kw))
    return loads


def test_plan_of_two_tables_loads_each_split_once_and_lists_shared_stages_under_both(tmp_path, monkeypatch):
    loads = _count_loads(monkeypatch)
    assert main([*TABLES, "--plan", "--output-dir", str(tmp_path), *ARGS]) == 0
    assert len(loads) == 6 and set(loads.values()) == {1}, loads  # squad train/dev + 4 MTL datasets
    plan = json.loads((tmp_path / "smoke" / "plan.json").read_text())
    first, second = (set(plan["tables"][t]["stages"]) for t in TABLES)
    assert first & second and plan["tables"]["table5"]["shared"] == len(first & second)
    assert sorted(plan["run_ids"]) == sorted(first | second)


def test_preflight_of_two_tables_loads_each_split_once(tmp_path, monkeypatch):
    loads = _count_loads(monkeypatch)
    assert main([*TABLES, "--preflight", "--output-dir", str(tmp_path), *ARGS]) == 0
    assert loads and set(loads.values()) == {1}, loads


def test_tables_with_the_same_profile_share_one_experiment_another_profile_gets_its_own(tmp_path):
    shared = SharedExperiments(tmp_path / "runs", progress=False)
    a, b = load_profile("smoke"), load_profile("smoke")
    assert a is not b and shared.get(a) is shared.get(b) and isinstance(shared.get(a), Experiment)
    assert shared.get(load_profile("smoke", ["finetune.lr=0.1"])) is not shared.get(a)
