"""Which weights file a checkpoint loads from: safetensors where it ships them, else the ``.bin`` read with
``torch.load(weights_only=True)`` and said once; a checkpoint without weights (an incomplete offline cache)
is named before any compute. Fake model folders hold a tiny BERT saved three ways."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
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
    state = encoder.load_bin_state_dict(resolve_weights(ModelConfig(name_or_path=str(folder))).path)
    assert sorted(state) == ["a", "b"] and state["b"].shape == (2,)


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
