"""``python -m road_repro.report --profile smoke [--output-dir results]``: rebuild the HTML report."""

from __future__ import annotations

import argparse

from road_repro.report.html import build_report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--output-dir", default="results")
    args = parser.parse_args(argv)
    print(build_report(args.output_dir, args.profile))


if __name__ == "__main__":
    main()
