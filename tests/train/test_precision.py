"""Mixed precision: which autocast dtype each setting gives on each device, and the fp16 grad-scaler path."""

import math

import pytest
import torch

from road_repro.config import OptimConfig
from road_repro.errors import ConfigError
from road_repro.train.loop import Pass, grad_scaler, predict, resolve_precision, train
from road_repro.train.objectives import Objective, pass_losses
from tests.helpers import span_batch, tiny_model

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only inspected (device.type), never used: these tests run without a GPU


def ce(out, p, progress):
    return pass_losses(Objective(), out, p.batch, progress)


def test_cpu_trains_in_fp32_unless_asked_otherwise():
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("fp32", CUDA) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("fp16", CPU) is torch.float16


@pytest.mark.parametrize("capability, expected", [
    ((7, 0), torch.float16),   # V100, the paper's GPU: is_bf16_supported() says yes (emulated), auto says fp16
    ((7, 5), torch.float16),   # T4
    ((8, 0), torch.bfloat16),  # A100
    ((9, 0), torch.bfloat16),  # H100 / H200
])
def test_auto_on_a_gpu_is_bf16_only_where_native_else_fp16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation counts here: not the test
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert resolve_precision("auto", CUDA) is expected
    assert grad_scaler(resolve_precision("auto", CUDA), CPU).is_enabled() is (expected is torch.float16)


def test_bf16_on_a_gpu_without_it_and_unknown_settings_are_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(ConfigError, match="does not support bf16"):
        resolve_precision("bf16", CUDA)
    with pytest.raises(ConfigError, match="runtime.precision='fp8' must be one of fp32, bf16, fp16, auto"):
        resolve_precision("fp8", CPU)


def test_only_fp16_gets_an_enabled_grad_scaler():
    assert grad_scaler(torch.float16, CPU).is_enabled()
    assert not grad_scaler(torch.bfloat16, CPU).is_enabled()
    assert not grad_scaler(None, CPU).is_enabled()


@pytest.mark.parametrize("precision, scale", [("bf16", 1.0), ("fp16", 2.0**16)])
def test_mixed_precision_trains_on_cpu_when_asked(precision, scale):
    model = tiny_model()
    batch = span_batch(8)
    log = train(model, lambda s: [Pass("mrc", "d", batch)], ce, 4, OptimConfig(lr=3e-3, warmup_ratio=0.0),
                num_layers=2, device=CPU, precision=precision, progress=False).log
    assert log[-1]["total"] < log[0]["total"]
    assert all(row["loss_scale"] == scale for row in log)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay fp32
    out = predict(model, batch, "mrc", 4, CPU, precision)
    assert out["start_logits"].dtype == torch.float32 and torch.isfinite(out["start_logits"]).all()


def test_an_fp16_step_whose_gradients_overflow_is_skipped_and_the_scale_halved():
    def huge_on_step_0(out, p, progress):
        losses = ce(out, p, progress)
        return {"total": losses["total"] * (1e30 if progress == 0 else 1.0)}

    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = OptimConfig(lr=1e-3, warmup_ratio=0.0)
    log = train(model, lambda s: [Pass("mrc", "d", span_batch(4, seed=s))], huge_on_step_0, 2, cfg,
                num_layers=2, device=CPU, precision="fp16", progress=False).log
    assert log[0]["loss_scale"] == 2.0**15 and not math.isfinite(log[0]["grad_norm"])
    assert log[1]["lr"] == log[0]["lr"] == cfg.lr  # the skipped step did not advance the schedule
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # step 1 did update


def test_a_skipped_step_leaves_the_weights_untouched():
    def huge(out, p, progress):
        return {"total": ce(out, p, progress)["total"] * 1e30}

    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    train(model, lambda s: [Pass("mrc", "d", span_batch(4))], huge, 1, OptimConfig(), num_layers=2, device=CPU,
          precision="fp16", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
