"""The one model class: a shared encoder plus named heads (one per task type in ROaD, per dataset in MT-DNN)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from road_repro.config import ModelConfig
from road_repro.errors import ConfigError
from road_repro.models.encoder import load_encoder
from road_repro.models.heads import ClassificationHead, SpanHead

#: Head kinds: "span" (MRC) or the number of classes of a classification head.
HeadKinds = dict[str, "str | int"]

#: Output key of the projected student hidden states (training mode, projection attached).
DISTILL_HIDDEN = "distill_hidden_states"
#: Name of the optional hidden-state distillation submodule (and prefix of its saved weights).
DISTILL_PROJECTION = "distill_projection"


class RoadModel(nn.Module):
    """Encoder + ``heads``; ``forward(..., head=name)`` runs the encoder once and the named head.

    ``distill_projection`` is None, or a hidden-state distillation module
    (:class:`road_repro.distill.HiddenStateKD`) assigned to it for training. It is a submodule, so it is
    trained (at the heads' rate) and saved with the model; only the training-mode forward uses it.
    """

    def __init__(self, encoder: nn.Module, heads: HeadKinds, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.head_kinds = dict(heads)
        self.heads = nn.ModuleDict(
            {name: SpanHead(hidden) if kind == "span" else ClassificationHead(hidden, int(kind), dropout)
             for name, kind in heads.items()}
        )
        self.distill_projection: nn.Module | None
        self.register_module(DISTILL_PROJECTION, None)

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
        """The head's outputs; ``hidden_states`` too if asked (embedding output first, then every layer).

        In training mode with a ``distill_projection`` attached, ``DISTILL_HIDDEN`` also holds its output
        (the projected student states of the distilled layers): the projection runs inside the forward so
        that DistributedDataParallel sees its parameters used. Evaluation mode never runs it.
        """
        distill = self.training and self.distill_projection is not None
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states or distill,
            **kwargs,
        )
        result = self.heads[head](out.last_hidden_state)
        if output_hidden_states:
            result["hidden_states"] = out.hidden_states
        if distill:
            result[DISTILL_HIDDEN] = self.distill_projection(out.hidden_states)
        return result


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Recompute each encoder layer during backward instead of keeping its activations (``enabled``), or not.

    Hugging Face's ``activation_checkpointing_enable`` with ``use_reentrant=False`` (which preserves the RNG,
    so dropout masks are the same when recomputed, and needs no input that requires grad); it acts in
    training mode only. ``model`` is a :class:`RoadModel` (its ``encoder``) or an encoder itself.
    """
    encoder = getattr(model, "encoder", model)
    if not getattr(encoder, "supports_gradient_checkpointing", False):
        raise ConfigError(f"runtime.activation_checkpointing: {type(encoder).__name__} does not support it")
    if not hasattr(encoder, "activation_checkpointing_enable"):  # transformers before its rename (5.x)
        if enabled:
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif encoder.is_gradient_checkpointing:
            encoder.gradient_checkpointing_disable()
    elif enabled:
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif encoder.is_activation_checkpointing:
        encoder.activation_checkpointing_disable()


def activation_checkpointing_enabled(model: nn.Module) -> bool:
    """Whether the encoder of ``model`` (or ``model`` itself) recomputes its layers in backward."""
    encoder = getattr(model, "encoder", model)
    name = "is_activation_checkpointing" if hasattr(encoder, "activation_checkpointing_enable") else \
        "is_gradient_checkpointing"  # transformers before its rename (5.x)
    return bool(getattr(encoder, name, False))


@contextlib.contextmanager
def activation_checkpointing_during(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Activation checkpointing on for the ``with`` block when ``enabled``, then back as it was (also on an
    error), so a model trained with it predicts, or serves as a teacher, as it did before; nothing if not
    ``enabled``."""
    if not enabled:
        yield
        return
    before = activation_checkpointing_enabled(model)
    set_activation_checkpointing(model, True)
    try:
        yield
    finally:
        set_activation_checkpointing(model, before)


def build_model(cfg: ModelConfig, vocab_size: int, heads: HeadKinds) -> RoadModel:
    """Load or build the encoder and attach freshly initialised heads."""
    return RoadModel(load_encoder(cfg, vocab_size), heads, dropout=cfg.hidden_dropout)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write all weights as safetensors (shared tensors handled by ``save_model``)."""
    save_model(model, str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; every key must match.

    One exception: the file's ``distill_projection.*`` weights (a student trained with hidden-state
    distillation) are skipped when ``model`` has no projection attached, as for prediction.
    """
    missing, unexpected = load_model(model, str(path), strict=False)
    unexpected = [k for k in unexpected if not k.startswith(DISTILL_PROJECTION + ".")]
    if missing or unexpected:
        raise RuntimeError(
            f"Error(s) in loading {path} into {type(model).__name__}: missing keys {sorted(missing)}, "
            f"unexpected keys {sorted(unexpected)}"
        )
