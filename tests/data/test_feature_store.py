"""The on-disk feature store: batches equal the in-memory features, compact layout, built once, damage rebuilt."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from road_repro.config import OptimConfig
from road_repro.data import feature_store as fs
from road_repro.data.feature_store import (
    FeatureSpec, FeatureStore, examples_digest, features_fingerprint, tokenizer_identity,
)
from road_repro.data.features import pad_collate, pair_features, qa_features
from road_repro.data.schema import Answer, ClassificationExample, QAExample
from road_repro.data.squad_v2 import load_squad_v2_json
from road_repro.data.synthetic import synthetic_squad
from road_repro.errors import DataError
from road_repro.models.model import build_model
from road_repro.config import ModelConfig
from road_repro.train.loop import EpochBatches, Pass, train
from road_repro.train.objectives import Objective, pass_losses

SPAN = FeatureSpec("span", 64, 16, 16)


@pytest.fixture(scope="module")
def qa_examples() -> list[QAExample]:
    return synthetic_squad(160, seed=3, n_facts=2, max_facts=10)


@pytest.fixture(scope="module")
def pairs() -> list[ClassificationExample]:
    texts = ["A man sleeps.", "A very long sentence about a dog that runs in the park all day", "Yes."]
    return [ClassificationExample(f"p{i}", texts[i % 3], i % 3, texts[(i + 1) % 3] if i % 4 else "") for i in range(50)]


def _in_memory(examples, tokenizer, spec: FeatureSpec) -> dict[str, torch.Tensor]:
    return qa_features(examples, tokenizer, spec.max_seq_length, spec.doc_stride, spec.max_query_length)


def test_span_batches_equal_the_in_memory_features(tmp_path, tokenizer, qa_examples) -> None:
    ref = _in_memory(qa_examples, tokenizer, SPAN)
    stored = FeatureStore(tmp_path).get(qa_examples, tokenizer, FeatureSpec("span", 64, 16, 16, offsets=True), "qa")
    assert len(stored) == len(ref["input_ids"]) > len(qa_examples)  # long contexts overflow into several windows
    rows = torch.randperm(len(stored), generator=torch.Generator().manual_seed(0))[:41]
    batch = stored.batch(rows)
    assert sorted(batch) == sorted(k for k in ref if k not in ("offsets", "example_index"))
    for key, value in batch.items():
        assert value.dtype == ref[key].dtype and torch.equal(value, ref[key][rows]), key
    assert torch.equal(stored.offsets, ref["offsets"])
    assert torch.equal(stored.column("example_index"), ref["example_index"])
    assert torch.equal(stored.labels()["start_positions"], ref["start_positions"])
    assert sorted(stored.batch(rows, targets=False)) == ["attention_mask", "input_ids", "token_type_ids"]


def test_pair_batches_equal_the_in_memory_collate(tmp_path, tokenizer, pairs) -> None:
    ref = pair_features(pairs, tokenizer, 24)
    stored = FeatureStore(tmp_path).get(pairs, tokenizer, FeatureSpec("pair", 24), "pairs")
    for rows in ([0, 1, 2], [7, 3, 40, 41, 11], list(range(50))):
        expected = pad_collate([{k: ref[k][i] for k in ref} for i in rows], tokenizer.pad_token_id)
        batch = stored.batch(torch.tensor(rows))
        assert sorted(batch) == sorted(expected)
        for key in expected:
            assert batch[key].dtype == expected[key].dtype and torch.equal(batch[key], expected[key]), key


def test_real_squad_dev_windows_round_trip(tmp_path, tokenizer, shared_data) -> None:
    examples = load_squad_v2_json(shared_data / "squad2" / "dev-v2.0.json")[:600]
    spec = FeatureSpec("span", 384, 128, 64, offsets=True)
    ref = _in_memory(examples, tokenizer, spec)
    stored = FeatureStore(tmp_path).get(examples, tokenizer, spec, "squad dev")
    rows = torch.arange(len(stored))
    for key, value in stored.batch(rows).items():
        assert torch.equal(value, ref[key]), key
    assert torch.equal(stored.offsets, ref["offsets"])


def test_layout_is_compact(tmp_path, tokenizer, qa_examples) -> None:
    """uint16 token ids, no padding, no offsets for training splits: well under the int64 in-memory size."""
    store = FeatureStore(tmp_path)
    train = store.get(qa_examples, tokenizer, SPAN, "train")
    scored = store.get(qa_examples, tokenizer, FeatureSpec("span", 64, 16, 16, offsets=True), "dev")
    assert train.dataset.features["input_ids"].feature.dtype == "uint16"
    assert "offset_start" not in train.dataset.column_names and "offset_start" in scored.dataset.column_names
    with pytest.raises(DataError, match="without character offsets"):
        _ = train.offsets
    ref = _in_memory(qa_examples, tokenizer, SPAN)
    in_memory = sum(t.numel() * t.element_size() for t in ref.values())
    assert train.nbytes * 10 < in_memory
    per_window = train.nbytes / len(train)
    tokens = float(ref["attention_mask"].sum(1).float().mean())
    assert per_window < 2 * tokens + 64  # two bytes a token plus a few fixed-size columns and Arrow framing


def test_fingerprint_follows_examples_settings_and_vocabulary_not_names(tmp_path, tokenizer, qa_examples) -> None:
    from transformers import AutoTokenizer

    ident = tokenizer_identity(tokenizer)
    tokenizer("a b c", truncation=True, max_length=2)  # run-time truncation state is not identity
    assert tokenizer_identity(tokenizer) == ident
    tokenizer.save_pretrained(tmp_path / "another-name")
    copy = AutoTokenizer.from_pretrained(tmp_path / "another-name")
    assert copy.name_or_path != tokenizer.name_or_path and tokenizer_identity(copy) == ident
    cased = AutoTokenizer.from_pretrained(tmp_path / "another-name", do_lower_case=False)
    assert tokenizer_identity(cased) != ident
    base = features_fingerprint(examples_digest(qa_examples), ident, SPAN)
    assert base == features_fingerprint(examples_digest(list(qa_examples)), ident, FeatureSpec("span", 64, 16, 16, True))
    assert base != features_fingerprint(examples_digest(qa_examples[:-1]), ident, SPAN)
    assert base != features_fingerprint(examples_digest(qa_examples), ident, FeatureSpec("span", 64, 24, 16))
    relabelled = [QAExample(e.id, e.context, e.question) for e in qa_examples]
    assert base != features_fingerprint(examples_digest(relabelled), ident, SPAN)


def test_built_once_then_mapped_by_later_processes(tmp_path, tokenizer, qa_examples) -> None:
    first = FeatureStore(tmp_path)
    a = first.get(qa_examples, tokenizer, SPAN, "qa")
    manifest = (a.path / fs.MANIFEST).stat().st_mtime_ns
    later = FeatureStore(tmp_path)  # a new process or table: maps the files, builds nothing
    b = later.get(qa_examples, tokenizer, SPAN, "qa")
    assert later.built == [] and first.built == [a.path] and b.path == a.path
    assert (b.path / fs.MANIFEST).stat().st_mtime_ns == manifest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_parallel_build_equals_one_process(tmp_path, tokenizer, qa_examples, monkeypatch) -> None:
    monkeypatch.setattr(fs, "MAP_BATCH", 40)
    one = FeatureStore(tmp_path / "one", workers=1).get(qa_examples, tokenizer, SPAN, "qa")
    two = FeatureStore(tmp_path / "two", workers=2).get(qa_examples, tokenizer, SPAN, "qa")
    assert len(two.manifest["files"]) == 2 and two.manifest["workers"] == 2
    rows = torch.arange(len(one))
    assert all(torch.equal(v, two.batch(rows)[k]) for k, v in one.batch(rows).items())
    assert torch.equal(one.column("example_index"), two.column("example_index"))


def _damage_truncate(path: Path) -> None:
    file = next(path.glob("*.arrow"))
    file.write_bytes(file.read_bytes()[:-100])


def _damage_flip(path: Path) -> None:
    file = next(path.glob("*.arrow"))
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def _damage_partial(path: Path) -> None:
    (path / fs.MANIFEST).unlink()


@pytest.mark.parametrize("damage, why", [(_damage_truncate, "another size"), (_damage_flip, "checksum"),
                                         (_damage_partial, "interrupted")])
def test_damaged_or_partial_folders_are_rebuilt(tmp_path, tokenizer, qa_examples, caplog, damage, why) -> None:
    good = FeatureStore(tmp_path).get(qa_examples, tokenizer, SPAN, "qa")
    expected = good.batch(torch.arange(len(good)))
    damage(good.path)
    store = FeatureStore(tmp_path)
    with caplog.at_level("WARNING", logger="road_repro"):
        again = store.get(qa_examples, tokenizer, SPAN, "qa")
    assert store.built == [good.path] and why in caplog.text
    assert all(torch.equal(v, expected[k]) for k, v in again.batch(torch.arange(len(again))).items())


def _race(root: str, queue) -> None:
    from transformers import AutoTokenizer

    from road_repro.models.encoder import packaged_minilm_path

    store = FeatureStore(Path(root))
    store.get(synthetic_squad(160, seed=3, n_facts=2, max_facts=10), AutoTokenizer.from_pretrained(packaged_minilm_path()), SPAN, "qa")
    queue.put(len(store.built))


def test_concurrent_processes_build_once(tmp_path) -> None:
    """Two processes (two ranks, or two tables) asking at once: one builds under the lock, the other maps it."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(queue.get() for _ in procs) == [0, 1]
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1


