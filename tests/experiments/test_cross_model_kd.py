"""Cross-model KD (blog 4.1 / 5.1 / 6: ELECTRA-large or ROaD-large into ELECTRA-base): two checkpoints with
two tokenizer *names* and one vocabulary share per-feature soft targets; another vocabulary stops before
any training with a ConfigError."""

from __future__ import annotations

import json
import shutil

import pytest

from road_repro.errors import ConfigError
from road_repro.experiments.tables import run_table
from road_repro.models.encoder import packaged_minilm_path

pytestmark = pytest.mark.slow

SPEC = """
table: XKD
title: cross-model KD check
model: base
evaluate:
  squad_v2: [f1]
rows:
  - {method: KD from the large model, distill: kd, teacher: {model: large}}
"""

TINY = ["seeds=[1]", "distill.n_teachers=1", "models.large.warm_start=null", "models.base.warm_start=null",
        "tasks.squad_v2.train.limit=64", "tasks.squad_v2.dev.limit=32", "finetune.epochs=1", "runtime.progress=false"]


def _copy_tokenizer(dest):
    dest.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(packaged_minilm_path() / name, dest / name)
    return dest


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "xkd.yaml"
    path.write_text(SPEC)
    return path


def test_two_names_one_vocabulary_distil(tmp_path, spec):
    teacher_tok, student_tok = _copy_tokenizer(tmp_path / "teacher-tok"), _copy_tokenizer(tmp_path / "student-tok")
    frame = run_table(str(spec), "smoke", output_dir=tmp_path / "out", runs_dir=tmp_path / "runs", progress=False,
                      overrides=TINY + [f"models.large.tokenizer={teacher_tok}", f"models.base.tokenizer={student_tok}"])
    assert len(frame[frame["metric"] == "f1"]) == 1 and frame["value"].notna().all()
    student = json.loads((tmp_path / "runs" / frame["run_id"].iloc[0] / "config.json").read_text())["config"]
    (teacher_id,) = student["teachers"]
    teacher = json.loads((tmp_path / "runs" / teacher_id / "config.json").read_text())["config"]
    assert student["model"]["tokenizer"] == str(student_tok) and teacher["model"]["tokenizer"] == str(teacher_tok)
    assert student["train_fingerprint"] == teacher["train_fingerprint"]  # same features, whatever the names


def test_another_vocabulary_stops_before_training(tmp_path, spec):
    other = _copy_tokenizer(tmp_path / "other-vocab")
    tokenizer_json = json.loads((other / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    vocab["zzyzx"] = vocab.pop("[unused0]")  # one token differs: a different vocabulary of the same size
    (other / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    (other / "vocab.txt").write_text((other / "vocab.txt").read_text().replace("[unused0]\n", "zzyzx\n", 1))
    with pytest.raises(ConfigError, match=r"models.base \(student\) and models.large \(teacher\) tokenize "
                                          r"differently \(vocabularies differ: 30522 vs 30522 tokens, 1 only in"):
        run_table(str(spec), "smoke", output_dir=tmp_path / "out", runs_dir=tmp_path / "runs", progress=False,
                  overrides=TINY + [f"models.base.tokenizer={other}"])
    assert not list((tmp_path / "runs").glob("*-*"))  # nothing trained, no run folder
    assert not (tmp_path / "out" / "smoke" / "XKD.csv").exists()
