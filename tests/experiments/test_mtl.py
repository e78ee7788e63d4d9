"""Multi-task pretraining stages at a tiny size: ROaD task-shared heads, MT-DNN per-dataset heads, KD."""

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
    assert run.config["kd_settings"] == {"temperature": 5.0, "lam": 0.7}


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
