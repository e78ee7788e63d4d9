"""Layer-wise learning-rate decay and the warmup/decay schedule (paper Table 8)."""

import pytest
import torch

from road_repro.config import OptimConfig
from road_repro.train.optim import build_optimizer, linear_warmup_decay, param_depths
from tests.helpers import tiny_model


def test_param_depth_orders_embeddings_layers_heads():
    depths = param_depths(tiny_model(), 2)
    assert depths["encoder.embeddings.word_embeddings.weight"] == 0
    assert depths["encoder.encoder.layer.0.attention.self.query.weight"] == 1
    assert depths["encoder.encoder.layer.1.output.dense.bias"] == 2
    assert depths["heads.mrc.qa_outputs.weight"] == 3


def test_layerwise_lr_is_decay_power_of_distance_from_top():
    model = tiny_model()
    cfg = OptimConfig(lr=1e-3, layerwise_lr_decay=0.5, warmup_ratio=0.0)
    opt, _ = build_optimizer(model, cfg, num_layers=2, total_steps=10)
    by_depth = {g["depth"]: g["lr"] for g in opt.param_groups}
    assert by_depth == pytest.approx({0: 1e-3 * 0.125, 1: 1e-3 * 0.25, 2: 1e-3 * 0.5, 3: 1e-3})
    # every trainable parameter is in exactly one group
    n_group = sum(len(g["params"]) for g in opt.param_groups)
    assert n_group == sum(1 for p in model.parameters() if p.requires_grad)


def test_no_weight_decay_on_bias_and_layernorm():
    model = tiny_model()
    opt, _ = build_optimizer(model, OptimConfig(weight_decay=0.01), 2, 10)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            n = names[id(p)]
            expect = 0.0 if (n.endswith("bias") or "LayerNorm" in n) else 0.01
            assert group["weight_decay"] == expect, n


def test_linear_warmup_then_linear_decay():
    f = linear_warmup_decay(warmup_steps=10, total_steps=100)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == 0.0


def test_adam_settings_from_config():
    opt, _ = build_optimizer(tiny_model(), OptimConfig(adam_eps=1e-6, adam_beta1=0.9, adam_beta2=0.999), 2, 4)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["eps"] == 1e-6 and opt.defaults["betas"] == (0.9, 0.999)
