"""``road-repro export``: a finished run as a Hugging Face folder that ``transformers`` loads offline, without
this suite (``pipeline("text-classification")``; transformers 5 has no question-answering pipeline, so span QA
loads through ``AutoModelForQuestionAnswering``), and that predicts exactly what the suite predicted on dev."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from road_repro.config import REPO_ROOT, load_profile
from road_repro.errors import ConfigError
from road_repro.experiments.stages import Experiment
from road_repro.export import export_run

pytestmark = pytest.mark.slow

TINY = ["runtime.progress=false", "tasks.squad_v2.train.limit=96", "tasks.squad_v2.dev.limit=40",
        "tasks.mnli.train.limit=96", "tasks.mnli.dev.limit=40", "finetune.epochs=2",
        # a tiny model may abstain on every question at threshold 0; answering always makes the comparison of
        # spans (not only of abstentions) certain
        "features.null_score_diff_threshold=1000",
        *(f"models.{m}.warm_start.{s}" for m in ("large", "base") for s in ("steps=30", "batch_size=8", "limit=64",
                                                                             "mixture_steps=0"))]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    torch.set_num_threads(1)
    return Experiment(load_profile("smoke", TINY), tmp_path_factory.mktemp("export") / "runs", progress=False)


def _pipeline(task, folder):
    from transformers import pipeline

    return pipeline(task, model=str(folder), device=-1)


def _hf_answers(folder, examples, features):
    """SQuAD 2.0 answers from the exported folder through transformers alone (its QA pipeline is gone in v5):
    windows as Hugging Face's run_qa example makes them, the best start + end over context tokens among the
    n-best starts and ends (at most ``max_answer_length`` tokens) against the smallest null (CLS) score."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    answers = {}
    for e in examples:
        enc = tokenizer(e.question, e.context, truncation="only_second", max_length=features.max_seq_length,
                        stride=features.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                        token_type_ids=enc["token_type_ids"])
        null, best = float("inf"), (-float("inf"), "")
        for f in range(len(enc["input_ids"])):
            start, end = out.start_logits[f], out.end_logits[f]
            null = min(null, float(start[0] + end[0]))
            context = [i for i, sid in enumerate(enc.sequence_ids(f)) if sid == 1]
            offsets = enc["offset_mapping"][f]
            top_s = start.topk(min(features.n_best_size, len(start))).indices.tolist()
            top_e = end.topk(min(features.n_best_size, len(end))).indices.tolist()
            for i in top_s:
                for j in top_e:
                    if i in context and j in context and 0 <= j - i < features.max_answer_length:
                        score = float(start[i] + end[j])
                        if score > best[0]:
                            best = (score, e.context[int(offsets[i][0]):int(offsets[j][1])])
        answers[e.id] = "" if null - best[0] > features.null_score_diff_threshold else best[1]
    return answers


def test_span_qa_export_answers_as_the_suite_does(experiment, tmp_path):
    run = experiment.finetune("squad_v2", "base", seed=1)
    out = export_run(run.path, tmp_path / "qa")
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "question-answering" and meta["datasets"] == ["synthetic_squad"]
    f1 = next(m for m in meta["model-index"][0]["results"][0]["metrics"] if m["type"] == "f1")
    assert f1["value"] == pytest.approx(json.loads((run.path / "metrics.json").read_text())["f1"])
    assert "seed 1" in card and "git commit" in card and meta["license"] == "apache-2.0"
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]

    ours = json.loads((run.path / "predictions.json").read_text())
    examples = experiment.examples(experiment.task_config("squad_v2").dev)
    theirs = _hf_answers(out, examples, experiment.profile.features)
    assert theirs == {e.id: ours[e.id] for e in examples}
    assert any(theirs.values())  # it answers questions, not only abstains


