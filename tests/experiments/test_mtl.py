"""Multi-task pretraining stages at a tiny size: ROaD task-shared heads, MT-DNN per-dataset heads, KD."""

import json

import pytest
from safetensors import safe_open

from road_repro.config import load_profile
from road_repro.errors import ConfigError
from road_repro.experiments.stages import Experiment

TINY = [
    "models.large.warm_start=null", "seeds=[1]", "distill.n_teachers=1",
    "mtl.optim.steps=6", "mtl.optim.batch_size=8", "mtl.teacher_epochs=1",
    "mtl.datasets.synthetic_squad_warmup.limit=40", "mtl.datasets.synthetic_nli.limit=40",
    "mtl.datasets.synthetic_sentiment.limit=40", "mtl.datasets.synthetic_paraphrase.limit=40",
    "runtime.progress=false",
]


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    return Experiment(load_profile("smoke", TINY), tmp_path_factory.mktemp("runs"), progress=False)


def _heads(run) -> set[str]:
    with safe_open(str(run.path / "model.safetensors"), "pt") as fh:
        return {key.split(".")[1] for key in fh.keys() if key.startswith("heads.")}


def test_road_shares_one_head_per_task_type(exp):
    run = exp.mtl("large", "road", pass_step=2)
    assert _heads(run) == {"mrc", "nli", "sentiment", "paraphrase"}
    counts = run.metrics["passes_per_dataset"]
    assert sum(counts.values()) == 6 * 2  # steps x pass_step passes, each on a drawn dataset
    assert (run.path / "encoder.safetensors").is_file()


def test_mtdnn_keeps_one_head_per_dataset_and_one_dataset_per_step(exp):
    run = exp.mtl("large", "mtdnn")
    assert _heads(run) == {"synthetic_squad_warmup", "synthetic_nli", "synthetic_sentiment", "synthetic_paraphrase"}
    assert sum(run.metrics["passes_per_dataset"].values()) == 6


