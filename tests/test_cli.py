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
