"""The row kinds of the remaining tables, end to end at a tiny size: teacher ensembles and chains (a
distilled teacher), hidden-state KD wired into training, negative-question augmentation, ensembles scored
through another task (NewsQA), published rows; and the plan of all twelve tables (shared stages, no training)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from safetensors import safe_open

from road_repro.experiments.tables import plan_tables, run_table

pytestmark = pytest.mark.slow

ALL = ["table2", "table3", "table4", "table5", "table6", "table7", "blog_passstep", "blog_teacher",
       "blog_distilled_teacher", "blog_hidden_state", "blog_final", "blog_other_tasks"]

MODELS = ["large", "bert_large", "albert_xlarge", "roberta_large", "deberta_large", "base", "roberta_base",
          "deberta_base"]
TINY = [
    "seeds=[1,2]", "distill.n_teachers=2", *[f"models.{m}.warm_start.steps=20" for m in MODELS],
    *[f"models.{m}.warm_start.mixture_steps=0" for m in MODELS],  # phase 1 only
    "tasks.squad_v2.train.limit=48", "tasks.squad_v2.dev.limit=24", "tasks.newsqa.dev.limit=24",
    "finetune.epochs=1", "mtl.optim.steps=4", "mtl.optim.batch_size=8", "mtl.teacher_epochs=1",
    "mtl.datasets.synthetic_squad_warmup.limit=24", "mtl.datasets.synthetic_nli.limit=24",
    "mtl.datasets.synthetic_sentiment.limit=24", "mtl.datasets.synthetic_paraphrase.limit=24",
    "runtime.progress=false",
]


#: (run folder, in_step_teacher) of every train() call of the fixture's stages.
TRAINED: list[tuple[str, object]] = []


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    import road_repro.experiments.context as context

    root = tmp_path_factory.mktemp("rows")
    real = context.train

    def recording_train(*args, **kwargs):
        TRAINED.append((kwargs["checkpoint_dir"].parent.name, kwargs.get("in_step_teacher")))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(context, "train", recording_train)
        for table in ("table6", "table3", "blog_distilled_teacher", "blog_hidden_state"):
            run_table(table, "smoke", output_dir=root, runs_dir=root / "runs", overrides=TINY, progress=False)
    return root


def _config(out, run_id: str) -> dict:
    return json.loads((out / "runs" / run_id / "config.json").read_text())["config"]


def _runs(out, table: str, method: str, metric: str = "f1", dataset: str = "squad_v2") -> list[str]:
    frame = pd.read_csv(out / "smoke" / f"{table}.csv")
    return frame[(frame["method"] == method) & (frame["metric"] == metric) & (frame["dataset"] == dataset)]["run_id"].tolist()


def test_a_distilled_teacher_is_a_student_of_its_own_teachers(out):
    (student, *_) = _runs(out, "blog_distilled_teacher", "KD from 1 x ROaD-large distilled from 3 ROaD-large")
    (teacher_id,) = _config(out, student)["teachers"]
    teacher = _config(out, teacher_id)
    assert teacher["objective"]["distill"] == "weighted" and len(teacher["teachers"]) == 2  # n_teachers
    assert teacher["init"] and _config(out, teacher["init"])["mode"] == "road"
    plain = _config(out, _config(out, _runs(out, "blog_distilled_teacher", "KD from 1 x ROaD-large (not distilled)")[0])["teachers"][0])
    assert plain["objective"]["distill"] is None and plain["teachers"] == []


def test_hidden_state_kd_trains_a_projection_saved_with_the_student(out):
    for method, last_only, logits in [("hidden-state (all layers)", False, None),
                                      ("logits and hidden-state (all layers)", False, "kd"),
                                      ("logits and hidden-state of the last layer only", True, "kd")]:
        run_id = _runs(out, "blog_hidden_state", method)[0]
        cfg = _config(out, run_id)
        assert cfg["hidden_kd"] == {"weight": 1.0, "last_layer_only": last_only}
        assert cfg["objective"]["distill"] == logits and len(cfg["teachers"]) == 1
        with safe_open(str(out / "runs" / run_id / "model.safetensors"), "pt") as fh:
            assert any(k.startswith("distill_projection.") for k in fh.keys())
        with safe_open(str(out / "runs" / run_id / "encoder.safetensors"), "pt") as fh:
            assert not any("distill_projection" in k for k in fh.keys())
        log = json.loads((out / "runs" / run_id / "train_log.json").read_text())
        assert "hidden_mse" in log[-1]
        # the teacher runs in each step: train() counts it in the automatic rows per GPU
        (teacher,) = [t for run, t in TRAINED if run == run_id]
        assert teacher is not None and teacher.encoder is not None
    assert [run for run, t in TRAINED if t is not None and "hidden_kd" not in _config(out, run)] == []


def test_negative_question_augmentation_and_label_smoothing(out):
    base = _config(out, _runs(out, "table3", "baseline")[0])
    smooth = _config(out, _runs(out, "table3", "label smoothing")[0])
    augmented = _config(out, _runs(out, "table3", "negative-question augmentation")[0])
    assert smooth["objective"] == {"distill": None, "label_smoothing": 0.1}
    assert augmented["augment"]["negative_questions"] == 0.3 and augmented["augment"]["ner"] == "entity pool"
    assert augmented["train_fingerprint"] != base["train_fingerprint"]
    assert augmented["dev_fingerprint"] == base["dev_fingerprint"]  # dev is never augmented


def test_ensemble_scores_newsqa_through_the_squad_models_and_published_rows_are_marked(out):
    (ensemble,) = _runs(out, "table6", "ensemble of 3 models", dataset="newsqa")
    members = [_config(out, m) for m in _config(out, ensemble)["teachers"]]
    assert [m["stage"] for m in members] == ["predict", "predict"]
    assert {_config(out, m["model_run"])["task"] for m in members} == {"squad_v2"}
    summary = pd.read_csv(out / "smoke" / "table6_summary.csv")
    retro = summary[summary["method"] == "Retro-Reader (published)"]
    assert len(retro) == 2 and (retro["n"] == 0).all() and (retro["note"] == "published, not run").all()
    assert retro["paper"].tolist() == [91.3, 88.8]
    roberta = summary[(summary["paper_model"] == "RoBERTa-large") & (summary["metric"] == "f1")
                      & (summary["dataset"] == "squad_v2")]
    assert roberta["n"].iloc[0] == 2 and roberta["note"].iloc[0].startswith("published number; our run")


def test_plan_of_every_table_shares_stages_and_trains_nothing(tmp_path):
    plan = plan_tables(ALL, "smoke", output_dir=tmp_path, overrides=TINY)
    assert not (tmp_path / "runs").exists()  # a dry run: no run folder
    tables = plan["tables"]
    assert len(tables) == 12 and len(plan["run_ids"]) == len(set(plan["run_ids"]))
    assert tables["blog_final"]["new"] == 0  # every stage of blog 6 is a stage of an earlier table
    assert set(tables["table4"]["stages"]) & set(tables["table5"]["stages"])  # the "+ MTL" runs are Table 5's
    assert json.loads((tmp_path / "smoke" / "plan.json").read_text())["run_ids"] == plan["run_ids"]
