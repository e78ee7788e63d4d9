"""Small builders shared by tests: a tiny model and random span-QA batches."""

from __future__ import annotations

import torch

from road_repro.config import ModelConfig
from road_repro.models.model import RoadModel, build_model

VOCAB = 128


def tiny_model(seed: int = 0, heads: dict | None = None, dropout: float = 0.0) -> RoadModel:
    """A 2-layer BERT-shaped model with a span head (dropout off by default so passes are deterministic)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(preset="tiny", hidden_dropout=dropout, attention_dropout=dropout)
    return build_model(cfg, VOCAB, heads or {"mrc": "span"})


def span_batch(n: int, length: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with random start/end labels."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(1, VOCAB, (n, length), generator=gen),
        "attention_mask": torch.ones(n, length, dtype=torch.long),
        "start_positions": torch.randint(0, length, (n,), generator=gen),
        "end_positions": torch.randint(0, length, (n,), generator=gen),
    }