def test_training_from_the_store_is_bit_identical(tmp_path, tokenizer, qa_examples) -> None:
    """A few optimizer steps on batches read from the store give exactly the weights of the in-memory path."""
    ref = _in_memory(qa_examples, tokenizer, SPAN)
    stored = FeatureStore(tmp_path).get(qa_examples, tokenizer, SPAN, "qa")
    batches = EpochBatches(len(stored), 8, seed=1)
    keep = ("input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions")
    sources = {
        "memory": lambda step: [Pass("mrc", "qa", {k: ref[k][batches(step)] for k in keep})],
        "store": lambda step: [Pass("mrc", "qa", stored.batch(batches(step)))],
    }
    weights = {}
    for name, source in sources.items():
        torch.manual_seed(0)
        model = build_model(ModelConfig(preset="tiny", hidden_dropout=0.0, attention_dropout=0.0), len(tokenizer),
                            {"mrc": "span"})
        train(model, source, lambda out, p, prog: pass_losses(Objective(), out, p.batch, prog), 6,
              OptimConfig(lr=1e-3, batch_size=8), num_layers=model.num_layers, device=torch.device("cpu"),
              progress=False)
        weights[name] = model.state_dict()
    assert all(torch.equal(weights["memory"][k], weights["store"][k]) for k in weights["memory"])


def test_manifest_records_what_was_built(tmp_path, tokenizer, pairs) -> None:
    stored = FeatureStore(tmp_path).get(pairs, tokenizer, FeatureSpec("pair", 24), "pairs")
    manifest = json.loads((stored.path / fs.MANIFEST).read_text())
    assert manifest["rows"] == manifest["examples"] == 50 and manifest["id_dtype"] == "uint16"
    assert manifest["fingerprint"] == stored.fingerprint and manifest["token_types"] is True
    assert np.all([f["bytes"] > 0 for f in manifest["files"]])


def test_no_examples_is_a_data_error(tmp_path, tokenizer) -> None:
    with pytest.raises(DataError, match="empty-split: no examples"):
        FeatureStore(tmp_path).get([], tokenizer, SPAN, "empty-split")
