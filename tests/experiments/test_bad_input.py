"""Bad input, round two (issue 21): each case stops before any compute with one line naming the setting, file
or folder and what to do, exit status 2 (with or without ``--debug``); SIGTERM and a NaN loss end with their
own exit statuses and one line saying where the checkpoint is; results are written group-readable.

The command line runs in-process (``main``) with ``--preflight`` where a check is all that is tested.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import stat
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from road_repro.config import ABLATIONS_DIR, PROFILES_DIR, OptimConfig, load_table_spec, parse_overrides, parse_seeds
from road_repro.errors import (
    EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TRAINING_STOPPED, ConfigError, TrainingError, TrainingInterrupted,
)
from road_repro.experiments import __main__ as cli
from road_repro.experiments.preflight import PreflightError, folder_problems, run_folders
from road_repro.experiments.tables import check_tables, run_table
from road_repro.io import atomic_write_csv, atomic_write_json, atomic_write_text, process_umask
from road_repro.train.checkpoint import complete_checkpoints
from road_repro.train.loop import Pass, train
from road_repro.train.objectives import Objective, pass_losses
from tests.helpers import span_batch, tiny_model

CPU = torch.device("cpu")


def run_cli(*args: str) -> tuple[int, list[str], str]:
    """``main(args)`` in this process: exit status, stderr lines, stdout. The output folder defaults to one under
    the temporary folder, not ``results/`` in the working directory (the preflight probes it)."""
    if "--output-dir" not in args:
        args = (*args, "--output-dir", str(Path(tempfile.gettempdir()) / "road-bad-input"))
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        status = cli.main(list(args))
    return status, err.getvalue().splitlines(), out.getvalue()


def one_error(*args: str) -> str:
    """Run the command line; assert it stopped with status 2 and exactly one ``error:`` line; return that line."""
    status, lines, _ = run_cli(*args)
    assert status == EXIT_BAD_INPUT, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def write_spec(folder: Path, name: str, edit) -> Path:
    """A copy of ``ablations/table5.yaml`` changed by ``edit(dict)``, written as ``folder/name.yaml``."""
    spec = yaml.safe_load((ABLATIONS_DIR / "table5.yaml").read_text())
    edit(spec)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# --- overrides ------------------------------------------------------------------------------------------------

def test_a_bare_key_is_refused_naming_the_missing_value():
    """OmegaConf reads ``KEY`` as ``KEY=null``: the smoke SQuAD cap would silently go (800 -> 2,000 examples)."""
    line = one_error("table5", "--preflight", "--override", "tasks.squad_v2.train.limit")
    assert "tasks.squad_v2.train.limit" in line and "has no '=VALUE'" in line and "=null to unset" in line
    assert "has no '=VALUE'" in one_error("table5", "--preflight", "--override", "=5")


def test_a_string_of_overrides_is_one_override_or_a_yaml_list():
    """papermill ``-p overrides "a=b"`` passes a string: one override, never its characters."""
    assert parse_overrides("distill.lam=0.7") == ["distill.lam=0.7"]
    assert parse_overrides('["distill.lam=0.7", "finetune.lr=1e-4"]') == ["distill.lam=0.7", "finetune.lr=1e-4"]
    assert parse_overrides(None) == parse_overrides("") == parse_overrides([]) == []
    with pytest.raises(ConfigError, match=r"override 3 is not a KEY=VALUE string"):
        parse_overrides(["distill.lam=0.7", 3])
    with pytest.raises(ConfigError, match=r"override 'distill.lam' has no '=VALUE'"):
        parse_overrides('["distill.lam"]')
    with pytest.raises(ConfigError, match=r"finetune.lr=-1.0 must lie in \(0, inf\)"):
        check_tables(["table5"], "smoke", overrides="finetune.lr=-1")  # as the notebooks pass it to run_table


def test_a_string_override_reaches_the_profile_through_run_table(tmp_path):
    with pytest.raises(ConfigError, match=r"finetune.lr=-1.0 must lie in \(0, inf\)"):
        run_table("table5", "smoke", output_dir=tmp_path, overrides="finetune.lr=-1", progress=False)
    assert not any(tmp_path.iterdir())  # stopped before the runs folder was made


def test_an_unknown_or_mistyped_setting_is_one_line():
    assert "unknown setting 'nonexistent'" in one_error("table5", "--preflight", "--override", "nonexistent.key=1")
    assert "finetune.lr: Value 'x'" in one_error("table5", "--preflight", "--override", "finetune.lr=x")
    assert "tasks must be a mapping, not a list" in one_error("table5", "--preflight", "--override", "tasks=[1]")
    assert "seeds must be a list, not a mapping" in one_error("table5", "--preflight", "--override", "seeds={a: 1}")
    assert "seeds=[1, [2]] must be a list of integers" in one_error("table5", "--preflight", "--override", "seeds=[1, [2]]")


# --- spec and profile structure --------------------------------------------------------------------------------

def test_two_rows_with_the_same_method_are_refused(tmp_path):
    path = write_spec(tmp_path, "dup", lambda s: s["rows"].append(dict(s["rows"][0])))
    first = "single model average without distillation"
    with pytest.raises(ConfigError, match=rf"rows\[0\] and rows\[5\] both have method '{first}'.*pooled"):
        load_table_spec(str(path))
    line = one_error(str(path), "--preflight")
    assert str(path) in line and "rows[5]" in line


def test_a_method_with_and_without_a_paper_model_is_refused(tmp_path):
    def edit(spec):
        spec["rows"].append({**spec["rows"][0], "paper_model": "ELECTRA-large"})
    first = "single model average without distillation"
    with pytest.raises(ConfigError, match=rf"method '{first}' has rows with paper_model \['ELECTRA-large'\] and a row"):
        load_table_spec(str(write_spec(tmp_path, "mixed", edit)))


def test_rows_that_differ_by_paper_model_are_fine():
    spec = load_table_spec("table3")  # baseline, label smoothing, ... for three encoders
    assert len({r.method for r in spec.rows}) < len(spec.rows)


def test_a_claim_must_name_a_row(tmp_path):
    path = write_spec(tmp_path, "claim", lambda s: s["claims"].append({**s["claims"][0], "better": "no such row"}))
    assert "claims[" in (line := one_error(str(path), "--preflight")) and "'no such row'" in line


def test_a_list_at_the_top_level_of_a_spec_or_profile_is_one_line(tmp_path):
    spec = tmp_path / "listed.yaml"
    spec.write_text(yaml.safe_dump([yaml.safe_load((ABLATIONS_DIR / "table5.yaml").read_text())]))
    assert one_error(str(spec), "--preflight") == (
        f"error: {spec}: its top level is a list; a table spec is a mapping of settings (key: value lines, "
        "e.g. `name: ...`)")
    profile = tmp_path / "listed_profile.yaml"
    profile.write_text(yaml.safe_dump([yaml.safe_load((PROFILES_DIR / "smoke.yaml").read_text())]))
    assert f"{profile}: its top level is a list; a profile" in one_error("table5", "--profile", str(profile), "--preflight")


@pytest.mark.parametrize("text, problem", [
    ("rows: {method: kd}", "rows must be a list, not a mapping"),
    ("rows: [kd, weighted]", "rows[0]: Invalid type assigned: str is not a subclass of RowSpec. value: kd"),
    ("rows: [{method: kd}]\nclaims: {better: kd}", "claims must be a list, not a mapping"),
])
def test_a_spec_of_the_wrong_shape_is_one_line(tmp_path, text, problem):
    spec = tmp_path / "shape.yaml"
    spec.write_text(f"table: T5\ntitle: t\nevaluate: {{squad_v2: [f1]}}\n{text}\n")
    assert one_error(str(spec), "--preflight") == f"error: table spec {spec}: {problem}"


# --- seeds -----------------------------------------------------------------------------------------------------

def test_seeds_from_a_notebook_string_or_a_list():
    assert parse_seeds("[1, 2]") == parse_seeds([1, 2]) == [1, 2] and parse_seeds("3") == [3] and parse_seeds(None) is None
    for bad in ("x", "[1, x]", [1.5], "{a: 1}"):
        with pytest.raises(ConfigError, match=r"must be a list of integers"):
            parse_seeds(bad)


def test_one_seed_is_fine_for_a_table_without_teachers():
    status, lines, out = run_cli("table3", "--seeds", "1", "--preflight")
    assert status == 0 and not lines and "are fine" in out
    assert "distill.n_teachers=3 teachers requested but only 1 seeds" in one_error("table5", "--seeds", "1", "--preflight")


# --- folders ---------------------------------------------------------------------------------------------------

def test_an_output_folder_under_a_file_is_found_before_compute(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_error("table5", "--preflight", "--output-dir", str(blocker / "results"))
    assert f"runs folder {blocker}/results/runs" in line and f"report folder {blocker}/results/smoke/report" in line
    assert f"{blocker} is not a folder" in line and "--output-dir" in line
    with pytest.raises(PreflightError, match="is not a folder"):  # the notebooks' way in: before any stage
        run_table("table5", "smoke", output_dir=blocker / "results", progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder (see the /sys case)")
def test_a_read_only_runs_folder_is_found_before_compute(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o500)
    try:
        line = one_error("table5", "--preflight", "--output-dir", str(tmp_path / "out"), "--runs-dir", str(runs))
    finally:
        runs.chmod(0o700)
    assert f"runs folder {runs}: cannot write in {runs}" in line and "--runs-dir" in line


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs, where no one can create a file")
def test_a_folder_no_one_can_write_is_found_even_by_root(tmp_path):
    """A real probe, not ``os.access`` (which says yes to root): sysfs refuses new files to everyone."""
    line = one_error("table5", "--preflight", "--output-dir", str(tmp_path), "--runs-dir", "/sys/road-runs")
    assert line.startswith("error: runs folder /sys/road-runs, features folder /sys/features: cannot write in /sys")
    line = one_error("table5", "--dry-run", "--output-dir", "/sys/road-results")  # the dry run writes plan.json
    assert line.startswith("error: output folder /sys/road-results/smoke: cannot write in /sys (")
    assert line.endswith("; choose another with --output-dir, or make that a writable folder")


def test_writable_folders_pass(tmp_path):
    assert folder_problems(run_folders(tmp_path / "new" / "deep", None, "smoke")) == []
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert list(tmp_path.iterdir()) == []


def test_a_spec_given_as_a_path_writes_into_the_output_dir(tmp_path):
    """Before: ``<output_dir>/<profile>/<absolute spec path>.csv`` joined to the spec's own folder."""
    specs = tmp_path / "specs"
    specs.mkdir()
    spec = specs / "quoted.yaml"
    spec.write_text("table: T5\ntitle: a quoted number only\nevaluate: {squad_v2: [f1]}\n"
                    "rows:\n  - {method: ensemble, recipe: published}\n")
    status, lines, _ = run_cli(str(spec), "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert status == 0, lines
    assert sorted(p.name for p in specs.iterdir()) == ["quoted.yaml"]
    written = tmp_path / "out" / "smoke"
    assert {"quoted.csv", "quoted_summary.csv", "quoted.json"} <= {p.name for p in written.iterdir()}


# --- exit statuses: --debug, SIGTERM, NaN ----------------------------------------------------------------------

def test_debug_shows_the_traceback_and_keeps_status_2():
    status, lines, _ = run_cli("table5", "--preflight", "--override", "mtl.optim.lr=-1", "--debug")
    assert status == EXIT_BAD_INPUT
    assert lines[0] == "Traceback (most recent call last):" and lines[-1] == "error: mtl.optim.lr=-1.0 must lie in (0, inf)"


def _ce(out, p, progress):
    return pass_losses(Objective(), out, p.batch, progress)


def _train(ckpt: Path, steps: int, step_source, loss=_ce, checkpoint_every: int = 0):
    return train(tiny_model(), step_source, loss, steps, OptimConfig(), num_layers=2, device=CPU, progress=False,
                 checkpoint_dir=ckpt, checkpoint_every=checkpoint_every)


def _nan_from(step_nan: int):
    def loss(out, p, progress):
        total = _ce(out, p, progress)["total"]
        return {"total": total * float("nan") if p.dataset == f"d{step_nan}" else total}
    return loss


def test_sigterm_exits_143_with_one_line_naming_the_saved_checkpoint(tmp_path, monkeypatch):
    ckpt = tmp_path / "run" / "checkpoints"

    def sigterm_in_step_1(step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return [Pass("mrc", "d", span_batch(2, seed=step))]

    monkeypatch.setattr(cli, "run_table", lambda *a, **k: _train(ckpt, 5, sigterm_in_step_1))
    status, lines, _ = run_cli("table5", "--output-dir", str(tmp_path / "out"))
    assert status == EXIT_INTERRUPTED == 143
    assert lines == [f"interrupted: SIGTERM after step 2 of 5; checkpoint saved in {ckpt}; rerun the same command to resume"]
    assert [p.name for p in complete_checkpoints(ckpt)] == ["step-00000002"]


def test_a_nan_loss_exits_3_naming_the_checkpoint_that_exists(tmp_path, monkeypatch):
    ckpt = tmp_path / "checkpoints"
    source = lambda step: [Pass("mrc", f"d{step}", span_batch(2, seed=step))]  # noqa: E731
    monkeypatch.setattr(cli, "run_table", lambda *a, **k: _train(ckpt, 5, source, _nan_from(3), checkpoint_every=1))
    status, lines, _ = run_cli("table5", "--output-dir", str(tmp_path / "out"))
    assert status == EXIT_TRAINING_STOPPED == 3 and len(lines) == 1
    newest = ckpt / "step-00000003"
    assert lines[0].startswith("training stopped: non-finite loss nan at step 3, pass 0 (dataset 'd3'")
    assert f"the newest checkpoint is {newest}; a rerun of the same command resumes from it" in lines[0]
    assert complete_checkpoints(ckpt)[-1] == newest


def test_a_nan_loss_before_any_checkpoint_names_none(tmp_path):
    source = lambda step: [Pass("mrc", f"d{step}", span_batch(2, seed=step))]  # noqa: E731
    with pytest.raises(TrainingError) as err:
        _train(tmp_path / "checkpoints", 5, source, _nan_from(1), checkpoint_every=3)
    assert not isinstance(err.value, TrainingInterrupted)
    assert "no checkpoint of this stage was written, so a rerun starts it again" in str(err.value)
    assert str(tmp_path) not in str(err.value) and not (tmp_path / "checkpoints").exists()


# --- problems once, files group-readable -----------------------------------------------------------------------

def test_a_file_read_by_two_splits_is_reported_once_naming_both(tmp_path):
    """The mini profile reads MNLI as a task and as an MTL dataset: one broken file was two problems."""
    data = tmp_path / "data" / "qqp"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                    "0\t1\t2\tHow do I learn?\tWhat is the way to learn?\t7\n")
    line = one_error("table4", "--preflight", "--override", f"data_dir={tmp_path / 'data'}",
                     "--override", "tasks.qqp.train={dataset: qqp, split: train}",
                     "--override", "mtl.datasets.qqp={dataset: qqp, split: train, limit: 3}")
    assert line.startswith("error: mtl.datasets.qqp (qqp:train), tasks.qqp.train (qqp:train): ")
    assert line.count("label '7'") == 1


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_results_get_the_mode_of_a_plain_open(tmp_path, umask, mode):
    import pandas as pd

    previous = os.umask(umask)
    process_umask.cache_clear()  # the writers read the umask once: this test changes it
    try:
        paths = [atomic_write_text(tmp_path / "a.txt", "x"), atomic_write_json(tmp_path / "b.json", {"a": 1}),
                 atomic_write_csv(tmp_path / "c.csv", pd.DataFrame({"a": [1]}))]
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
        assert os.umask(umask) == umask  # the writers left the umask as it was
    finally:
        os.umask(previous)
        process_umask.cache_clear()
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths} == {plain} == {mode}


