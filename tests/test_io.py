"""Atomic writers and the umask: the mode comes from the umask read once; writers never change the umask."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

import road_repro.io as rio
from road_repro.io import atomic_write, atomic_write_text, process_umask


@pytest.fixture
def umask_027():
    """The process runs under umask 027 (and the writers' cached reading of it is fresh)."""
    previous = os.umask(0o027)
    process_umask.cache_clear()
    yield
    os.umask(previous)
    process_umask.cache_clear()


def test_the_umask_is_read_once_and_never_set_by_a_write(tmp_path, umask_027, monkeypatch):
    """Before: every write set the umask to 022 and back, so a thread creating a file meanwhile got 022."""
    assert process_umask() == 0o027
    calls: list[int] = []
    real = os.umask
    monkeypatch.setattr(rio.os, "umask", lambda mask: calls.append(mask) or real(mask))

    def writes(k: int) -> None:
        for i in range(20):
            atomic_write_text(tmp_path / f"{k}-{i}.txt", "x", all_ranks=True)

    threads = [threading.Thread(target=writes, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == []
    assert real(0o027) == 0o027  # unchanged
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o640}


def test_without_proc_the_umask_is_read_by_setting_it_back(tmp_path, umask_027, monkeypatch):
    real_read = Path.read_text

    def no_proc(self: Path, *args, **kwargs) -> str:
        if str(self) == "/proc/self/status":
            raise OSError("no /proc here")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", no_proc)
    assert process_umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_a_failing_writer_leaves_no_temporary_file(tmp_path):
    def fail(tmp: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "a.txt", fail, all_ranks=True)
    assert list(tmp_path.iterdir()) == []
