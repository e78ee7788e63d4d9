"""train_log.csv: one row per step with each loss term, written as the loop trains and cut back on resume."""

import csv

import pytest
import torch
import torch.nn.functional as F

from road_repro.config import OptimConfig
from road_repro.distill import kd_kl
from road_repro.train.loop import Pass, train
from road_repro.train.objectives import Objective, pass_losses
from road_repro.train.train_log import COLUMNS, TrainLog, read_rows
from tests.helpers import span_batch, tiny_model

CPU = torch.device("cpu")
CFG = OptimConfig(lr=1e-3, warmup_ratio=0.0)


def ce(out, p, progress):
    return pass_losses(Objective(), out, p.batch, progress)


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_step_is_a_row_with_losses_lr_grad_norm_rate_and_the_datasets_drawn(tmp_path):
    log_path = tmp_path / "run" / "train_log.csv"
    batches = {"squad": span_batch(4, seed=1), "nq": span_batch(2, seed=2)}
    result = train(tiny_model(), lambda s: [Pass("mrc", d, b) for d, b in batches.items()], ce, 5, CFG,
                   num_layers=2, device=CPU, progress=False, train_log=log_path)
    rows = _rows(log_path)
    assert list(rows[0]) == list(COLUMNS)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    for row, logged in zip(rows, result.log):
        assert row["datasets"] == "squad+nq" and int(row["examples"]) == 6
        assert float(row["total"]) == pytest.approx(logged["total"])
        assert float(row["ce"]) == pytest.approx(logged["total"])  # plain CE: the only term
        assert float(row["lr"]) == pytest.approx(logged["lr"]) and float(row["grad_norm"]) == pytest.approx(logged["grad_norm"])
        assert float(row["examples_per_s"]) > 0 and row["kd"] == "" and row["hidden"] == ""


def test_resume_keeps_the_rows_up_to_the_checkpoint_and_drops_later_ones(tmp_path):
    """A run killed after its step-4 checkpoint had logged steps 5-6; the resumed run rewrites them once."""
    log_path, ckpt = tmp_path / "train_log.csv", tmp_path / "ckpt"
    step_source = lambda s: [Pass("mrc", "d", span_batch(4, seed=s))]  # noqa: E731
    train(tiny_model(), step_source, ce, 4, CFG, num_layers=2, device=CPU, progress=False, checkpoint_dir=ckpt,
          train_log=log_path)
    with log_path.open("a", newline="") as fh:  # rows past the checkpoint, from the lost process
        csv.writer(fh).writerows([[5, "d", 9.9], [6, "d", 9.9]])
    train(tiny_model(), step_source, ce, 8, CFG, num_layers=2, device=CPU, progress=False, checkpoint_dir=ckpt,
          train_log=log_path)
    rows = _rows(log_path)
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert all(float(r["total"]) != 9.9 for r in rows)


def test_elapsed_seconds_count_on_after_a_resume(tmp_path, monkeypatch):
    """``elapsed_s`` is carried in the checkpoint: the resumed attempt's rows continue from the kept step's time
    (the loop's clock advances 1 s per reading, and restarts at 1000 s for the second process)."""
    from types import SimpleNamespace

    import road_repro.train.loop as loop

    now = iter(range(10_000))
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: float(next(now))))
    log_path, ckpt = tmp_path / "train_log.csv", tmp_path / "ckpt"
    step_source = lambda s: [Pass("mrc", "d", span_batch(4, seed=s))]  # noqa: E731
    first = train(tiny_model(), step_source, ce, 3, CFG, num_layers=2, device=CPU, progress=False, checkpoint_dir=ckpt,
                  train_log=log_path)
    kept = [float(r["elapsed_s"]) for r in _rows(log_path)]
    now = iter(range(1000, 10_000))
    second = train(tiny_model(), step_source, ce, 6, CFG, num_layers=2, device=CPU, progress=False,
                   checkpoint_dir=ckpt, train_log=log_path)
    elapsed = [float(r["elapsed_s"]) for r in _rows(log_path)]
    assert elapsed[:3] == kept == [1.0, 2.0, 3.0] and first.elapsed_s == 3.0
    assert elapsed[3:] == [4.0, 5.0, 6.0] and second.elapsed_s == 6.0  # on from step 3's 3 s, not from 0


def test_a_fresh_start_empties_an_old_log(tmp_path):
    log_path = tmp_path / "train_log.csv"
    log_path.write_text("step,total\n1,5.0\n2,4.0\n")
    TrainLog(log_path, start_step=0, tensorboard=False).close()
    assert read_rows(log_path) == []


def test_a_reader_skips_a_half_written_last_line(tmp_path):
    log_path = tmp_path / "train_log.csv"
    log_path.write_text(",".join(COLUMNS) + "\n1,d,2.0\n2,d,1.")
    assert [r["step"] for r in read_rows(log_path)] == ["1"]


def test_kd_terms_recombine_into_the_total():
    """``total = (1 - lam) ce + lam kd`` with kd the T^2-scaled KL, on a hand-made batch."""
    torch.manual_seed(0)
    logits, teacher, labels = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    obj = Objective("kd", 2.0, 0.7, True)
    losses = pass_losses(obj, {"logits": logits}, {"labels": labels, "teacher_logits": teacher}, 0.0)
    torch.testing.assert_close(losses["ce"], F.cross_entropy(logits, labels))
    torch.testing.assert_close(losses["kd"], kd_kl(logits, teacher, 2.0) * 4.0)
    torch.testing.assert_close(losses["total"], 0.3 * losses["ce"] + 0.7 * losses["kd"])


def test_tensorboard_events_are_written_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    log = TrainLog(tmp_path / "train_log.csv", start_step=0)
    log.write({"step": 1, "total": 1.0, "lr": 0.1, "grad_norm": 2.0}, ["d"], 4, 0.5)
    log.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_lost_log_is_rebuilt_from_the_checkpoints_history_on_resume(tmp_path):
    log_path, ckpt = tmp_path / "train_log.csv", tmp_path / "ckpt"
    step_source = lambda s: [Pass("mrc", "d", span_batch(4, seed=s))]  # noqa: E731
    first = train(tiny_model(), step_source, ce, 3, CFG, num_layers=2, device=CPU, progress=False, checkpoint_dir=ckpt,
                  train_log=log_path).log
    log_path.unlink()
    train(tiny_model(), step_source, ce, 5, CFG, num_layers=2, device=CPU, progress=False, checkpoint_dir=ckpt,
          train_log=log_path)
    rows = _rows(log_path)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [float(r["total"]) for r in rows[:3]] == pytest.approx([r["total"] for r in first])
    assert rows[0]["datasets"] == "" and rows[3]["datasets"] == "d"
