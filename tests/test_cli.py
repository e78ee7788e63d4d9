"""``road-repro`` (``python -m road_repro``): one tool whose subcommands delegate to the existing entry points."""

import json
import re
import subprocess
import sys
import tomllib

import pytest

from road_repro import cli
from road_repro.config import REPO_ROOT

SUBCOMMANDS = ("run", "plan", "check", "report", "status", "export", "bench")
SCREEN = 40  # lines


def test_help_lists_every_subcommand_and_fits_a_screen():
    done = subprocess.run([sys.executable, "-m", "road_repro", "--help"], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={"COLUMNS": "100", "PATH": ""}, check=True)
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s+\S", done.stdout, re.M), name
    assert len(done.stdout.splitlines()) <= SCREEN


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommands_help_fits_a_screen(name, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: road-repro {name}") and len(out.splitlines()) <= SCREEN


def test_the_console_script_is_declared_and_the_tables_are_the_makefiles():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["road-repro"] == "road_repro.cli:main"
    make = (REPO_ROOT / "Makefile").read_text()
    tables = re.search(r"^TABLES := (.*?)\n\S", make, re.M | re.S).group(1).replace("\\", " ").split()
    assert tuple(tables) == cli.ALL_TABLES


def test_check_delegates_to_the_preflight_and_a_bad_setting_is_a_one_line_error(capsys):
    assert cli.main(["check", "table5", "--override", "finetune.lr=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: finetune.lr=-1.0 must lie in (0, inf)"]


def test_plan_writes_the_plan_that_status_reads(tmp_path, capsys):
    assert cli.main(["plan", "table5", "--profile", "smoke", "--output-dir", str(tmp_path)]) == 0
    plan = json.loads((tmp_path / "smoke" / "plan.json").read_text())
    assert plan["mode"] == "dry-run" and plan["order"] == ["table5"] and plan["run_ids"]
    assert "plan at the smoke scale" in capsys.readouterr().out
    assert cli.main(["status", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(plan['run_ids'])} to do" in out.splitlines()[0] and "table5" in out


def test_report_on_an_empty_results_folder(tmp_path, capsys):
    assert cli.main(["report", "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "smoke" / "report" / "index.html").is_file()


def test_bash_completion_completes_subcommands_options_and_tables(tmp_path, capsys):
    assert cli.main(["completion"]) == 0
    script = tmp_path / "road-repro.bash"
    script.write_text(capsys.readouterr().out)

    def complete(*words):
        cmd = (f"source {script}; COMP_WORDS=(road-repro {' '.join(words)}); COMP_CWORD={len(words)}; "
               "_road_repro; echo ${COMPREPLY[@]}")
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout.split()

    assert complete("st") == ["status"]
    assert complete("run", "--pro") == ["--profile"]
    assert complete("run", "--profile", "p") == ["paper"]
    assert complete("plan", "table") == ["table2", "table3", "table4", "table5", "table6", "table7"]
    assert complete("export", "--push") == ["--push-to-hub"]


class _Stop(Exception):
    """Raised by the stand-ins below where the real call would start work (exec torchrun, check and run tables)."""


@pytest.fixture
def experiments_main(monkeypatch):
    """``python -m road_repro.experiments``'s main, outside torchrun, with the preflight passing at once and
    stopping where it would exec torchrun (the command is recorded) or start the tables in this process."""
    from road_repro.experiments import __main__ as experiments

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NPROC"):
        monkeypatch.delenv(name, raising=False)
    execs = []

    def fake_exec(path, command):
        execs.append(command)
        raise _Stop("exec")

    def in_this_process(*args, **kwargs):
        raise _Stop("tables in this process")

    monkeypatch.setattr(experiments.os, "execv", fake_exec)
    monkeypatch.setattr(experiments, "check_tables", lambda *args, **kwargs: None)
    monkeypatch.setattr(experiments, "init_distributed", in_this_process)
    return experiments.main, execs


def test_nproc_outside_torchrun_runs_through_torchrun(experiments_main, tmp_path):
    main, execs = experiments_main
    with pytest.raises(_Stop, match="exec"):  # an abbreviation too: torchrun's parser sees every option in full
        main(["table5", "--npr", "2", "--output-dir", str(tmp_path), "--over", "distill.lam=0.5", "--seeds", "1", "2"])
    assert execs == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                      "-m", "road_repro.experiments", "table5", "--profile", "smoke", "--output-dir", str(tmp_path),
                      "--seeds", "1", "2", "--override", "distill.lam=0.5"]]
    with pytest.raises(_Stop, match="tables in this process"):  # one process: no torchrun
        main(["table5", "--nproc", "1", "--output-dir", str(tmp_path)])


def test_a_bad_setting_stops_before_torchrun_starts(monkeypatch, capsys, tmp_path):
    """The preflight runs in this process first: one error line, not torchrun's report of N failed workers."""
    from road_repro.experiments import __main__ as experiments

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(experiments.os, "execv", lambda *a: pytest.fail("torchrun started"))
    assert experiments.main(["table5", "--nproc", "2", "--output-dir", str(tmp_path), "--override", "finetune.lr=-1"]) == 2
    assert capsys.readouterr().err == "error: finetune.lr=-1.0 must lie in (0, inf)\n"


def test_nproc_under_torchrun_must_match_the_world_size(experiments_main, monkeypatch, capsys, tmp_path):
    main, execs = experiments_main
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("LOCAL_RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "4")
    assert main(["table5", "--nproc", "2"]) == 2 and execs == []
    assert capsys.readouterr().err == "error: --nproc 2 but this torchrun job has WORLD_SIZE=4: drop --nproc or make them agree\n"
    with pytest.raises(_Stop, match="tables in this process"):
        main(["table5", "--nproc", "4", "--output-dir", str(tmp_path)])


@pytest.mark.parametrize("flags, error", [
    (["--gpu", "A100-80GB"], "--gpu A100-80GB only sizes a plan's memory: use it with --plan or --dry-run"),
    (["--gpu", "A100-80GB", "--preflight"], "--gpu A100-80GB only sizes a plan's memory"),
    (["--nproc", "2", "--preflight"], "--nproc 2 with --preflight: the preflight starts no processes"),
    (["--nproc", "0"], "--nproc 0: the number of GPUs must be at least 1"),
])
def test_flags_that_would_change_nothing_are_errors(experiments_main, capsys, flags, error):
    main, execs = experiments_main
    assert main(["table5", *flags]) == 2 and execs == []
    assert capsys.readouterr().err.startswith(f"error: {error}")


def test_make_s_nproc_is_a_plans_default_only(experiments_main, monkeypatch, capsys, tmp_path):
    """make reproduce-all NPROC=8 exports NPROC to every step; only the plan reads it (make starts torchrun)."""
    main, execs = experiments_main
    monkeypatch.setenv("NPROC", "8")
    with pytest.raises(_Stop, match="tables in this process"):
        main(["table5", "--output-dir", str(tmp_path)])
    monkeypatch.setenv("NPROC", "eight")
    assert main(["table5", "--dry-run"]) == 2 and execs == []
    assert "NPROC='eight' in the environment must be a number of GPUs" in capsys.readouterr().err


@pytest.fixture
def run_calls(monkeypatch):
    """``road-repro run`` with the experiments, torchrun and report entry points recorded, not run."""
    from road_repro.experiments import __main__ as experiments
    from road_repro.report import __main__ as report

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(experiments, "main", lambda argv: calls.append(("experiments", argv)) or 0)
    monkeypatch.setattr(report, "main", lambda argv: calls.append(("report", argv)) or 0)
    monkeypatch.setattr(cli.subprocess, "run", lambda command: calls.append(("subprocess", command))
                        or subprocess.CompletedProcess(command, 0))
    return calls


def test_run_nproc_plans_for_n_gpus_then_runs_through_torchrun(run_calls):
    assert cli.main(["run", "table5", "--nproc", "2", "--output-dir", "out"]) == 0
    tables = ["table5", "--profile", "smoke", "--output-dir", "out"]
    assert run_calls == [
        ("experiments", [*tables, "--plan", "--nproc", "2"]),
        ("subprocess", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "road_repro.experiments", *tables]),
        ("report", ["--profile", "smoke", "--output-dir", "out"])]  # torchrun wrote the results: no rerun here
    run_calls.clear()
    assert cli.main(["run", "table5", "--output-dir", "out", "--no-report"]) == 0  # no --nproc: the profile's plan
    assert run_calls == [("experiments", [*tables, "--plan"]), ("experiments", tables)]


def test_run_nproc_under_torchrun_or_below_one_is_an_error(run_calls, monkeypatch, capsys):
    assert cli.main(["run", "table5", "--nproc", "0"]) == 2
    assert capsys.readouterr().err == "error: --nproc 0: the number of GPUs must be at least 1\n"
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("LOCAL_RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["run", "table5", "--nproc", "2"]) == 2 and run_calls == []
    assert "starts torchrun itself: run it directly, not under torchrun" in capsys.readouterr().err
