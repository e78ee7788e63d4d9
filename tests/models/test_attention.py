"""Encoders load with PyTorch SDPA attention where the architecture has it (fused kernels on a GPU)."""

from __future__ import annotations

import pytest
from transformers import AlbertModel, BertModel, DebertaModel, DebertaV2Model, ElectraModel, RobertaModel

from road_repro.config import ModelConfig
from road_repro.models.encoder import SDPA_FAMILIES, attention_kind, load_encoder


def test_documented_families_match_transformers():
    classes = {"bert": BertModel, "electra": ElectraModel, "albert": AlbertModel, "roberta": RobertaModel}
    assert set(SDPA_FAMILIES) == set(classes)
    assert all(cls._supports_sdpa for cls in classes.values())
    assert not DebertaModel._supports_sdpa and not DebertaV2Model._supports_sdpa


@pytest.mark.parametrize("cfg", [ModelConfig(preset="tiny"), ModelConfig(name_or_path="minilm", num_layers=1)],
                         ids=["preset", "packaged-minilm"])
def test_encoders_load_with_sdpa(cfg):
    assert attention_kind(load_encoder(cfg, 30522)) == "sdpa"
