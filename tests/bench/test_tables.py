"""Bench tables stay readable in a log file and on a narrow terminal: every cell in full, never ``…``."""

import io

import pandas as pd
from rich.console import Console

from benchmarks.common import print_table

FRAME = pd.DataFrame({
    "config": ["ours, bucketed by length, bf16 autocast, compiled", "transformers.Trainer (group_by_length)"],
    "examples_per_s": [1234.5678, 98.7654321], "vs_trainer_best": [12.5, 1.0],
    "peak_memory_mb": [2048.0, 4096.0], "notes": ["a long note that would be cut by a squeezed column", "-"],
})
COLUMNS = list(FRAME.columns)


def _cells_in_full(text):
    assert "…" not in text
    for value in FRAME["config"].tolist() + FRAME["notes"].tolist() + ["1,235", "98.8", "12.5"]:
        assert value in text, value


def test_a_log_file_gets_plain_fixed_width_text():
    out = io.StringIO()
    print_table("Finetuning throughput", FRAME, COLUMNS, Console(file=out, width=80))  # a file: not a terminal
    text = out.getvalue()
    _cells_in_full(text)
    lines = text.splitlines()
    assert lines[0] == "Finetuning throughput" and not any(ch in text for ch in "│┃━─")
    header, rule, *rows = [line for line in lines[1:] if line]
    assert len(rows) == 2 and len(rule.split()) == len(COLUMNS) and header.split()[0] == "config"


def test_a_narrow_terminal_falls_back_to_plain_text_and_a_wide_one_gets_the_rich_table():
    narrow = io.StringIO()
    print_table("t", FRAME, COLUMNS, Console(file=narrow, width=60, force_terminal=True))
    _cells_in_full(narrow.getvalue())
    wide = io.StringIO()
    print_table("t", FRAME, COLUMNS, Console(file=wide, width=250, force_terminal=True, color_system=None))
    _cells_in_full(wide.getvalue())
    assert "│" in wide.getvalue() or "┃" in wide.getvalue()
