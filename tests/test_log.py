"""Progress bars in a log file: plain lines every few percent, never carriage-return redraws."""

import io

from road_repro import log
from road_repro.log import PlainProgress, progress


def test_a_bar_into_a_file_writes_a_plain_line_every_few_percent():
    out = io.StringIO()
    for _ in progress(range(1000), desc="train", file=out, mininterval=0):
        pass
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and all(line.strip() for line in lines)
    assert 100 // log.PLAIN_PERCENT <= len(lines) <= 100 // log.PLAIN_PERCENT + 3  # one per 5 % (+ start, end)
    assert lines[-1].startswith("train: 100%") and "1000/1000" in lines[-1]


def test_without_a_total_a_line_every_few_minutes(monkeypatch):
    out = io.StringIO()
    clock = iter(range(0, 10_000, 30))  # each redraw is 30 s later
    monkeypatch.setattr(log.time, "monotonic", lambda: next(clock))
    bar = PlainProgress(desc="predict", file=out, mininterval=0)
    for _ in range(40):
        bar.update()
    bar.close()
    assert len(out.getvalue().splitlines()) <= 40 * 30 // log.PLAIN_SECONDS + 3


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_tqdms_own_redrawn_bar():
    out = _Tty()
    bar = progress(range(3), file=out)
    assert not isinstance(bar, PlainProgress)
    list(bar)
    assert "\r" in out.getvalue()
