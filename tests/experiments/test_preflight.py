"""Fail fast: every table's settings, device, models and data are checked before the first training step,
all problems are reported together, and the command line prints one line per problem (exit status 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from road_repro.config import REPO_ROOT, load_profile
from road_repro.errors import ConfigError, RoadError
from road_repro.experiments.preflight import PreflightError
from road_repro.experiments.tables import check_tables, run_table

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"


def _bad_qqp(data_dir):
    rows = [f"{i}\t{2 * i}\t{2 * i + 1}\tHow do I learn {i}?\tWhat is the way to learn {i}?\t{i % 2}\n" for i in range(5)]
    rows[3] = "3\t6\t7\tHow do I learn 3?\tWhat is the way to learn 3?\t7\n"  # label 7: not a paraphrase label
    (data_dir / "qqp").mkdir(parents=True)
    (data_dir / "qqp" / "train.tsv").write_text(QQP_HEADER + "".join(rows))
    return data_dir / "qqp" / "train.tsv"


def test_bad_data_in_a_later_task_stops_before_anything_trains(tmp_path):
    """Table 4 trains SQuAD 2.0 and MNLI before QQP: a bad QQP label is found before any of them trains."""
    path = _bad_qqp(tmp_path / "data")
    runs = tmp_path / "runs"
    with pytest.raises(PreflightError) as err:
        run_table("table4", "smoke", output_dir=tmp_path / "out", runs_dir=runs, progress=False,
                  overrides=[f"data_dir={tmp_path / 'data'}", "tasks.qqp.train={dataset: qqp, split: train}"])
    message = str(err.value)
    assert str(path) in message and "tasks.qqp.train" in message
    assert not runs.exists() or not any(runs.iterdir())  # no run directory: nothing trained
    assert not (tmp_path / "out" / "smoke" / "table4.csv").exists()


def test_all_problems_are_reported_together():
    with pytest.raises(ConfigError) as err:
        check_tables(["table4", "table5"], "smoke", overrides=[
            "mtl.optim.lr=-1", "mtl.optim.warmup_ratio=1.5", "finetune.adam_beta2=1.0", "runtime.device=gpu",
            "tasks.mnli.train.dataset=mnly"])
    problems = err.value.problems
    assert any("mtl.optim.lr=-1.0 must lie in (0, inf)" in p for p in problems)
    assert any("mtl.optim.warmup_ratio=1.5 must lie in [0, 1)" in p for p in problems)
    assert any("finetune.adam_beta2=1.0 must lie in [0, 1)" in p for p in problems)
    assert any("runtime.device='gpu' is not a device" in p for p in problems)


def test_a_misspelled_dataset_of_a_later_task_is_named():
    with pytest.raises(PreflightError) as err:
        check_tables(["table4"], "smoke", overrides=["tasks.qqp.train.dataset=qqpp"])
    assert err.value.problems == [err.value.problems[0]] and "tasks.qqp.train: unknown dataset 'qqpp'" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_named():
    with pytest.raises(PreflightError, match=r"runtime.device='cuda' but no CUDA device is available"):
        check_tables(["table5"], "smoke", overrides=["runtime.device=cuda"])


def test_sequence_longer_than_the_models_positions():
    with pytest.raises(PreflightError, match=r"sequences of up to 2048 tokens .* models.large .* has 512 positions"):
        check_tables(["table5"], "smoke", overrides=["features.max_seq_length=2048"])


def test_packaged_minilm_positions_are_read_from_its_config(tmp_path):
    with pytest.raises(PreflightError, match=r"models.large \(minilm\) has 512 positions"):
        check_tables(["table5"], "mini", overrides=["features.max_seq_length=1024", f"data_dir={tmp_path}"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nseeds: [1, 2\nfinetune:\n  lr: 1e-3\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+: YAML syntax error"):
        load_profile(str(bad))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "road_repro.experiments", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def test_command_line_prints_one_line_and_exits_2():
    done = _cli("table5", "--profile", "smoke", "--override", "mtl.optim.lr=-1", "--preflight")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: mtl.optim.lr=-1.0 must lie in (0, inf)"]
    debug = _cli("table5", "--profile", "smoke", "--override", "mtl.optim.lr=-1", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_command_line_preflight_of_every_table_passes():
    done = _cli("table2", "table4", "table5", "blog_passstep", "--profile", "smoke", "--preflight")
    assert done.returncode == 0, done.stderr
    assert "settings, device, models, data and folders are fine" in done.stdout


#: (dotted key, values to try) for the property test: right and wrong types, out-of-range numbers, junk.
MUTABLE = [
    "finetune.lr", "finetune.epochs", "finetune.batch_size", "finetune.warmup_ratio", "finetune.layerwise_lr_decay",
    "finetune.max_grad_norm", "finetune.adam_eps", "mtl.optim.lr", "mtl.optim.steps", "mtl.optim.batch_size",
    "mtl.pass_step", "mtl.draws", "mtl.kd_lam", "distill.temperature", "distill.lam", "distill.w",
    "distill.n_teachers", "distill.t2_scale", "features.max_seq_length", "features.doc_stride",
    "features.max_query_length", "features.max_pair_length", "features.n_best_size", "runtime.device",
    "runtime.precision", "runtime.checkpoint_every", "seeds", "tasks.squad_v2.train.limit",
    "tasks.squad_v2.dev.dataset", "models.large.preset", "models.large.num_layers", "models.large.hidden_dropout",
    "mtl.datasets.synthetic_nli.split", "models.large.warm_start.steps", "nonexistent.key",
]
VALUES = st.one_of(
    st.integers(-3, 5000), st.floats(-2, 3, allow_nan=False), st.sampled_from(
        ["cpu", "cuda:7", "gpu", "bf16", "x", "", "null", "[1,1]", "[]", "true", "{a: 1}", "nan", "inf", "1e-9"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(MUTABLE), value=VALUES)
def test_any_mutation_gives_a_clean_start_or_one_config_error(key, value):
    """Never a traceback from a library: either the preflight passes or a RoadError names the problem."""
    try:
        check_tables(["table5"], "smoke", overrides=[f"{key}={value}"])
    except RoadError as exc:
        assert str(exc).strip()


def test_a_blocked_output_folder_does_not_hide_the_tables_other_problems(tmp_path):
    """Before, a blocked folder skipped the table's model and data checks: the second problem surfaced only after
    the folder was fixed. Now both come in one report, and nothing is created."""
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(PreflightError) as err:
        check_tables(["table4", "table5"], "smoke", overrides=["tasks.qqp.train.dataset=qqpp"], output_dir=blocker)
    problems = err.value.problems
    assert any(f"{blocker} is not a folder" in p and p.startswith("table4, table5: ") for p in problems)
    assert any("tasks.qqp.train: unknown dataset 'qqpp'" in p and p.startswith("table4: ") for p in problems)
    assert blocker.read_text() == "not a folder"
