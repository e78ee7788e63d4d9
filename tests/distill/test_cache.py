"""The soft-target cache: float16 by default (recorded), memory-mapped reads, atomic writes, torn and stale files."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from road_repro.distill import SOFT_TARGET_DTYPE, dtype_name, open_soft_targets, save_soft_targets, write_soft_targets
from road_repro.errors import ConfigError, DataError

META = {"teacher": "run-abc", "train_fingerprint": "f00d", "features": "4", "heads": "start_logits,end_logits"}
ALL = np.arange(4)


def _targets(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"start_logits": torch.randn(4, 6, generator=gen) * 8, "end_logits": torch.randn(4, 6, generator=gen) * 8}


def test_round_trip_is_float16_recorded_and_atomic(tmp_path: Path) -> None:
    assert SOFT_TARGET_DTYPE == torch.float16
    path = tmp_path / "soft_targets.safetensors"
    tensors = _targets()
    save_soft_targets(path, tensors, META)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    cache = open_soft_targets(path, expect={"teacher": "run-abc", "train_fingerprint": "f00d"})
    assert cache.metadata == {**META, "dtype": "float16"} and cache.dtype == torch.float16
    with safe_open(str(path), "pt") as fh:  # a plain safetensors file, float16 in its header too
        assert {fh.get_slice(name).get_dtype() for name in fh.keys()} == {"F16"}
    for name in tensors:
        assert isinstance(cache.arrays[name], np.memmap) and cache.shape(name) == (4, 6)
        got = cache.rows(name, ALL)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, tensors[name].half().float(), rtol=0, atol=0)
        torch.testing.assert_close(load_file(str(path))[name].float(), got, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_other_storage_dtypes_on_request(tmp_path: Path, dtype: torch.dtype) -> None:
    path = tmp_path / "other.safetensors"
    tensors = _targets()
    save_soft_targets(path, tensors, META, dtype=dtype)
    cache = open_soft_targets(path)
    assert cache.dtype == dtype and cache.metadata["dtype"] == str(dtype).removeprefix("torch.")
    rows = np.array([3, 0, 3])
    torch.testing.assert_close(cache.rows("end_logits", rows), tensors["end_logits"][rows].to(dtype).float(),
                               rtol=0, atol=0)
    with pytest.raises(ConfigError, match="dtype"):
        save_soft_targets(path, tensors, META, dtype=torch.float64)


def test_overwrite_replaces_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "st.safetensors"
    save_soft_targets(path, _targets(0), META)
    old = open_soft_targets(path)
    save_soft_targets(path, _targets(1), {**META, "teacher": "run-def"})
    cache = open_soft_targets(path)
    assert cache.metadata["teacher"] == "run-def"
    torch.testing.assert_close(cache.rows("end_logits", ALL), _targets(1)["end_logits"].half().float())
    # a map opened before the atomic replace still reads the old file (its inode), never a torn mix
    torch.testing.assert_close(old.rows("end_logits", ALL), _targets(0)["end_logits"].half().float())


@pytest.mark.parametrize("keep", [0, 5, 40, -3, -200])
def test_torn_file_is_a_data_error_naming_the_file(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "torn.safetensors"
    save_soft_targets(path, _targets(), META)
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(DataError, match="torn.safetensors.*torn"):
        open_soft_targets(path)


def test_extra_bytes_or_a_garbled_header_are_torn(tmp_path: Path) -> None:
    path = tmp_path / "long.safetensors"
    save_soft_targets(path, _targets(), META)
    data = path.read_bytes()
    path.write_bytes(data + b"\0" * 16)
    with pytest.raises(DataError, match="long.safetensors.*torn"):
        open_soft_targets(path)
    (n,) = struct.unpack("<Q", data[:8])
    path.write_bytes(data[:8] + b"{" * n + data[8 + n:])
    with pytest.raises(DataError, match="long.safetensors.*torn"):
        open_soft_targets(path)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.safetensors.*missing"):
        open_soft_targets(tmp_path / "nothere.safetensors")


def test_metadata_mismatch_is_a_stale_cache(tmp_path: Path) -> None:
    path = tmp_path / "st.safetensors"
    save_soft_targets(path, _targets(), META)
    with pytest.raises(DataError, match=r"st.safetensors.*train_fingerprint='f00d'.*'beef'"):
        open_soft_targets(path, expect={"train_fingerprint": "beef"})
    with pytest.raises(DataError, match="seed=None"):
        open_soft_targets(path, expect={"seed": "1"})


def test_recorded_dtype_must_match_the_stored_tensors(tmp_path: Path) -> None:
    path = tmp_path / "liar.safetensors"
    save_file({"logits": torch.zeros(4, 3, dtype=torch.float16)}, str(path), metadata={"dtype": "float32"})
    with pytest.raises(DataError, match="liar.safetensors.*dtype='float32'.*float16"):
        open_soft_targets(path)
    save_file({"logits": torch.zeros(4, 3, dtype=torch.float64)}, str(path))
    with pytest.raises(DataError, match="liar.safetensors.*F64"):
        open_soft_targets(path)


def test_non_string_or_reserved_metadata_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="features"):
        save_soft_targets(tmp_path / "x.safetensors", _targets(), {"features": 4})  # type: ignore[dict-item]
    with pytest.raises(DataError, match="'dtype' is reserved"):
        save_soft_targets(tmp_path / "x.safetensors", _targets(), {"dtype": "float32"})
    with pytest.raises(DataError, match="floating"):
        save_soft_targets(tmp_path / "x.safetensors", {"labels": torch.zeros(4, dtype=torch.long)}, META)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("bad", [7e4, float("nan"), float("inf")])
def test_logits_float16_cannot_hold_are_a_data_error(tmp_path: Path, bad: float) -> None:
    """Past |x| = 65504 float16 saturates to inf: a diverged teacher is reported, never stored as inf."""
    tensors = _targets()
    tensors["start_logits"][2, 1] = bad
    with pytest.raises(DataError, match=r"big.safetensors.*'start_logits' is not finite as float16"):
        save_soft_targets(tmp_path / "big.safetensors", tensors, META)
    assert not list(tmp_path.iterdir())
    if bad == 7e4:  # bfloat16 has float32's range, on request
        save_soft_targets(tmp_path / "big.safetensors", tensors, META, dtype=torch.bfloat16)
        assert open_soft_targets(tmp_path / "big.safetensors").rows("start_logits", np.array([2]))[0, 1] == 70144.0


# -- streamed writes -----------------------------------------------------------------------------------------


def _chunks(tensors: dict[str, torch.Tensor], size: int, order=None):
    starts = list(range(0, len(next(iter(tensors.values()))), size))
    for lo in (starts if order is None else [starts[i] for i in order]):
        yield lo, {name: t[lo : lo + size] for name, t in tensors.items()}


def _shapes(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in tensors.items()}


def _big(n: int = 10, length: int = 6, seed: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"start_logits": torch.randn(n, length, generator=gen) * 8,
            "end_logits": torch.randn(n, length, generator=gen) * 8}


def _split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("order", [None, [2, 0, 3, 1], [3, 2, 1, 0]])
def test_streamed_file_equals_the_one_shot_file(tmp_path: Path, order, dtype: torch.dtype) -> None:
    tensors = _big()
    whole = save_soft_targets(tmp_path / "whole.safetensors", tensors, META, dtype)
    streamed = write_soft_targets(tmp_path / "streamed.safetensors", _shapes(tensors), META,
                                  _chunks(tensors, 3, order), dtype)  # chunks of 3, 3, 3, 1 rows
    assert streamed.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.safetensors", "whole.safetensors"]
    # and both are what safetensors itself writes: the same header entries and metadata, the same data bytes
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.to(dtype) for k, v in tensors.items()}, str(plain), metadata={**META, "dtype": dtype_name(dtype)})
    assert _split(streamed) == _split(plain)
    loaded = load_file(str(streamed))
    for name, t in tensors.items():
        assert loaded[name].dtype == dtype
        torch.testing.assert_close(loaded[name], t.to(dtype), rtol=0, atol=0)
    assert open_soft_targets(streamed, expect=META).metadata == {**META, "dtype": dtype_name(dtype)}


def test_generator_chunks_and_empty_chunks_and_numpy_offsets(tmp_path: Path) -> None:
    tensors = _big(7, 4)
    chunks = [(np.int64(4), {k: v[4:] for k, v in tensors.items()}), (0, {k: v[:0] for k, v in tensors.items()}),
              (0, {k: v[:4] for k, v in tensors.items()})]
    path = write_soft_targets(tmp_path / "s.safetensors", _shapes(tensors), {}, iter(chunks))
    cache = open_soft_targets(path)
    for name, t in tensors.items():
        torch.testing.assert_close(cache.rows(name, np.arange(7)), t.half().float(), rtol=0, atol=0)


@pytest.mark.parametrize("case", ["missing", "doubled", "overlap", "outside", "wrong names", "wrong width",
                                  "ragged", "not floating"])
def test_bad_chunks_are_a_data_error_and_leave_no_file(tmp_path: Path, case: str) -> None:
    tensors = _big()
    chunks = list(_chunks(tensors, 3))
    match = {"missing": r"3 of 10 rows were never written \(rows \[6, 9\)\)",
             "doubled": r"rows \[3, 6\) overlap rows \[3, 6\)", "overlap": r"rows \[2, 5\) overlap rows \[0, 3\)",
             "outside": r"rows \[9, 12\) are outside the cache's 10 rows", "wrong names": "holds \\['end_logits'\\]",
             "wrong width": r"'start_logits' rows have shape \(5,\)", "ragged": "different lengths",
             "not floating": "must be a floating tensor"}[case]
    if case == "missing":
        del chunks[2]
    elif case == "doubled":
        chunks.insert(3, chunks[1])
    elif case == "overlap":
        chunks.insert(1, (2, {k: v[2:5] for k, v in tensors.items()}))
    elif case == "outside":
        chunks.append((9, {k: torch.zeros(3, 6) for k in tensors}))
    elif case == "wrong names":
        chunks[1] = (3, {"end_logits": tensors["end_logits"][3:6]})
    elif case == "wrong width":
        chunks[1] = (3, {"start_logits": torch.zeros(3, 5), "end_logits": torch.zeros(3, 6)})
    elif case == "ragged":
        chunks[1] = (3, {"start_logits": torch.zeros(3, 6), "end_logits": torch.zeros(2, 6)})
    else:
        chunks[1] = (3, {"start_logits": torch.zeros(3, 6, dtype=torch.long), "end_logits": torch.zeros(3, 6)})
    with pytest.raises(DataError, match=f"bad.safetensors.*{match}"):
        write_soft_targets(tmp_path / "bad.safetensors", _shapes(tensors), META, chunks)
    assert not list(tmp_path.iterdir())  # neither the file nor its temporary file


def test_a_failed_stream_keeps_the_old_file(tmp_path: Path) -> None:
    path = save_soft_targets(tmp_path / "st.safetensors", _big(seed=1), META)
    old = path.read_bytes()
    tensors = _big(seed=2)
    with pytest.raises(DataError, match="never written"):
        write_soft_targets(path, _shapes(tensors), META, list(_chunks(tensors, 4))[:-1])
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("bad", [7e4, float("nan"), float("-inf")])
def test_streamed_values_float16_cannot_hold_are_a_data_error(tmp_path: Path, bad: float) -> None:
    tensors = _big()
    tensors["end_logits"][7, 2] = bad
    peak = "inf" if bad != 7e4 else "70000"
    with pytest.raises(DataError, match=rf"big.safetensors: 'end_logits' is not finite as float16 "
                                         rf"\(largest magnitude {peak} in rows \[6, 9\)"):
        write_soft_targets(tmp_path / "big.safetensors", _shapes(tensors), META, _chunks(tensors, 3))
    assert not list(tmp_path.iterdir())


def test_bad_settings_are_refused_before_any_chunk_is_read(tmp_path: Path) -> None:
    def never():
        raise AssertionError("chunks were read")
        yield

    for shapes, meta, err, match in [
        ({}, META, DataError, "no tensors"),
        ({"a": (4, 2), "b": (5, 2)}, META, DataError, "same rows"),
        ({"a": ()}, META, DataError, r"\[N, ...\] shape"),
        ({"a": (4, 2)}, {"dtype": "float16"}, DataError, "reserved"),
        ({"a": (4, 2)}, {"n": 4}, DataError, "must map a string"),
    ]:
        with pytest.raises(err, match=match):
            write_soft_targets(tmp_path / "x.safetensors", shapes, meta, never())
    with pytest.raises(ConfigError, match="dtype"):
        write_soft_targets(tmp_path / "x.safetensors", {"a": (4, 2)}, META, never(), torch.float64)
    assert not list(tmp_path.iterdir())


def test_streaming_holds_one_chunk_not_the_whole_tensor(tmp_path: Path) -> None:
    """N=20000 rows of L=64 in chunks of 250: the float32 logits would be 2 x 5 MB, the float16 file 5 MB."""
    n, length, size = 20_000, 64, 250
    whole_fp32 = 2 * n * length * 4

    def chunks():  # numpy-backed chunks: numpy reports its allocations to tracemalloc (torch's allocator does not)
        for lo in range(0, n, size):
            rows = np.arange(lo, min(lo + size, n), dtype=np.float32)[:, None] / 1000
            yield lo, {"start_logits": torch.from_numpy(rows + np.zeros(length, np.float32)),
                       "end_logits": torch.from_numpy(-rows + np.zeros(length, np.float32))}

    shapes = {"start_logits": (n, length), "end_logits": (n, length)}
    write_soft_targets(tmp_path / "warm.safetensors", {k: (size, length) for k in shapes}, META,
                       [(0, next(chunks())[1])])  # warm up (first-call allocations)
    tracemalloc.start()
    try:
        write_soft_targets(tmp_path / "big.safetensors", shapes, META, chunks())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = list(chunks())  # check the measurement: holding every chunk shows
        _, whole_peak = tracemalloc.get_traced_memory()
        del held
    finally:
        tracemalloc.stop()
    chunk_fp32 = 2 * size * length * 4
    assert whole_peak >= whole_fp32
    assert peak < 4 * chunk_fp32 < whole_fp32 // 10, (peak, chunk_fp32, whole_fp32)
    cache = open_soft_targets(tmp_path / "big.safetensors")
    rows = np.array([0, 249, 250, 12_345, n - 1])
    expect = torch.from_numpy(rows).float()[:, None] / 1000 + torch.zeros(length)
    torch.testing.assert_close(cache.rows("start_logits", rows), expect.half().float(), rtol=0, atol=0)
    torch.testing.assert_close(cache.rows("end_logits", rows), (-expect).half().float(), rtol=0, atol=0)


def test_other_ranks_consume_and_check_the_chunks_but_write_nothing(tmp_path: Path, monkeypatch) -> None:
    """Under torchrun every rank gets every chunk (the teacher's predict gathers rows); only rank 0 writes."""
    import road_repro.distill.cache as cache_module
    import road_repro.io as io_module

    for module in (cache_module, io_module):
        monkeypatch.setattr(module, "is_main", lambda: False)
    tensors = _big()
    seen = []

    def chunks():
        for lo, chunk in _chunks(tensors, 3):
            seen.append(lo)
            yield lo, chunk

    path = tmp_path / "st.safetensors"
    assert write_soft_targets(path, _shapes(tensors), META, chunks()) == path
    assert seen == [0, 3, 6, 9] and not list(tmp_path.iterdir())
    with pytest.raises(DataError, match="never written"):  # the same checks as rank 0: every rank fails alike
        write_soft_targets(path, _shapes(tensors), META, list(_chunks(tensors, 3))[1:])