# --- the command line under random overrides -------------------------------------------------------------------

KEYS = ["finetune.lr", "finetune.batch_size", "finetune.epochs", "distill.lam", "distill.n_teachers",
        "distill.t2_scale", "features.max_seq_length", "features.doc_stride", "runtime.device", "runtime.precision",
        "seeds", "tasks.squad_v2.train.limit", "tasks.squad_v2.dev", "models.large", "models.large.preset",
        "mtl.datasets", "mtl.pass_step", "name", "tasks", "nonexistent", "finetune.no_such_key", "models.large.nope"]
VALUES = st.sampled_from(["1", "0", "-1", "2.5", "1e-9", "x", "", "null", "true", "[]", "[1, 2]", "[a]", "{}",
                          "{a: 1}", "cpu", "cuda:9", "nan", "'[1]'", "${oops}", "[1, [2]]"])
OVERRIDE = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), VALUES),  # right and wrong types, lists, mappings
    st.sampled_from(KEYS),  # bare keys
    st.builds(lambda k, v: f"{k}={v}", st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,8}){0,2}", fullmatch=True), VALUES),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(OVERRIDE, min_size=1, max_size=3))
@example(overrides=["x_kz=[a]", "x_kz._=1"])  # OmegaConf raised a bare ValueError (a list indexed by '_')
def test_any_command_line_starts_cleanly_or_stops_with_one_line_per_problem(overrides):
    """Never a library traceback: status 0, or status 2 with one ``error:`` line (or a count, then one per problem)."""
    status, lines, out = run_cli("table5", "--preflight", *[a for o in overrides for a in ("--override", o)])
    if status == 0:
        assert "are fine" in out and not [line for line in lines if line.startswith("error")]
        return
    assert status == EXIT_BAD_INPUT, lines
    assert lines and all(line.startswith("error: ") for line in lines), lines
    assert len(set(lines)) == len(lines), lines
    if len(lines) > 1:
        assert lines[0] == f"error: {len(lines) - 1} problems found before any training:", lines


