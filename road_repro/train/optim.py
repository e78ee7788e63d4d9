"""AdamW with layer-wise learning-rate decay and a linear warmup / linear decay schedule (paper Table 8).

Layer-wise decay (ELECTRA, Clark et al. 2020): the heads train at the base rate, each encoder layer below
at ``decay`` times the rate of the layer above, the embeddings lowest. With L encoder layers, every
parameter has a depth (encoder parameters named below as the HF model names them; the model prefixes
them with ``encoder.``):

* 0: the embeddings (word, position and type embeddings, their LayerNorm, and the projection of the
  embeddings to the hidden size: ELECTRA's ``embeddings_project``, ALBERT's
  ``encoder.embedding_hidden_mapping_in``, DeBERTa-v2's ``embeddings.embed_proj``);
* i in 1..L: the i-th transformer layer (``encoder.layer.<i-1>``);
* L+1: everything outside the encoder (task heads, projections for hidden-state distillation).

A parameter that several layers share takes the depth of the top layer it serves: ALBERT's layer group g
(HF ``AlbertTransformer`` runs group ``int(i / (L / G))`` at layer i, so with one group every shared
transformer weight is at depth L), and DeBERTa's relative position embeddings ``encoder.rel_embeddings``
with DeBERTa-v2's ``encoder.LayerNorm`` that normalises them (every layer reads them: depth L). A shared
parameter's gradient sums those layers' gradients; the rule gives it the rate of the highest layer that
uses it rather than slowing that layer to the rate of the lowest. DeBERTa-v2's ``encoder.conv`` runs once,
on the first layer's output: depth 1.

The rate at depth d follows ``OptimConfig.layerwise_convention``:

* ``road`` (default): ``lr * decay ** (L + 1 - d)``. Heads get lr, the top layer lr * decay, the
  embeddings lr * decay ** (L + 1).
* ``electra``: google-research/electra ``model/optimization.py`` (``_get_layer_lrs``) puts the task head
  at depth L + 2 (no parameter at L + 1) with rate ``lr * decay ** (L + 2 - depth)``. Heads get lr, the top
  layer lr * decay ** 2, the embeddings lr * decay ** (L + 2).

Every parameter under ``encoder.`` must match a rule of its encoder's ``model_type`` (``bert``, which
covers MiniLM, ``electra``, ``albert``, ``roberta``, ``deberta``, ``deberta-v2``), else
:class:`ConfigError` names it: no parameter silently trains at the full rate (ELECTRA's optimizer raises
likewise for a variable with no learning rate). Biases and LayerNorm weights get no weight decay.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from road_repro.config import LAYERWISE_CONVENTIONS, OptimConfig
from road_repro.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

#: Depth of a matched encoder parameter, from the match, L and the encoder's config (None: no depth).
Resolver = Callable[[re.Match[str], int, "PretrainedConfig"], "int | None"]


def _embeddings(match: re.Match[str], num_layers: int, config: PretrainedConfig) -> int:
    return 0


def _first_layer(match: re.Match[str], num_layers: int, config: PretrainedConfig) -> int:
    return 1


def _top_layer(match: re.Match[str], num_layers: int, config: PretrainedConfig) -> int:
    return num_layers


def _layer(match: re.Match[str], num_layers: int, config: PretrainedConfig) -> int | None:
    index = int(match.group(1))
    return index + 1 if index < num_layers else None


def _albert_group(match: re.Match[str], num_layers: int, config: PretrainedConfig) -> int | None:
    """The top layer that ALBERT layer group ``g`` serves (the group index as HF ``AlbertTransformer`` has it)."""
    group = int(match.group(1))
    served = [i + 1 for i in range(num_layers) if int(i / (num_layers / config.num_hidden_groups)) == group]
    return max(served, default=None)


_EMBEDDINGS: list[tuple[str, Resolver]] = [(r"embeddings\.", _embeddings)]
_LAYERS: list[tuple[str, Resolver]] = _EMBEDDINGS + [(r"encoder\.layer\.(\d+)\.", _layer)]
_FAMILIES: dict[str, list[tuple[str, Resolver]]] = {
    "bert": _LAYERS,
    "roberta": _LAYERS,
    "electra": _LAYERS + [(r"embeddings_project\.", _embeddings)],
    "albert": _EMBEDDINGS + [
        (r"encoder\.embedding_hidden_mapping_in\.", _embeddings),
        (r"encoder\.albert_layer_groups\.(\d+)\.", _albert_group),
    ],
    "deberta": _LAYERS + [(r"encoder\.rel_embeddings\.", _top_layer)],
    "deberta-v2": _LAYERS + [
        (r"encoder\.(?:rel_embeddings|LayerNorm)\.", _top_layer),
        (r"encoder\.conv\.", _first_layer),
    ],
}
#: Per encoder ``model_type``: patterns (matched at the start of the HF parameter name) and their depths.
DEPTH_RULES: dict[str, list[tuple[re.Pattern[str], Resolver]]] = {
    model_type: [(re.compile(pattern), resolve) for pattern, resolve in rules]
    for model_type, rules in _FAMILIES.items()
}


def param_depths(model: nn.Module, num_layers: int) -> dict[str, int]:
    """Depth of every parameter of ``model`` (module docstring); ``model.encoder.config`` names the family.

    Raises :class:`ConfigError` naming the model type and every ``encoder.`` parameter no rule places.
    """
    config = getattr(getattr(model, "encoder", None), "config", None)
    model_type = getattr(config, "model_type", None)
    rules = DEPTH_RULES.get(model_type, [])
    depths: dict[str, int] = {}
    unplaced: list[str] = []
    for name, _ in model.named_parameters():
        if not name.startswith("encoder."):
            depths[name] = num_layers + 1
            continue
        inner = name.removeprefix("encoder.")
        depth = next(
            (resolve(m, num_layers, config) for pattern, resolve in rules if (m := pattern.match(inner))), None
        )
        if depth is None:
            unplaced.append(name)
        else:
            depths[name] = depth
    if unplaced:
        shown = ", ".join(unplaced[:8]) + (f" and {len(unplaced) - 8} more" if len(unplaced) > 8 else "")
        raise ConfigError(
            f"layer-wise LR decay: no depth for {len(unplaced)} parameter(s) of encoder model_type "
            f"{model_type!r} with num_layers={num_layers} (families with depth rules: {', '.join(DEPTH_RULES)}): "
            f"{shown}"
        )
    return depths


def depth_lr(cfg: OptimConfig, depth: int, num_layers: int) -> float:
    """The learning rate at ``depth`` under ``cfg.layerwise_convention`` (module docstring)."""
    if cfg.layerwise_convention not in LAYERWISE_CONVENTIONS:
        raise ConfigError(f"layerwise_convention={cfg.layerwise_convention!r} must be one of {LAYERWISE_CONVENTIONS}")
    if depth > num_layers:
        return cfg.lr
    top = num_layers + 1 if cfg.layerwise_convention == "road" else num_layers + 2
    return cfg.lr * cfg.layerwise_lr_decay ** (top - depth)


def _no_weight_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias")


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, num_layers: int, total_steps: int
) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW parameter groups by (depth, weight decay) and the linear warmup + linear decay schedule."""
    depths = param_depths(model, num_layers)
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((depths[name], _no_weight_decay(name, param)), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": depth_lr(cfg, depth, num_layers),
            "weight_decay": 0.0 if no_wd else cfg.weight_decay,
            "depth": depth,
        }
        for (depth, no_wd), params in sorted(groups.items())
    ]
    # fused: one kernel for all tensors (CPU and CUDA); 2x faster steps for small models in make bench
    optimizer = torch.optim.AdamW(
        param_groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, fused=True
    )
    warmup = int(cfg.warmup_ratio * total_steps)
    return optimizer, LambdaLR(optimizer, linear_warmup_decay(warmup, total_steps))


def linear_warmup_decay(warmup_steps: int, total_steps: int):
    """Multiplier: 0 -> 1 linearly over ``warmup_steps``, then 1 -> 0 linearly at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
