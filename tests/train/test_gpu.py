"""The loop on a GPU: mixed precision, torch.compile, predict, and NCCL data parallelism (2+ GPUs).

Skipped without CUDA; run on a GPU machine with ``pytest -m gpu tests/train/test_gpu.py``.
"""

import pytest
import torch

from road_repro.config import OptimConfig
from road_repro.train.loop import Pass, predict, resolve_precision, train
from road_repro.train.objectives import Objective, pass_losses
from tests.helpers import span_batch, tiny_model
from tests.train.test_ddp import assert_same_training, run_job, single_process_params

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


def ce(out, p, progress):
    return pass_losses(Objective(), out, p.batch, progress)


def fit(precision: str, steps: int = 30, compile: bool = False):
    """Train the tiny model on one fixed batch (kept on the CPU: the loop moves it) and return model and log."""
    model = tiny_model()
    batch = span_batch(16)
    log = train(model, lambda s: [Pass("mrc", "d", batch)], ce, steps, OptimConfig(lr=3e-3, warmup_ratio=0.0),
                num_layers=2, device=CUDA, precision=precision, progress=False, compile=compile).log
    return model, log


def test_auto_precision_is_bf16_on_gpus_that_compute_it_natively():
    expected = torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16
    assert resolve_precision("auto", CUDA) is expected


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16", "auto"])
def test_every_precision_learns_on_the_gpu(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model, log = fit(precision)
    assert log[-1]["total"] < 0.5 * log[0]["total"]
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in model.parameters())
    uses_scaler = resolve_precision(precision, CUDA) is torch.float16
    assert all((row["loss_scale"] > 1.0) == uses_scaler for row in log)


def test_compiled_model_trains_like_the_eager_one():
    _, eager = fit("fp32", steps=5)
    _, compiled = fit("fp32", steps=5, compile=True)
    assert [r["total"] for r in compiled] == pytest.approx([r["total"] for r in eager], rel=1e-3)


def test_gpu_predictions_match_cpu_ones_and_come_back_as_cpu_float32():
    batch = span_batch(10)
    on_cpu = predict(tiny_model(seed=3), batch, "mrc", 4, CPU)
    on_gpu = predict(tiny_model(seed=3), batch, "mrc", 4, CUDA, precision="auto")
    for key, value in on_cpu.items():
        assert on_gpu[key].device == CPU and on_gpu[key].dtype == torch.float32
        torch.testing.assert_close(on_gpu[key], value, rtol=0, atol=5e-2)  # bf16/fp16 autocast vs fp32


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_with_nccl_train_the_same_weights_as_one_process(tmp_path):
    ranks = run_job(tmp_path, "cuda")
    reference = single_process_params()
    assert [r["info"] for r in ranks] == [[0, 0, 2, "cuda"], [1, 1, 2, "cuda"]]
    assert_same_training(ranks, reference, "plain", atol=1e-4)  # TF32/cuBLAS vs CPU kernels
    assert ranks[0]["saves"] == [2, 4] and ranks[1]["saves"] == []
    assert_same_training(ranks, reference, "resumed", atol=1e-4)
    assert all("ranks disagree on the passes of step 0" in r["disagreement"] for r in ranks)
