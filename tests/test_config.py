"""Profiles and table specs: every shipped file loads; bad settings fail early, naming the setting."""

import re
from pathlib import Path

import pytest

from road_repro.config import ABLATIONS_DIR, PROFILES_DIR, load_profile, load_table_spec
from road_repro.errors import ConfigError
from road_repro.report.summary import paper_tables

PROFILES = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
TABLES = sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml"))


def test_the_three_scales_exist():
    assert {"smoke", "mini", "paper"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("table", TABLES)
def test_every_table_resolves_at_every_scale(profile, table):
    from road_repro.experiments.preflight import table_problems

    spec = load_table_spec(table)
    prof = load_profile(profile, table=spec)
    assert table_problems(spec, prof) == []  # every task, model and pass_step a row needs exists at this scale


@pytest.mark.parametrize("table", TABLES)
def test_every_row_label_matches_the_paper_reference(table):
    spec = load_table_spec(table)
    ref = paper_tables()
    printed = set(ref[ref["table"] == spec.table]["method"])
    assert printed, f"{spec.table} not in paper_tables.csv"
    for row in spec.rows:
        assert row.method in printed, row.method
        if row.paper_model is not None:
            assert row.paper_model in set(ref[(ref["table"] == spec.table) & (ref["method"] == row.method)]["model"])


def test_paper_profile_uses_the_papers_settings():
    p = load_profile("paper")
    assert p.models["large"].name_or_path == "google/electra-large-discriminator"
    assert (p.distill.temperature, p.distill.lam, p.distill.w, p.distill.n_teachers) == (5.0, 0.9, 0.75, 3)
    assert len(p.seeds) == 5
    f = p.finetune
    assert (f.epochs, f.lr, f.batch_size, f.layerwise_lr_decay, f.warmup_ratio, f.adam_eps, f.max_grad_norm) == (
        3, 5e-5, 32, 0.9, 0.1, 1e-6, 1.0)
    assert p.models["large"].hidden_dropout == 0.1 and p.models["large"].attention_dropout == 0.1


@pytest.mark.parametrize(
    "override, setting",
    [
        ("distill.lam=1.5", "distill.lam"),
        ("distill.lam=-0.1", "distill.lam"),
        ("distill.w=0", "distill.w"),
        ("distill.w=1.2", "distill.w"),
        ("distill.temperature=0", "distill.temperature"),
        ("distill.temperature=-2", "distill.temperature"),
        ("distill.n_teachers=7", "distill.n_teachers"),
        ("finetune.lr=0", "finetune.lr"),
        ("features.doc_stride=60", "features.doc_stride"),
        ("runtime.precision=fp8", "runtime.precision"),
    ],
)
def test_bad_settings_are_named(override, setting):
    with pytest.raises(ConfigError, match=setting.replace(".", r"\.")):
        load_profile("smoke", [override])


def test_unknown_key_and_unknown_profile_are_errors():
    with pytest.raises(ConfigError, match="not_a_key"):
        load_profile("smoke", ["finetune.not_a_key=1"])
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*smoke"):
        load_profile("nope")
    with pytest.raises(ConfigError, match="unknown table spec"):
        load_table_spec("table99")


def test_bad_row_recipe_is_named(tmp_path: Path):
    spec = tmp_path / "t.yaml"
    spec.write_text("table: T5\ntitle: x\nevaluate: {squad_v2: [f1]}\nrows:\n  - {method: KD, distill: sharpened}\n")
    with pytest.raises(ConfigError, match=r"rows\[0\]\.distill='sharpened'"):
        load_table_spec(str(spec))


def test_every_paper_and_blog_table_has_a_spec_a_notebook_and_a_place_in_reproduce_all():
    import re

    ids = {load_table_spec(t).table: t for t in TABLES}
    assert set(ids) == set(paper_tables()["table"]), "every table id of paper_tables.csv has exactly one spec"
    make_tables = re.search(r"^TABLES := (.*?)\n(?!\s)", (ABLATIONS_DIR.parent / "Makefile").read_text().replace(
        "\\\n", " "), re.M | re.S).group(1).split()
    assert sorted(make_tables) == TABLES
    for table in TABLES:
        assert (ABLATIONS_DIR.parent / "notebooks" / f"{table}.ipynb").is_file(), table


@pytest.mark.parametrize("table", TABLES)
def test_every_printed_number_has_a_row(table):
    """Each (method, model) the paper prints for the table is a row of its spec (published ones included)."""
    spec = load_table_spec(table)
    ref = paper_tables()
    printed = {(m, pm) for m, pm in ref[ref["table"] == spec.table][["method", "model"]].itertuples(index=False)}
    several = len({pm for _, pm in printed}) > 1
    rows = {(r.method, r.paper_model) if several else r.method for r in spec.rows}
    for method, model in printed:
        assert ((method, model) if several else method) in rows, (method, model)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{method: x, hidden: {weight: 1.0}}", "hidden needs one teacher"),
        ("{method: x, hidden: {weight: 0}, teacher: {model: large}}", "hidden.weight=0"),
        ("{method: x, hidden: {}, distill: weighted, teacher: {model: large}}", "plain CE or distill: kd only"),
        ("{method: x, augment: {negative_questions: 1.5}}", "negative_questions=1.5"),
        ("{method: x, recipe: published, distill: kd}", "published number"),
        ("{method: x, teacher: {model: large, distilled_from: {model: large, distill: soft}}, distill: kd}",
         "distilled_from.distill='soft'"),
        ("{method: x, teacher: {model: large}}", "no distill method or hidden-state KD"),
    ],
)
def test_bad_rows_are_named(tmp_path, row, message):
    path = tmp_path / "spec.yaml"
    path.write_text(f"table: T5\ntitle: t\nevaluate: {{squad_v2: [f1]}}\nrows:\n  - {row}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_table_spec(str(path))
