"""The one model class: a shared encoder plus named heads (one per task type in ROaD, per dataset in MT-DNN)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from road_repro.config import ModelConfig
from road_repro.models.encoder import load_encoder
from road_repro.models.heads import ClassificationHead, SpanHead

#: Head kinds: "span" (MRC) or the number of classes of a classification head.
HeadKinds = dict[str, "str | int"]


class RoadModel(nn.Module):
    """Encoder + ``heads``; ``forward(..., head=name)`` runs the encoder once and the named head."""

    def __init__(self, encoder: nn.Module, heads: HeadKinds, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.head_kinds = dict(heads)
        self.heads = nn.ModuleDict(
            {name: SpanHead(hidden) if kind == "span" else ClassificationHead(hidden, int(kind), dropout)
             for name, kind in heads.items()}
        )

    @property
    def num_layers(self) -> int:
        return int(self.encoder.config.num_hidden_layers)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        head: str,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> dict[str, Tensor]:
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states, **kwargs
        )
        result = self.heads[head](out.last_hidden_state)
        if output_hidden_states:
            result["hidden_states"] = out.hidden_states
        return result


def build_model(cfg: ModelConfig, vocab_size: int, heads: HeadKinds) -> RoadModel:
    """Load or build the encoder and attach freshly initialised heads."""
    return RoadModel(load_encoder(cfg, vocab_size), heads, dropout=cfg.hidden_dropout)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write all weights as safetensors (shared tensors handled by ``save_model``)."""
    save_model(model, str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model`` (strict: every key must match)."""
    load_model(model, str(path), strict=True)
