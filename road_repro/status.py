"""``road-repro status [--profile P]``: how far a running or stopped ``reproduce-all`` is, and when it will end.

Reads, and never writes: ``<output-dir>/<profile>/plan.json`` (every stage of the planned tables, with its
optimizer steps and GPU-hours; written when a run starts) and the run folders in ``<output-dir>/runs/``.
A stage is *done* when its ``DONE`` marker is there; *running* when its folder exists without one and some
file in it changed in the last :data:`RUNNING_WITHIN` seconds (the training log is flushed every few
seconds); *stopped* when its folder exists but nothing changed since (a killed run: the next run resumes
it from its checkpoints); otherwise *to do*. So it works while another process trains, and on a results
folder copied from a cluster (where nothing is running).

The running stage's step, loss and examples/s come from the last row of its ``train_log.csv``. The ETA
scales the plan's GPU-hours of what is left by the measured rate: the seconds the stages finished since the
plan was written took per planned GPU-hour (config.json's ``started`` to the ``DONE`` marker), or, before
any finished, the plan's own estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from road_repro.errors import ConfigError
from road_repro.log import plain_table
from road_repro.train.train_log import read_rows

#: A started stage whose folder changed within this many seconds counts as running.
RUNNING_WITHIN = 300.0
STATES = ("done", "running", "stopped", "to do")


@dataclass
class Stage:
    """One planned stage as found on disk."""

    run_id: str
    info: dict[str, Any]
    state: str
    last_change: float | None = None
    seconds: float | None = None  # how long a stage finished during this run took
    log: dict[str, str] | None = None  # the last train_log.csv row

    @property
    def step(self) -> int:
        return int(self.log["step"]) if self.log else 0

    @property
    def fraction(self) -> float:
        steps = self.info.get("steps") or 0
        return min(1.0, self.step / steps) if steps else 0.0


def load_plan(output_dir: Path, profile: str) -> dict[str, Any]:
    """``<output_dir>/<profile>/plan.json``, its structure checked (:func:`plan_problem`) so that a damaged or
    foreign file is one error naming it, not a traceback from deep in the report."""
    path = output_dir / profile / "plan.json"
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no plan -- `road-repro run` and `make reproduce-all` write it when they start "
                          f"(`road-repro plan --profile {profile}` writes one without training)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a readable plan ({exc})") from None
    problem = plan_problem(plan)
    if problem:
        raise ConfigError(f"{path}: not a plan as `road-repro plan` writes it: {problem}")
    return plan


def plan_problem(plan: Any) -> str | None:
    """What in ``plan`` is not the shape :func:`status_text` reads, or None: an object whose ``stages`` map run
    ids to objects, whose ``tables`` map names to objects with a ``stages`` list of run ids, and whose
    ``order`` (if any) lists those tables."""
    if not isinstance(plan, dict):
        return f"a JSON {type(plan).__name__}, not an object"
    stages, tables = plan.get("stages", {}), plan.get("tables")
    if not isinstance(stages, dict) or not all(isinstance(info, dict) for info in stages.values()):
        return "'stages' must map run ids to objects"
    if not isinstance(tables, dict):
        return "'tables' (table -> its stages) is missing or not an object"
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("stages"), list) \
                or not all(isinstance(i, str) for i in table["stages"]):
            return f"tables.{name} has no 'stages' list of run ids"
    order = plan.get("order", [])
    if not isinstance(order, list) or any(not isinstance(t, str) or t not in tables for t in order):
        return "'order' must list tables that 'tables' holds"
    if not isinstance(plan.get("throughput", {}), dict):
        return "'throughput' must be an object"
    if "started" in plan and not isinstance(plan["started"], (int, float)):
        return "'started' must be a time in seconds"
    return None


def _newest_change(folder: Path) -> float:
    """The newest modification time under ``folder``; files a running stage renames away meanwhile are skipped."""
    times = []
    for p in folder.rglob("*"):
        try:
            if p.is_file():
                times.append(p.stat().st_mtime)
        except FileNotFoundError:  # an atomic write's temporary file, renamed since rglob listed it
            continue
    return max(times, default=folder.stat().st_mtime)


def _started(folder: Path) -> float | None:
    """When the stage was (last) started, from its config.json (local time, as written)."""
    try:
        return time.mktime(time.strptime(json.loads((folder / "config.json").read_text())["started"],
                                         "%Y-%m-%dT%H:%M:%S"))
    except (OSError, ValueError, KeyError):
        return None


def inspect_stage(runs_dir: Path, run_id: str, info: dict[str, Any], plan_started: float, now: float) -> Stage:
    """The state of one planned stage on disk (see the module docstring)."""
    folder = runs_dir / run_id
    if not folder.is_dir():
        return Stage(run_id, info, "to do")
    logs = sorted(folder.glob("train_log*.csv"), key=lambda p: p.stat().st_mtime)
    rows = read_rows(logs[-1]) if logs else []
    last = rows[-1] if rows else None
    done = folder / "DONE"
    if done.is_file():
        finished, started = done.stat().st_mtime, _started(folder)
        seconds = finished - started if started is not None and started >= plan_started - 1 else None
        return Stage(run_id, info, "done", finished, seconds, last)
    changed = _newest_change(folder)
    state = "running" if now - changed <= RUNNING_WITHIN else "stopped"
    return Stage(run_id, info, state, changed, None, last)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status_text(output_dir: Path, profile: str, runs_dir: Path | None = None, now: float | None = None) -> str:
    """The status report (see the module docstring) as lines of plain text."""
    plan = load_plan(output_dir, profile)
    now = time.time() if now is None else now
    runs_dir = runs_dir or output_dir / "runs"
    started = float(plan.get("started", now))
    stages = {run_id: inspect_stage(runs_dir, run_id, info, started, now)
              for run_id, info in plan.get("stages", {}).items()}
    counts = {s: sum(st.state == s for st in stages.values()) for s in STATES}
    order = plan.get("order") or list(plan.get("tables", {}))
    lines = [f"{profile} scale: {len(stages)} stages of {len(order)} tables (plan of "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, {plan.get('mode', 'plan')}): "
             + ", ".join(f"{n} {s}" for s, n in counts.items())]
    planned = sum(bool(info.get("planned_id")) for info in plan.get("stages", {}).values())
    if planned:
        lines.append(f"note: a dry run's plan: {planned} stages have planned ids (their data or models were not on "
                     "disk), so they show as to do; `road-repro run` writes the plan with the real ids")
    rows = []
    for table in order:
        ids = plan["tables"][table]["stages"]
        by_state = [sum(stages[i].state == s for i in ids if i in stages) for s in STATES]
        rows.append([table, *map(str, by_state)])
    lines += plain_table(["table", *STATES], rows, right=range(1, 5)).splitlines()

    for st in (s for s in stages.values() if s.state in ("running", "stopped")):
        what = f"{st.info.get('kind', '?')} {st.run_id}: {st.info.get('what', '')}".rstrip(": ")
        if st.log:
            steps = st.info.get("steps")
            rate = st.log.get("examples_per_s") or "?"
            progress = (f"step {st.step:,}/{steps:,}" if steps else f"step {st.step:,}") + \
                       f", loss {float(st.log['total']):.4f}, {rate} examples/s"
        else:
            progress = "no training step logged yet"
        ago = _duration(now - st.last_change) if st.last_change else "?"
        lines.append(f"{st.state}: {what} -- {progress} (last change {ago} ago)")

    timed = [s for s in stages.values() if s.state == "done" and s.seconds is not None]
    last_change = max((s.last_change for s in stages.values() if s.last_change), default=now)
    active = counts["running"] > 0
    elapsed = (now if active else min(now, last_change)) - started
    left_hours = sum(s.info.get("gpu_hours", 0.0) * (1.0 - s.fraction) for s in stages.values() if s.state != "done")
    planned_hours = sum(s.info.get("gpu_hours", 0.0) for s in timed)
    if timed and planned_hours > 0:
        rate = sum(s.seconds for s in timed) / planned_hours  # seconds per planned GPU-hour, measured
        basis = f"rate measured on the {len(timed)} stage(s) finished in this run"
    else:
        rate = 3600.0
        basis = "rate: the plan's estimate on one GPU; nothing finished in this run yet"
    unit = plan.get("throughput", {}).get("unit", "GPU-h")
    if not counts["running"] + counts["stopped"] + counts["to do"]:
        lines.append(f"finished: every stage is done; elapsed {_duration(elapsed)}")
    else:
        state = "running" if active else "not running (stopped or not started: `road-repro run` resumes it)"
        lines.append(f"{state}; elapsed {_duration(elapsed)}; left: {left_hours:.3g} {unit} of the plan, "
                     f"ETA {_duration(left_hours * rate)} ({basis})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="road-repro status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--output-dir", default="results")
    parser.add_argument("--runs-dir", default=None, help="the runs folder (default: <output-dir>/runs)")
    args = parser.parse_args(argv)
    try:
        print(status_text(Path(args.output_dir), args.profile, Path(args.runs_dir) if args.runs_dir else None))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