def test_classification_export_gives_the_suites_logits_and_labels(experiment, tmp_path):
    run = experiment.finetune("mnli", "base", seed=1)
    out = export_run(run.path, tmp_path / "cls")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ElectraForSequenceClassification"]
    assert config["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert "stored as `ElectraForSequenceClassification`" in (out / "README.md").read_text()
    pipe = _pipeline("text-classification", out)
    examples = experiment.examples(experiment.task_config("mnli").dev)
    outputs = pipe([{"text": e.text_a, "text_pair": e.text_b} for e in examples], top_k=None, function_to_apply="none")
    labels = config["id2label"]
    theirs = torch.tensor([[next(s["score"] for s in out if s["label"] == labels[str(i)]) for i in range(3)]
                           for out in outputs])
    ours = load_file(str(run.path / "dev_logits.safetensors"))["logits"]
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


def test_the_folder_loads_in_a_process_without_the_suite(experiment, tmp_path):
    run = experiment.finetune("squad_v2", "base", seed=1)  # cached by the first test
    out = export_run(run.path, tmp_path / "qa")
    example = experiment.examples(experiment.task_config("squad_v2").dev)[0]
    code = ("import sys, json; sys.modules['road_repro'] = None\n"  # importing the suite would fail
            "from transformers import AutoModelForQuestionAnswering, AutoTokenizer\n"
            f"model = AutoModelForQuestionAnswering.from_pretrained({str(out)!r})\n"
            f"tok = AutoTokenizer.from_pretrained({str(out)!r})\n"
            f"out = model(**tok({example.question!r}, {example.context!r}, return_tensors='pt'))\n"
            "print(json.dumps({'answer': [int(out.start_logits.argmax()), int(out.end_logits.argmax())]}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answer" in json.loads(done.stdout.strip().splitlines()[-1])


def test_only_finished_finetuning_runs_export(experiment, tmp_path):
    warm = experiment.warm_start("base")
    with pytest.raises(ConfigError, match="warm_start.*only finetuning runs"):
        export_run(warm.path, tmp_path / "w")
    done = subprocess.run([sys.executable, "-m", "road_repro", "export", "no-such-run", "--out", str(tmp_path / "x"),
                           "--runs-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2 and "not a finished run" in done.stderr


@pytest.mark.shared_data
def test_a_minilm_run_of_the_real_model_path_exports_exactly(shared_data, tmp_path):
    """The packaged MiniLM-L6 on real SQuAD 2.0 and MNLI files (tests/profiles/mini_ci.yaml, 2 steps): the QA
    folder answers as the suite does, the classification folder (BERT weights as ELECTRA) gives its logits."""
    from tests.experiments.test_real_model_path import PROFILE, make_data_dir

    data_dir = make_data_dir(shared_data, tmp_path / "data")
    exp = Experiment(load_profile(str(PROFILE), [f"data_dir={data_dir}", "runtime.progress=false"]),
                     tmp_path / "runs", progress=False)
    qa = exp.finetune("squad_v2", "large", seed=1)
    out = export_run(qa.path, tmp_path / "qa")
    meta = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["license"] == "apache-2.0"
    ours = json.loads((qa.path / "predictions.json").read_text())
    examples = exp.examples(exp.task_config("squad_v2").dev)
    assert _hf_answers(out, examples, exp.profile.features) == {e.id: ours[e.id] for e in examples}

    cls = exp.finetune("mnli", "large", seed=1)
    out = export_run(cls.path, tmp_path / "cls")
    pipe = _pipeline("text-classification", out)
    examples = exp.examples(exp.task_config("mnli").dev)
    outputs = pipe([{"text": e.text_a, "text_pair": e.text_b} for e in examples], top_k=None, function_to_apply="none")
    labels = pipe.model.config.id2label
    theirs = torch.tensor([[next(s["score"] for s in o if s["label"] == labels[i]) for i in range(3)] for o in outputs])
    torch.testing.assert_close(theirs, load_file(str(cls.path / "dev_logits.safetensors"))["logits"], rtol=1e-4, atol=1e-4)
