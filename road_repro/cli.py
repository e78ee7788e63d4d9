"""``road-repro``: the suite's one command-line tool (also ``python -m road_repro``).

Each subcommand delegates to the entry point that ``make`` and ``python -m`` already use, so every way in
computes the same thing:

    run      compute tables, then the HTML report   (make reproduce-all / python -m road_repro.experiments)
    plan     plan the compute: stages, steps, GPU-hours, without training (make reproduce-all DRY_RUN=1)
    check    the preflight: settings, device, models and data of the tables (make reproduce TABLE=... does it first)
    report   rebuild the HTML report and check the learning floors (make report / python -m road_repro.report)
    status   how far a running or stopped run is, and when it will end (road_repro/status.py)
    export   a finished run as a Hugging Face model folder with a model card (road_repro/export.py)
    bench    speed and memory benchmarks (make bench / python -m benchmarks.run_all)
    completion  a bash completion script: ``source <(road-repro completion)``

``road-repro SUBCOMMAND --help`` says more. Bad settings or data exit with status 2 and a one-line error.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

#: The checkout this package runs from (``benchmarks/`` is there, not in the installed package).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Every table of the paper and the blog, in the Makefile's order (later tables reuse earlier ones' stages).
ALL_TABLES = ("table2", "table3", "table4", "table5", "table6", "table7", "blog_passstep", "blog_teacher",
              "blog_distilled_teacher", "blog_hidden_state", "blog_final", "blog_other_tasks")


def _tables_and_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="*", metavar="TABLE", help="tables to use (default: all 12), e.g. table5")
    p.add_argument("--profile", default="smoke", help="scale: smoke | mini | paper (default: smoke)")
    p.add_argument("--output-dir", default="results", help="results folder (default: results)")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="a setting, e.g. distill.lam=0.7")


def _experiments_argv(args: argparse.Namespace, *flags: str) -> list[str]:
    argv = [*(args.tables or ALL_TABLES), "--profile", args.profile, "--output-dir", args.output_dir, *flags]
    for item in args.override:
        argv += ["--override", item]
    if getattr(args, "seeds", None):
        argv += ["--seeds", *map(str, args.seeds)]
    return argv


def _nproc_problem(nproc: int | None) -> str | None:
    """Why ``road-repro run --nproc nproc`` cannot start, or None (it launches torchrun itself)."""
    from road_repro.errors import RoadError
    from road_repro.train.distributed import torchrun_env

    if nproc is None:
        return None
    if nproc < 1:
        return f"--nproc {nproc}: the number of GPUs must be at least 1"
    try:
        under_torchrun = torchrun_env() is not None
    except RoadError as exc:
        return str(exc)
    if nproc > 1 and under_torchrun:
        return (f"road-repro run --nproc {nproc} starts torchrun itself: run it directly, not under torchrun "
                "(or use torchrun ... -m road_repro.experiments)")
    return None


def _run(args: argparse.Namespace) -> int:
    from road_repro.experiments.__main__ import main as experiments
    from road_repro.experiments.launch import torchrun_argv
    from road_repro.report.__main__ import main as report

    nproc = args.nproc
    problem = _nproc_problem(nproc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    nproc_flags = ["--nproc", str(nproc)] if nproc is not None else []
    code = experiments(_experiments_argv(args, "--plan", *nproc_flags))  # checks all; writes plan.json for `status`
    if code:
        return code
    run_argv = _experiments_argv(args, *(["--no-progress"] if args.no_progress else []))
    if nproc is not None and nproc > 1:  # the tables through torchrun: rank 0 writes their results
        code = subprocess.run(torchrun_argv(nproc, run_argv)).returncode
    else:
        code = experiments(run_argv)
    if code or args.no_report:
        return code
    return report(["--profile", args.profile, "--output-dir", args.output_dir])


def _plan(args: argparse.Namespace) -> int:
    from road_repro.experiments.__main__ import main as experiments

    return experiments(_experiments_argv(args, "--plan" if args.full else "--dry-run",
                                         *(["--stages"] if args.stages else [])))


def _check(args: argparse.Namespace) -> int:
    from road_repro.experiments.__main__ import main as experiments

    return experiments(_experiments_argv(args, "--preflight"))


def _report(args: argparse.Namespace) -> int:
    from road_repro.report.__main__ import main as report

    return report(["--profile", args.profile, "--output-dir", args.output_dir, *(["--strict"] if args.strict else [])])


def _status(args: argparse.Namespace) -> int:
    from road_repro.status import main as status

    return status(["--profile", args.profile, "--output-dir", args.output_dir])


def _export(args: argparse.Namespace) -> int:
    from road_repro.export import main as export

    argv = [args.run_id, "--out", args.out, "--runs-dir", args.runs_dir or str(Path(args.output_dir) / "runs")]
    if args.push_to_hub:
        argv += ["--push-to-hub", args.push_to_hub]
    return export(argv)


def _bench(args: argparse.Namespace) -> int:
    """``benchmarks/`` lives in the repository, not in the installed package: run it from the checkout."""
    if not (REPO_ROOT / "benchmarks" / "run_all.py").is_file():
        print(f"error: road-repro bench needs the repository's benchmarks/ folder (not found under {REPO_ROOT})",
              file=sys.stderr)
        return 2
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.run_all import main as bench

    bench(["--out", args.out, *(["--quick"] if args.quick else []), *args.rest])
    return 0


def bash_completion(top: argparse.ArgumentParser) -> str:
    """A bash completion script for ``road-repro``: subcommands, their options, table names, profiles."""
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    cases = []
    for name, sub in subs.items():
        words = [o for a in sub._actions for o in a.option_strings]
        if name in ("run", "plan", "check"):
            words += ALL_TABLES
        cases.append(f'    {name}) words="{" ".join(words)}";;')
    return "\n".join([
        "# road-repro bash completion: source <(road-repro completion)",
        "_road_repro() {",
        '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words',
        f'  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "{" ".join(subs)}" -- "$cur")); return; fi',
        '  if [ "$prev" = "--profile" ]; then COMPREPLY=($(compgen -W "smoke mini paper" -- "$cur")); return; fi',
        '  case ${COMP_WORDS[1]} in', *cases, '    *) words="";;', "  esac",
        '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        "complete -o default -F _road_repro road-repro",
    ]) + "\n"


def _completion(args: argparse.Namespace) -> int:
    print(bash_completion(parser()), end="")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="road-repro", description="The ROaD reproduction suite (also: python -m road_repro).",
                                  epilog="Subcommand help: road-repro SUBCOMMAND --help. Documentation: README.md, docs/.")
    sub = top.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    commands: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "run": ("compute tables (cached stages are reused), then the HTML report", _run),
        "plan": ("plan the compute (stages, steps, GPU-hours) without training or downloading", _plan),
        "check": ("the preflight: settings, device, models and data of the tables", _check),
        "report": ("rebuild the HTML report from the results on disk; check the learning floors", _report),
        "status": ("stages done / running / to do per table, the running stage's step and loss, ETA", _status),
        "export": ("write a finished run as a Hugging Face model folder (weights, tokenizer, model card)", _export),
        "bench": ("speed and memory benchmarks against the Hugging Face Trainer", _bench),
        "completion": ("print a bash completion script: source <(road-repro completion)", _completion),
    }
    subs = {name: sub.add_parser(name, help=text, description=text) for name, (text, _) in commands.items()}
    for name, (_, fn) in commands.items():
        subs[name].set_defaults(fn=fn)
    for name in ("run", "plan", "check"):
        _tables_and_profile(subs[name])
    subs["run"].add_argument("--seeds", type=int, nargs="+", help="seeds to run (default: the profile's)")
    subs["run"].add_argument("--nproc", type=int, default=None,
                             help="GPUs: plan for N and compute the stages through torchrun on N processes first")
    subs["run"].add_argument("--no-report", action="store_true", help="compute the tables only")
    subs["run"].add_argument("--no-progress", action="store_true", help="no progress bars")
    subs["plan"].add_argument("--stages", action="store_true", help="one line per stage too")
    subs["plan"].add_argument("--full", action="store_true",
                              help="after the full preflight, which may download (what `run` prints first)")
    for name in ("report", "status", "export"):  # export needs no scale: the run's config.json holds its settings
        if name != "export":
            subs[name].add_argument("--profile", default="smoke", help="scale: smoke | mini | paper (default: smoke)")
        subs[name].add_argument("--output-dir", default="results", help="results folder (default: results)")
    subs["report"].add_argument("--strict", action="store_true", help="exit 1 when a row is below its learning floor")
    subs["export"].add_argument("run_id", metavar="RUN_ID", help="a finished run under <output-dir>/runs/, e.g. finetune-1a2b...")
    subs["export"].add_argument("--out", required=True, metavar="DIR", help="the folder to write")
    subs["export"].add_argument("--runs-dir", default=None, help="the runs folder (default: <output-dir>/runs)")
    subs["export"].add_argument("--push-to-hub", metavar="REPO", default=None,
                                help="also upload the folder to the Hugging Face Hub repo REPO (needs a login)")
    subs["bench"].add_argument("--out", default="results/bench", help="folder for the CSVs (default: results/bench)")
    subs["bench"].add_argument("--quick", action="store_true", help="seconds-long sizes (a pipeline check)")
    subs["bench"].add_argument("rest", nargs=argparse.REMAINDER, metavar="...",
                               help="further options of python -m benchmarks.run_all (--device, --model, --data)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
