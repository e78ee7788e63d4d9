"""Layer-wise LR decay depths for every encoder family a profile can name (paper Table 8).

Each family is a tiny random model built from its transformers config, saved, and loaded back through
``build_model`` exactly as a profile's ``name_or_path`` is (pooler dropped where ``load_encoder`` drops
it), so the parameter names are the real ones. Every parameter's depth and its optimizer group's learning
rate are checked against an expectation written out here, independently of the rules in ``optim.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (
    AlbertConfig,
    AutoModel,
    BertConfig,
    DebertaConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    PretrainedConfig,
    RobertaConfig,
)

from road_repro.config import ModelConfig, OptimConfig, load_profile
from road_repro.errors import ConfigError
from road_repro.models.model import RoadModel, build_model
from road_repro.train.optim import build_optimizer, param_depths
from tests.helpers import tiny_model

L = 3
SMALL = dict(hidden_size=16, num_hidden_layers=L, num_attention_heads=2, intermediate_size=32, vocab_size=100)
HEADS = {"mrc": "span", "nli": 3}

#: name -> (config, the top layer each ALBERT layer group serves, names that must exist)
FAMILIES: dict[str, tuple[PretrainedConfig, dict[int, int], list[str]]] = {
    "bert": (BertConfig(**SMALL), {}, []),
    "electra": (ElectraConfig(embedding_size=8, **SMALL), {}, ["encoder.embeddings_project.weight"]),
    # HF AlbertTransformer runs group int(i / (L / G)) at layer i (0-based): with L=3, G=2 group 0 serves
    # layers 1-2 and group 1 layer 3; with G=1 the one group serves all three.
    "albert-1-group": (
        AlbertConfig(embedding_size=8, num_hidden_groups=1, **SMALL),
        {0: 3},
        ["encoder.encoder.embedding_hidden_mapping_in.weight"],
    ),
    "albert-2-groups": (
        AlbertConfig(embedding_size=8, num_hidden_groups=2, inner_group_num=2, **SMALL),
        {0: 2, 1: 3},
        ["encoder.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight"],
    ),
    "roberta": (RobertaConfig(**SMALL), {}, []),
    "deberta": (
        DebertaConfig(relative_attention=True, pos_att_type=["c2p", "p2c"], **SMALL),
        {},
        ["encoder.encoder.rel_embeddings.weight"],
    ),
    "deberta-v2": (  # DeBERTa-v3 shapes: layer-normed relative embeddings, conv after layer 1, embed_proj
        DebertaV2Config(
            relative_attention=True, pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=8,
            norm_rel_ebd="layer_norm", conv_kernel_size=3, position_biased_input=False, embedding_size=8, **SMALL,
        ),
        {},
        ["encoder.encoder.rel_embeddings.weight", "encoder.encoder.LayerNorm.weight", "encoder.encoder.conv.conv.weight",
         "encoder.embeddings.embed_proj.weight"],
    ),
}


def expected_depth(name: str, num_layers: int, albert_groups: dict[int, int]) -> int:
    """The depth convention written out per parameter: heads L+1, layer i at i, embeddings 0."""
    if not name.startswith("encoder."):
        return num_layers + 1
    parts = name.split(".")[1:]
    if parts[0] in ("embeddings", "embeddings_project") or parts[:2] == ["encoder", "embedding_hidden_mapping_in"]:
        return 0
    if parts[:2] == ["encoder", "layer"]:
        return int(parts[2]) + 1
    if parts[:2] == ["encoder", "albert_layer_groups"]:
        return albert_groups[int(parts[2])]
    if parts[:2] in (["encoder", "rel_embeddings"], ["encoder", "LayerNorm"]):  # read by every layer
        return num_layers
    if parts[:2] == ["encoder", "conv"]:  # DeBERTa-v2: applied once, to layer 1's output
        return 1
    raise AssertionError(f"the test has no expectation for {name}")


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory) -> tuple[str, RoadModel, dict[int, int], list[str]]:
    config, albert_groups, must_have = FAMILIES[request.param]
    path = Path(tmp_path_factory.mktemp(request.param))
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)
    model = build_model(ModelConfig(name_or_path=str(path)), config.vocab_size, HEADS)
    return request.param, model, albert_groups, must_have


def _lr_by_name(model: nn.Module, cfg: OptimConfig) -> dict[str, float]:
    opt, _ = build_optimizer(model, cfg, model.num_layers, total_steps=10)
    by_id = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


@pytest.mark.parametrize("convention", ["road", "electra"])
def test_every_parameter_gets_its_layers_depth_and_rate(family, convention):
    name, model, albert_groups, must_have = family
    names = [n for n, _ in model.named_parameters()]
    assert set(must_have) <= set(names), f"{name}: the tiny config no longer builds {set(must_have) - set(names)}"
    assert not any("pooler" in n for n in names)  # load_encoder drops it; nothing reads it
    lr, decay = 1e-3, 0.5
    depths = param_depths(model, L)
    lrs = _lr_by_name(model, OptimConfig(lr=lr, layerwise_lr_decay=decay, layerwise_convention=convention))
    top = L + 1 if convention == "road" else L + 2  # ELECTRA's reference puts its head at n_layers + 2
    for n in names:
        depth = expected_depth(n, L, albert_groups)
        assert depths[n] == depth, n
        assert lrs[n] == pytest.approx(lr if depth == L + 1 else lr * decay ** (top - depth)), n
    populated = {0, L + 1} | set(albert_groups.values()) if albert_groups else set(range(L + 2))
    assert {depths[n] for n in names} == populated, name


@pytest.mark.parametrize("num_layers", [None, 3])
def test_packaged_minilm_is_bert_by_depth(num_layers):
    model = build_model(ModelConfig(name_or_path="minilm", num_layers=num_layers), 0, HEADS)
    assert model.encoder.config.model_type == "bert"
    depths = param_depths(model, model.num_layers)
    assert model.num_layers == (num_layers or 6)
    for n, _ in model.named_parameters():
        assert depths[n] == expected_depth(n, model.num_layers, {}), n


def test_top_layer_rate_by_convention():
    """ROaD: top layer lr * d, embeddings lr * d^(L+1); ELECTRA: lr * d^2 and lr * d^(L+2); heads lr."""
    model = tiny_model()  # 2 layers
    for convention, top, emb in (("road", 0.9, 0.9**3), ("electra", 0.9**2, 0.9**4)):
        lrs = _lr_by_name(model, OptimConfig(lr=1.0, layerwise_lr_decay=0.9, layerwise_convention=convention))
        assert lrs["encoder.encoder.layer.1.output.dense.weight"] == pytest.approx(top)
        assert lrs["encoder.embeddings.word_embeddings.weight"] == pytest.approx(emb)
        assert lrs["heads.mrc.qa_outputs.weight"] == 1.0


def test_unplaced_encoder_parameter_is_named():
    model = tiny_model()
    model.encoder.register_parameter("mystery", nn.Parameter(torch.zeros(2)))
    with pytest.raises(ConfigError, match=r"encoder\.mystery.*|'bert'") as err:
        build_optimizer(model, OptimConfig(), model.num_layers, 10)
    assert "encoder.mystery" in str(err.value) and "'bert'" in str(err.value)


def test_layer_beyond_num_layers_is_named():
    with pytest.raises(ConfigError, match=r"encoder\.encoder\.layer\.1\."):
        param_depths(tiny_model(), num_layers=1)


def test_unknown_encoder_family_is_named():
    encoder = AutoModel.from_config(DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32, vocab_size=100))
    with pytest.raises(ConfigError, match=r"'distilbert'.*encoder\.transformer\.layer\.0\."):
        param_depths(RoadModel(encoder, HEADS), 2)


def test_convention_is_validated_and_named():
    assert load_profile("smoke", ["finetune.layerwise_convention=electra"]).finetune.layerwise_convention == "electra"
    for key in ("finetune", "mtl.optim"):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.") + r"\.layerwise_convention='bert'"):
            load_profile("smoke", [f"{key}.layerwise_convention=bert"])
    with pytest.raises(ConfigError, match="layerwise_convention"):
        build_optimizer(tiny_model(), OptimConfig(layerwise_convention="Electra"), 2, 10)
