"""Loading a pretrained checkpoint is quiet: no transformers load report, one line saying what was dropped."""

from road_repro.config import ModelConfig
from road_repro.models import encoder
from road_repro.models.encoder import dropped_key_summary, load_encoder


def test_packaged_minilm_loads_quietly_with_one_line(capfd, caplog, monkeypatch):
    monkeypatch.setattr(encoder, "_reported", set())
    caplog.set_level("INFO", logger="road_repro")
    load_encoder(ModelConfig(name_or_path="minilm", num_layers=3), 30522)
    load_encoder(ModelConfig(name_or_path="minilm", num_layers=3), 30522)  # said once per model and process
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "UNEXPECTED" not in out + err and "Loading weights" not in err
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "layers >= 3 (48 keys: num_layers=3 keeps the first 3 layers)" in lines[0]
    assert "pooler (2 keys: the heads read the first token" in lines[0]


def test_dropped_keys_are_grouped_by_reason():
    keys = ["pooler.dense.weight", "pooler.dense.bias", "encoder.layer.5.output.dense.weight",
            "discriminator_predictions.dense.weight", "encoder.layer.1.extra.weight"]
    summary = dropped_key_summary(keys, num_layers=3)
    assert summary["pooler"][0] == 2 and summary["layers >= 3"] == (1, "num_layers=3 keeps the first 3 layers")
    assert "replaced-token-detection" in summary["discriminator_predictions"][1]
    assert summary["encoder.layer.1.extra"] == (1, "not part of this architecture")
