"""Which weights file a checkpoint loads from: safetensors where it ships them, else the ``.bin`` read with
``torch.load(weights_only=True)`` and said once; a checkpoint without weights (an incomplete offline cache)
is named before any compute. Fake model folders hold a tiny BERT saved three ways."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForMaskedLM

from road_repro.config import ModelConfig
from road_repro.errors import ConfigError
from road_repro.models import encoder
from road_repro.models.encoder import load_encoder, resolve_weights

TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)


def fake_model(folder: Path, weights: str) -> tuple[Path, BertForMaskedLM]:
    """A tiny BERT (with its masked-LM head, as on the hub) saved as ``bin`` only, ``safetensors`` only or
    ``none`` (config only)."""
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**TINY))
    folder.mkdir()
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights == "bin":
        torch.save(state, folder / "pytorch_model.bin")
    elif weights == "safetensors":
        model.save_pretrained(folder)  # transformers writes model.safetensors only
    return folder, model


@pytest.mark.parametrize("weights, kind, filename", [("bin", "bin", "pytorch_model.bin"),
                                                    ("safetensors", "safetensors", "model.safetensors")])
def test_weights_resolve_to_the_file_the_folder_has(tmp_path, weights, kind, filename):
    folder, _ = fake_model(tmp_path / "m", weights)
    resolved = resolve_weights(ModelConfig(name_or_path=str(folder)))
    assert (resolved.kind, resolved.path) == (kind, folder / filename)


def test_safetensors_win_over_bin(tmp_path):
    folder, model = fake_model(tmp_path / "m", "safetensors")
    torch.save({}, folder / "pytorch_model.bin")
    assert resolve_weights(ModelConfig(name_or_path=str(folder))).kind == "safetensors"


def test_config_only_folder_is_named_before_any_loading(tmp_path):
    folder, _ = fake_model(tmp_path / "m", "none")
    with pytest.raises(ConfigError, match=r"m' \(revision main\): no weights file \(model.safetensors, .*pytorch_model.bin"):
        resolve_weights(ModelConfig(name_or_path=str(folder)))
    with pytest.raises(ConfigError, match="no weights file"):
        load_encoder(ModelConfig(name_or_path=str(folder)), TINY["vocab_size"])


@pytest.mark.parametrize("weights", ["bin", "safetensors"])
def test_encoder_loads_the_trained_weights_either_way(tmp_path, weights, caplog, monkeypatch):
    monkeypatch.setattr(encoder, "_said_bin", set())
    caplog.set_level("WARNING", logger="road_repro")
    folder, model = fake_model(tmp_path / "m", weights)
    cfg = ModelConfig(name_or_path=str(folder), hidden_dropout=0.0, attention_dropout=0.0)
    loaded = load_encoder(cfg, TINY["vocab_size"])
    load_encoder(cfg, TINY["vocab_size"])
    for name, tensor in model.bert.state_dict().items():
        if not name.startswith("pooler"):
            assert torch.equal(loaded.state_dict()[name], tensor), name
    ids = torch.tensor([[1, 5, 7, 2]])
    model.eval(), loaded.eval()
    assert torch.allclose(loaded(input_ids=ids).last_hidden_state, model.bert(input_ids=ids).last_hidden_state, atol=1e-6)
    said = [r.getMessage() for r in caplog.records if "no safetensors" in r.getMessage()]
    if weights == "bin":  # never silently, and once per model
        assert len(said) == 1 and "torch.load(weights_only=True)" in said[0] and "pytorch_model.bin" in said[0]
    else:
        assert said == []


def test_bin_is_read_with_weights_only(tmp_path, monkeypatch):
    """A pickled object that is not a tensor is refused (weights_only=True), not executed."""
    folder, _ = fake_model(tmp_path / "m", "none")
    torch.save({"weight": torch.zeros(1), "payload": logging.getLogger("x")}, folder / "pytorch_model.bin")
    with pytest.raises(ConfigError, match=r"pytorch_model.bin: not a plain tensor checkpoint; torch.load\(weights_only=True\) refused"):
        encoder.load_bin_state_dict(folder / "pytorch_model.bin")


def test_sharded_bin_index_loads_every_shard(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save({"a": torch.ones(1)}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(2)}, folder / "pytorch_model-00002-of-00002.bin")
    (folder / "pytorch_model.bin.index.json").write_text(
        '{"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}')
    state = encoder.bin_state_dict(resolve_weights(ModelConfig(name_or_path=str(folder))))
    assert sorted(state) == ["a", "b"] and state["b"].shape == (2,)


def sharded_model(folder: Path, weights: str) -> tuple[Path, BertForMaskedLM]:
    """The tiny BERT saved in several shards with their index: ``safetensors`` as transformers shards it,
    ``bin`` the same shards written with torch.save and a ``pytorch_model.bin.index.json``."""
    folder, model = fake_model(folder, "safetensors")
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="20KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 3  # really sharded
    if weights == "bin":
        rename = {f: f.replace("model", "pytorch_model").replace(".safetensors", ".bin")
                  for f in set(index["weight_map"].values())}
        for old, new in rename.items():
            torch.save(load_file(str(folder / old)), folder / new)
            (folder / old).unlink()
        index["weight_map"] = {k: rename[v] for k, v in index["weight_map"].items()}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
        (folder / "model.safetensors.index.json").unlink()
    return folder, model


@pytest.mark.parametrize("weights", ["bin", "safetensors"])
def test_a_sharded_checkpoint_resolves_and_loads_every_shard(tmp_path, weights, monkeypatch):
    monkeypatch.setattr(encoder, "_said_bin", set())
    folder, model = sharded_model(tmp_path / "m", weights)
    resolved = resolve_weights(ModelConfig(name_or_path=str(folder)))
    index = json.loads(resolved.path.read_text())
    assert resolved.kind == weights and resolved.path.name.endswith(".index.json")
    assert resolved.files == tuple(folder / f for f in sorted(set(index["weight_map"].values())))
    loaded = load_encoder(ModelConfig(name_or_path=str(folder)), TINY["vocab_size"])
    for name, tensor in model.bert.state_dict().items():
        if not name.startswith("pooler"):
            assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.mark.parametrize("weights", ["bin", "safetensors"])
def test_a_missing_shard_is_named_by_resolve_and_the_preflight(tmp_path, weights):
    from road_repro.config import ProfileConfig
    from road_repro.experiments.preflight import Needs, weights_problems

    folder, _ = sharded_model(tmp_path / "m", weights)
    shard = resolve_weights(ModelConfig(name_or_path=str(folder))).files[1]
    shard.unlink()
    with pytest.raises(ConfigError, match=rf"m' \(revision main\): shard {shard.name} named by .*index.json is not in "
                                          "the folder; download the whole checkpoint"):
        resolve_weights(ModelConfig(name_or_path=str(folder)))
    profile = ProfileConfig(name="t", models={"large": ModelConfig(name_or_path=str(folder))})
    problems = weights_problems(profile, Needs(models={"large"}))
    assert len(problems) == 1 and problems[0].startswith("models.large: ") and shard.name in problems[0]


def test_hub_shards_are_looked_up_at_the_index_revision_and_a_missing_one_is_named(tmp_path, monkeypatch):
    """Offline with a cache that holds the index but not every shard: the preflight names the shard."""
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"a": "s-1.bin", "b": "s-2.bin"}}))
    cached = {"pytorch_model.bin.index.json", "s-1.bin"}
    seen = []

    def lookup(name, filename, **kwargs):
        seen.append((filename, kwargs["revision"], kwargs["local_files_only"]))
        return str(tmp_path / filename) if filename in cached else None

    monkeypatch.setattr(encoder, "cached_file", lookup)
    cfg = ModelConfig(name_or_path="org/sharded", revision="abc123")
    with pytest.raises(ConfigError, match=r"sharded' \(revision abc123\): shard s-2.bin named by "
                                          r"pytorch_model.bin.index.json is not in the local Hugging Face cache"):
        resolve_weights(cfg, local_files_only=True)
    assert seen[-2:] == [("s-1.bin", "abc123", True), ("s-2.bin", "abc123", True)]
    cached.add("s-2.bin")
    assert resolve_weights(cfg, local_files_only=True).files == (tmp_path / "s-1.bin", tmp_path / "s-2.bin")


@pytest.mark.parametrize("text, why", [("{", "not a shard index"), ('{"metadata": {}}', "not a shard index"),
                                       ('{"weight_map": {}}', "must name shard files"),
                                       ('{"weight_map": {"a": "../x.bin"}}', "must name shard files beside it")])
def test_a_broken_shard_index_is_named(tmp_path, text, why):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "pytorch_model.bin.index.json").write_text(text)
    with pytest.raises(ConfigError, match=rf"pytorch_model.bin.index.json: (its weight_map )?{why}"):
        resolve_weights(ModelConfig(name_or_path=str(folder)))


def test_offline_hub_id_without_cached_weights_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(encoder, "cached_file", lambda *a, **k: None)  # the cache holds no weights file
    cfg = ModelConfig(name_or_path="google/electra-large-discriminator", revision="abc123")
    with pytest.raises(ConfigError, match=r"electra-large-discriminator' \(revision abc123\): no weights file .*local Hugging Face cache"):
        resolve_weights(cfg, local_files_only=True)


def test_revision_reaches_the_hub_lookup(monkeypatch):
    seen = []
    monkeypatch.setattr(encoder, "cached_file", lambda name, filename, **k: seen.append((filename, k["revision"])) or (
        "/cache/pytorch_model.bin" if filename == "pytorch_model.bin" else None))
    weights = resolve_weights(ModelConfig(name_or_path="google/electra-large-discriminator", revision="abc123"))
    assert weights.kind == "bin" and seen[:3] == [("model.safetensors", "abc123"), ("model.safetensors.index.json", "abc123"),
                                                  ("pytorch_model.bin", "abc123")]


def test_remote_code_stays_off_by_default():
    assert ModelConfig(name_or_path="x").trust_remote_code is False


def test_preflight_names_a_model_whose_weights_are_missing(tmp_path):
    """The preflight resolves the weights file, not only the config: a config-only checkpoint stops it."""
    from road_repro.config import ProfileConfig
    from road_repro.experiments.preflight import Needs, weights_problems

    folder, _ = fake_model(tmp_path / "cfg_only", "none")
    good, _ = fake_model(tmp_path / "bin_only", "bin")
    profile = ProfileConfig(name="t", models={"large": ModelConfig(name_or_path=str(folder)),
                                              "base": ModelConfig(name_or_path=str(good)),
                                              "tiny": ModelConfig(preset="tiny")})
    problems = weights_problems(profile, Needs(models={"large", "base", "tiny"}))
    assert len(problems) == 1 and problems[0].startswith("models.large: ") and "no weights file" in problems[0]


def test_run_configs_record_the_hub_commit_each_model_was_loaded_at(monkeypatch):
    """An unpinned hub model (revision None) still leaves the commit it was read at in every run's config.json
    (transformers sets ``_commit_hash`` on a hub config); local folders record none."""
    import torch
    from transformers import AutoConfig, BertConfig

    from road_repro.config import ModelConfig
    from road_repro.experiments.runs import runtime_record
    from road_repro.models import encoder

    def from_hub(name, **kwargs):
        config = BertConfig()
        config._commit_hash = "0123456789abcdef0123456789abcdef01234567"
        return config

    monkeypatch.setattr(encoder, "_LOADED_COMMITS", {})
    monkeypatch.setattr(AutoConfig, "from_pretrained", from_hub)
    encoder.load_model_config(ModelConfig(name_or_path="google/electra-large-discriminator"))
    record = runtime_record("fp32", torch.device("cpu"))
    assert record["model_commits"] == {"google/electra-large-discriminator": "0123456789abcdef0123456789abcdef01234567"}

    monkeypatch.setattr(encoder, "_LOADED_COMMITS", {})
    monkeypatch.setattr(AutoConfig, "from_pretrained", lambda name, **kwargs: BertConfig())  # a local folder
    encoder.load_model_config(ModelConfig(name_or_path="some/local/folder"))
    assert "model_commits" not in runtime_record("fp32", torch.device("cpu"))
