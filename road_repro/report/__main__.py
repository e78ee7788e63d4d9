"""``python -m road_repro.report --profile smoke [--output-dir results]``: rebuild the HTML report, then check
every table against its learning floors (:mod:`road_repro.report.floors`) and print a warning per row that
does not clear one (the report page flags the same rows). ``--strict`` exits with status 1 when any does."""

from __future__ import annotations

import argparse
import sys

from road_repro.report.floors import FLOOR_PROFILES
from road_repro.report.html import build_report, floor_misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--output-dir", default="results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a row is below its learning floor")
    args = parser.parse_args(argv)
    print(build_report(args.output_dir, args.profile))
    if args.profile not in FLOOR_PROFILES:
        return 0
    n_tables, misses = floor_misses(args.output_dir, args.profile)
    for miss in misses:
        print(f"WARNING: learning floor: {miss.message()}", file=sys.stderr)
    if misses:
        print(f"WARNING: {len(misses)} row(s) of {n_tables} table(s) below the learning floor -- see the report",
              file=sys.stderr)
    else:
        print(f"learning floors: every row of the {n_tables} table(s) clears its floor")
    return 1 if misses and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