def test_kd_during_mtl_finetunes_and_caches_a_teacher_per_dataset(exp):
    run = exp.mtl("large", "road", pass_step=2, kd=True)
    teachers = run.config["teachers"]
    assert set(teachers) == set(exp.profile.mtl.datasets)
    soft = list(exp.store.root.glob("soft_targets-*/soft_targets.safetensors"))
    assert len(soft) == len(teachers)
    for path in soft:  # teacher logits are stored in float16, recorded in the file, the run config and metrics
        with safe_open(str(path), "pt") as fh:
            assert fh.metadata()["dtype"] == "float16" and {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F16"}
        stage = json.loads((path.parent / "config.json").read_text())
        assert stage["config"]["dtype"] == "float16"
        assert json.loads((path.parent / "metrics.json").read_text())["dtype"] == "float16"
    assert run.config["kd_settings"] == {"temperature": 5.0, "lam": 0.7, "t2_scale": True}


@pytest.mark.parametrize("name", ["synthetic_squad_warmup", "synthetic_nli"])
def test_kd_soft_targets_are_written_chunk_by_chunk(exp, tmp_path, monkeypatch, name):
    """The teacher's training logits stream to the cache, PREDICT_CHUNK rows at a time, never concatenated;
    the file holds exactly the (float16) logits of a whole-split prediction."""
    import numpy as np
    import torch

    from road_repro.distill import open_soft_targets
    from road_repro.experiments import context
    from road_repro.experiments.context import mtl_task
    from road_repro.experiments.stage_kinds import soft_targets

    task = mtl_task(name)
    teacher = exp.finetune(task, "large", exp.profile.mtl.seed, epochs=exp.profile.mtl.teacher_epochs)
    other = Experiment(exp.profile, tmp_path / "runs", progress=False)  # a fresh store: the cache is computed
    monkeypatch.setattr(context, "PREDICT_CHUNK", 7)
    chunk_rows = []
    real = soft_targets.write_soft_targets

    def spy(path, shapes, metadata, chunks, dtype):
        def seen():
            for lo, tensors in chunks:
                chunk_rows.append((lo, {len(t) for t in tensors.values()}))
                yield lo, tensors
        return real(path, shapes, metadata, seen(), dtype)

    monkeypatch.setattr(soft_targets, "write_soft_targets", spy)
    run = other.soft_targets(task, "large", teacher)
    data = other.task(task, "large")
    n = len(data.train)
    assert n > 7 and [lo for lo, _ in chunk_rows] == list(range(0, n, 7))
    assert all(rows <= {7} for lo, rows in chunk_rows[:-1]) and chunk_rows[-1][1] == {n - chunk_rows[-1][0]}
    cache = open_soft_targets(run.path / "soft_targets.safetensors", expect={"teacher": teacher.run_id})
    whole = other._predict(other._load_finished(teacher, "large", data), data, data.train)
    assert set(cache.arrays) == set(whole) and cache.metadata["features"] == str(n)
    for key, value in whole.items():
        torch.testing.assert_close(cache.rows(key, np.arange(n)), value.half().float(), rtol=0, atol=0)


@pytest.mark.parametrize("t2_scale", [True, False])
def test_kd_during_mtl_applies_the_profiles_t2_setting(exp, monkeypatch, t2_scale):
    """The one distill.t2_scale setting reaches the KD objective of MTL (it used to be ignored there)."""
    from road_repro.experiments import context

    # the same run store: the per-dataset teachers (plain CE, unaffected by t2_scale) are reused
    other = Experiment(load_profile("smoke", TINY + [f"distill.t2_scale={str(t2_scale).lower()}"]), exp.store.root,
                       progress=False)
    seen = []
    real = context.pass_losses
    monkeypatch.setattr(context, "pass_losses", lambda objective, *a: seen.append(objective) or real(objective, *a))
    run = other.mtl("large", "road", pass_step=4, kd=True)
    kd = [o for o in seen if o.distill is not None]  # (the per-dataset teachers train with plain CE first when
    assert kd and {o.t2_scale for o in kd} == {t2_scale} and {o.distill for o in kd} == {"kd"}  # not cached yet)
    assert run.config["kd_settings"]["t2_scale"] is t2_scale


def test_mtl_reads_its_own_split_of_a_dataset_that_is_also_a_finetuning_task(tmp_path):
    """mtl.datasets.mnli (24 rows) is the MTL data even though tasks.mnli (600 rows) has the same name."""
    own = TINY + ["mtl.datasets={mnli: {dataset: synthetic_nli, split: train, limit: 24}, "
                  "synthetic_squad_warmup: {dataset: synthetic_squad_warmup, split: dev, limit: 40}}"]
    exp = Experiment(load_profile("smoke", own), tmp_path, progress=False)
    assert exp.profile.tasks["mnli"].train.limit == 600
    for mode in ("road", "mtdnn"):
        run = exp.mtl("large", mode, pass_step=2)
        assert run.config["data"]["mnli"]["limit"] == 24
        assert run.config["fingerprints"]["mnli"] == exp.task("mtl:mnli", "large").train.fingerprint
        assert run.config["fingerprints"]["mnli"] != exp.task("mnli", "large").train.fingerprint
    assert len(exp.task("mtl:mnli", "large").train) == 24 and len(exp.task("mnli", "large").train) == 600
    with pytest.raises(ConfigError, match="no MTL dataset 'qqp'"):
        exp.task("mtl:qqp", "large")


def test_draws_setting_reaches_the_road_sampler(exp, tmp_path, monkeypatch):
    from road_repro.experiments.stage_kinds import mtl

    other = Experiment(load_profile("smoke", TINY + ["mtl.draws=without_replacement"]), tmp_path, progress=False)
    made = []
    real = mtl.RoadSampler
    monkeypatch.setattr(mtl, "RoadSampler", lambda *a, **k: made.append(a[4:] or k) or real(*a, **k))
    run = other.mtl("large", "road", pass_step=4)
    assert run.config["draws"] == "without_replacement" and made == [("without_replacement",)]
    assert exp.mtl("large", "road", pass_step=4).config["draws"] == "with_replacement"
    with pytest.raises(ConfigError, match="mtl.draws='never'"):
        load_profile("smoke", ["mtl.draws=never"])


def test_finetune_from_an_mtl_checkpoint_scores_classification_and_newsqa(exp):
    init = exp.mtl("large", "road", pass_step=2)
    mnli = exp.finetune("mnli", "large", 1, init=init, epochs=1)
    assert 0 <= mnli.metrics["acc"] <= 100 and mnli.config["init"] == init.run_id
    squad = exp.finetune("squad_v2", "large", 1, init=init, epochs=1)
    newsqa = exp.predict(squad, "squad_v2", "newsqa", "large")
    assert {"f1", "exact", "HasAns_f1"} <= set(newsqa.metrics)


def test_pass_step_must_divide_the_batch(exp):
    with pytest.raises(ConfigError, match="pass_step=3 does not divide"):
        exp.mtl("large", "road", pass_step=3)