def test_every_notebook_declares_its_parameters_so_papermill_reads_them():
    """papermill cannot read ``name = value  # comment`` when the comment holds '=': it then warns "Passed unknown
    parameter: overrides" for a parameter that does exist (it is still injected, but the user is told otherwise)."""
    import nbformat
    from papermill.translators import PythonTranslator

    for path in sorted((ABLATIONS_DIR.parent / "notebooks").glob("*.ipynb")):
        cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        names = [p.name for p in PythonTranslator.inspect(cell)]
        assert names == ["profile", "seeds", "output_dir", "runs_dir", "overrides", "progress"], path.name


def test_scale_overrides_follow_the_profiles_name_and_unknown_scales_are_named(tmp_path):
    """A copy of paper.yaml under another file name keeps the spec's paper-only settings; a misspelt scale in
    scale_overrides stops with one line naming it."""
    import shutil

    from road_repro.config import PROFILES_DIR, load_profile, load_table_spec

    copy = tmp_path / "paper_h100.yaml"
    shutil.copy(PROFILES_DIR / "paper.yaml", copy)
    spec = load_table_spec("blog_other_tasks")
    assert spec.scale_overrides.get("paper"), "blog 6b sets ELECTRA's base settings at the paper scale"
    assert load_profile(str(copy), table=spec).finetune.lr == load_profile("paper", table=spec).finetune.lr
    bad = tmp_path / "spec.yaml"
    bad.write_text((ABLATIONS_DIR / "blog_other_tasks.yaml").read_text().replace("scale_overrides:\n  paper:",
                                                                               "scale_overrides:\n  papr:"))
    with pytest.raises(ConfigError, match="scale_overrides.papr names no profile"):
        load_table_spec(str(bad))
