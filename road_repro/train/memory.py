"""How many rows a GPU holds: micro-batch splits and a peak-memory estimate from an encoder's shape (pure functions).

A training step of global batch ``B`` runs on each GPU as micro-batches of at most ``max_rows_per_device``
rows (gradient accumulation, see :mod:`road_repro.train.loop`); this module says how a GPU's share is split
(:func:`micro_bounds`) and how many rows fit in a GPU's memory (:func:`estimate_memory`,
:func:`max_rows`), for the training loop (``runtime.max_rows_per_device: 0`` = automatic) and the dry run.

**The estimate** (bytes per GPU, training; ``P`` parameters, ``P_lin`` those of the encoder's linear layers,
``L`` layers, ``h`` hidden, ``i`` intermediate, ``a`` heads, ``s`` sequence length, ``r`` rows of a
micro-batch, ``e`` bytes of an activation: 2 under fp16/bf16 autocast, 4 in fp32):

* weights fp32 ``4P``, gradients fp32 ``4P``, AdamW's two moments ``8P``, and under autocast the half
  precision copies of the linear weights that autocast caches for the forward and backward ``2 P_lin``;
  ``P = L (4h^2 + 2hi + 9h + i) + (V + 514) h + 2h`` (BERT-style layers and embeddings, vocabulary
  ``V``, 512 positions; the heads are small and left out; ALBERT: one layer's weights, embeddings of
  width 128 projected to ``h``, :class:`Shape`);
* activations saved for backward, per layer and row (after Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", generalised to ``i`` and ``e``; ``m`` bytes per dropout-mask
  element, 1 on CUDA): ``e 2si + 8sh + 2m sh`` for the feed-forward intermediate before and after GELU,
  the two LayerNorm inputs (fp32: autocast runs LayerNorm and the residual sums in fp32) and two dropout
  masks, plus

  - fused attention (PyTorch SDPA, what :func:`~road_repro.models.encoder.load_encoder` asks for;
    ``Shape.attention``): ``e 7sh + 4as`` -- the input of the Q/K/V projections, Q, K, V, the attention
    output and its reshaped copy, the feed-forward input, and the kernel's fp32 log-sum-exp;
  - eager attention: ``e 6sh + (2e + m) a s^2`` -- the same without the reshaped copy and log-sum-exp,
    but with the attention probabilities before and after dropout and the dropout mask (the ``s^2`` terms);

  plus the embeddings' (``(4 + m) sh``: the LayerNorm's fp32 input and the dropout mask), all times
  ``r``. With activation checkpointing only each layer's input is kept (``4sh`` per layer, fp32) and one
  layer's activations are recomputed at a time during backward;
* a backward workspace of one more layer's activations (gradients of the activations of the layer being
  differentiated);
* hidden-state KD (``teacher``; shape ``L_t``, ``h_t``): the teacher runs inside the student's step, after
  the student's forward, on the same GPU: its fp32 weights (plus autocast copies, ``4 P_t + 2 P_lin,t``),
  its forward without gradients (two of its layers' activations at a time, as forward-only work), the
  ``L_t + 1`` hidden states it returns (fp32: LayerNorm outputs, fp32 under autocast too,
  ``4 (L_t + 1) s h_t r``), and per distilled layer pair (at most ``L + 1``) the half-precision copy of the
  student state the projection reads, its projection and the fp32 difference kept for the MSE's backward
  (``(e h + (e + 4) h_t) s r``). All of it is added to the student's peak (a little conservative: the
  teacher's forward and the student's backward workspace are not live at once).

Forward-only work (evaluation, soft targets) holds the weights (plus autocast copies) and two layers'
activations of the rows at a time. Not counted: the CUDA context (0.3-0.5 GB) and allocator fragmentation;
a GPU is taken to hold :data:`USABLE_FRACTION` of its memory. :func:`measured_saved_bytes` counts the bytes
a real forward saves for backward, against which ``tests/train/test_memory.py`` checks the activation term.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from road_repro.errors import ConfigError

GiB = 1024**3

#: GPUs a run can name (``runtime.gpu``, ``--gpu``) and their memory as ``nvidia-smi`` reports it (MiB).
GPU_MEMORY_MIB: dict[str, int] = {
    "V100-16GB": 16_160, "V100-32GB": 32_510, "A100-40GB": 40_536, "A100-80GB": 81_050,
    "H100-80GB": 81_559, "H200-141GB": 143_771,
}
#: Share of a GPU's memory an estimate may fill (the rest: CUDA context, allocator fragmentation).
USABLE_FRACTION = 0.9
#: BERT's position embeddings (512) and token types (2).
POSITIONS = 514
#: Vocabulary assumed when a shape does not say (BERT/ELECTRA uncased WordPiece).
DEFAULT_VOCAB = 30_522


@dataclass(frozen=True)
class Shape:
    """What the memory estimate reads of an encoder: layers, widths, heads, vocabulary, and ALBERT's economies.

    ``embedding``: the width of the token embeddings (0: ``hidden``; ALBERT's 128 with a projection to
    ``hidden``); ``shared_layers``: one set of layer weights used by every layer (ALBERT), so the weights,
    gradients and optimizer states are those of one layer while the activations are still every layer's.
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int = DEFAULT_VOCAB
    embedding: int = 0
    shared_layers: bool = False
    attention: str = "fused"  # fused (PyTorch SDPA) or eager (attention probabilities kept: DeBERTa, or no SDPA)

    @property
    def linear_params(self) -> int:
        """Weights of the layers' linear maps (what autocast copies to half precision)."""
        stored = 1 if self.shared_layers else self.layers
        return stored * (4 * self.hidden**2 + 2 * self.hidden * self.intermediate)

    @property
    def params(self) -> int:
        """All parameters: the layers (linear weights, biases, two LayerNorms) and the embeddings."""
        h, i = self.hidden, self.intermediate
        e = self.embedding or h
        stored = 1 if self.shared_layers else self.layers
        return stored * (4 * h * h + 2 * h * i + 9 * h + i) + (self.vocab + POSITIONS) * e + (e * h if e != h else 0) + 2 * h


def shape_of(config) -> Shape:
    """The :class:`Shape` of a Hugging Face encoder config (``num_attention_heads`` default: hidden / 64)."""
    hidden = int(config.hidden_size)
    albert = getattr(config, "model_type", "") == "albert"
    return Shape(int(config.num_hidden_layers), hidden, int(getattr(config, "intermediate_size", None) or 4 * hidden),
                 int(getattr(config, "num_attention_heads", None) or max(1, hidden // 64)),
                 int(getattr(config, "vocab_size", None) or DEFAULT_VOCAB),
                 int(getattr(config, "embedding_size", None) or 0) if albert else 0,
                 albert and int(getattr(config, "num_hidden_groups", 1)) == 1,
                 "fused" if getattr(config, "_attn_implementation", None) in ("sdpa", "flash_attention_2") else "eager")


def activation_bytes(shape: Shape, rows: int, seq_len: int, elem: int, mask_bytes: int = 1) -> int:
    """Bytes one layer saves for backward for ``rows`` rows of ``seq_len`` tokens (module docstring).

    ``mask_bytes``: bytes of a dropout-mask element (1 on CUDA, where masks are bool; 4 on CPU in fp32).
    """
    s, h, i, a, attention = seq_len, shape.hidden, shape.intermediate, shape.heads, shape.attention
    common = elem * 2 * s * i + 8 * s * h + 2 * mask_bytes * s * h  # feed-forward, LayerNorm inputs, masks
    if attention == "fused":
        per_row = common + elem * 7 * s * h + 4 * a * s
    elif attention == "eager":
        per_row = common + elem * 6 * s * h + (2 * elem + mask_bytes) * a * s * s
    else:
        raise ConfigError(f"attention={attention!r} must be fused or eager")
    return rows * per_row


def embedding_bytes(shape: Shape, rows: int, seq_len: int, mask_bytes: int = 1) -> int:
    """Bytes the embeddings save for backward: the LayerNorm's fp32 input and the dropout mask."""
    return rows * seq_len * shape.hidden * (4 + mask_bytes)


def element_bytes(precision: str, gpu: str | None = None) -> int:
    """Bytes of an activation: 4 in fp32, 2 under fp16/bf16 autocast (``auto``: 2 on a GPU, 4 without one)."""
    if precision == "fp32" or (precision == "auto" and gpu is None):
        return 4
    if precision in ("fp16", "bf16", "auto"):
        return 2
    raise ConfigError(f"precision={precision!r} must be fp32, bf16, fp16 or auto")


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one GPU, by part (see the module docstring); ``total`` is their sum."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    teacher: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.teacher

    @property
    def gib(self) -> float:
        return self.total / GiB


def estimate_memory(shape: Shape, rows: int, seq_len: int, elem: int, *, checkpointing: bool = False,
                    train: bool = True, teacher: Shape | None = None) -> MemoryEstimate:
    """Peak bytes on one GPU running a micro-batch of ``rows`` rows of ``seq_len`` tokens (module docstring).

    ``elem``: bytes of an activation (:func:`element_bytes`); ``train=False``: forward only (no gradients,
    optimizer or saved activations); ``teacher``: hidden-state KD's in-step teacher.
    """
    if rows < 0 or seq_len < 1:
        raise ConfigError(f"rows={rows} and seq_len={seq_len} must be >= 0 and >= 1")
    p = shape.params
    weights = 4 * p + (2 * shape.linear_params if elem < 4 else 0)
    layer = activation_bytes(shape, rows, seq_len, elem)
    if not train:
        return MemoryEstimate(weights, 0, 0, 2 * layer, 0)
    embeddings = embedding_bytes(shape, rows, seq_len)
    saved = shape.layers * 4 * seq_len * shape.hidden * rows + layer if checkpointing else shape.layers * layer
    extra = 0 if teacher is None else teacher_bytes(shape, teacher, rows, seq_len, elem)
    return MemoryEstimate(weights, 4 * p, 8 * p, embeddings + saved + layer, extra)


def teacher_bytes(student: Shape, teacher: Shape, rows: int, seq_len: int, elem: int) -> int:
    """What hidden-state KD's in-step teacher adds to a training step's peak (module docstring): its weights,
    its forward without gradients, its hidden states, and the student's projections and fp32 differences."""
    weights = 4 * teacher.params + (2 * teacher.linear_params if elem < 4 else 0)
    forward = 2 * activation_bytes(teacher, rows, seq_len, elem)
    hidden = 4 * (teacher.layers + 1) * seq_len * teacher.hidden * rows
    pairs = (student.layers + 1) * (elem * student.hidden + (elem + 4) * teacher.hidden) * seq_len * rows
    return weights + forward + hidden + pairs


def gpu_bytes(gpu: str) -> int:
    """Memory of a named GPU (:data:`GPU_MEMORY_MIB`) in bytes; a clear error for an unknown name."""
    if gpu not in GPU_MEMORY_MIB:
        raise ConfigError(f"runtime.gpu={gpu!r} is not a known GPU: use one of {', '.join(GPU_MEMORY_MIB)}")
    return GPU_MEMORY_MIB[gpu] * 1024**2


def max_rows(budget: int, fits: Callable[[int], int], upper: int) -> int:
    """The most rows ``r <= upper`` with ``fits(r) <= budget`` (``fits`` increasing in ``r``); 0 when none fit."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def micro_bounds(rows: int, limit: int | None) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of the micro-batches of ``rows`` rows at most ``limit`` each (``None``: one).

    The fewest micro-batches that respect the limit, ``ceil(rows / limit)``, with sizes that differ by at
    most one (7 rows at limit 3: 3, 2, 2), in order.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"max_rows_per_device={limit} must be >= 1")
    n = 1 if limit is None or rows <= limit else math.ceil(rows / limit)
    base, extra = divmod(rows, n)
    bounds, lo = [], 0
    for k in range(n):
        hi = lo + base + (k < extra)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def rows_that_fit(shape: Shape, seq_len: int, elem: int, budget: int, *, checkpointing: bool = False,
                  teacher: Shape | None = None, upper: int = 4096) -> int:
    """The automatic ``max_rows_per_device``: the most rows (at most ``upper``, at least 1) of ``seq_len``
    tokens whose training :func:`estimate_memory` (with hidden-state KD's in-step ``teacher``) fits
    ``budget`` bytes. The training loop (:func:`device_row_limit`) and the dry run
    (:func:`road_repro.experiments.compute.stage_memory`) both choose it here."""
    return max(1, max_rows(budget, lambda r: estimate_memory(shape, r, seq_len, elem, checkpointing=checkpointing,
                                                             teacher=teacher).total, upper))


def device_row_limit(max_rows_per_device: int, model: nn.Module, device: torch.device, elem: int,
                     checkpointing: bool, teacher: nn.Module | None = None) -> Callable[[int], int | None]:
    """The loop's limit on a GPU's rows per micro-batch, as a function of the batch's sequence length.

    ``max_rows_per_device > 0`` is that limit. ``0`` (automatic) is, on a GPU, :func:`rows_that_fit`
    :data:`USABLE_FRACTION` of the device's memory, counting ``teacher`` (a model that runs inside each step
    on the same GPU: hidden-state KD's), and no limit on a CPU. A model without an ``encoder.config`` has no
    automatic limit.
    """
    if max_rows_per_device > 0:
        return lambda seq_len: max_rows_per_device
    config = getattr(getattr(model, "encoder", None), "config", None)
    if device.type != "cuda" or config is None:
        return lambda seq_len: None
    shape = shape_of(config)
    teacher_config = getattr(getattr(teacher, "encoder", None), "config", None)
    teacher_shape = shape_of(teacher_config) if teacher_config is not None else None
    budget = int(torch.cuda.get_device_properties(device).total_memory * USABLE_FRACTION)
    cache: dict[int, int] = {}

    def limit(seq_len: int) -> int:
        if seq_len not in cache:
            cache[seq_len] = rows_that_fit(shape, seq_len, elem, budget, checkpointing=checkpointing,
                                           teacher=teacher_shape)
        return cache[seq_len]

    return limit


def measured_saved_bytes(run: Callable[[], Tensor]) -> int:
    """Bytes of the distinct tensors autograd saves for backward while ``run()`` computes (each storage once).

    A CPU stand-in for a GPU's peak: counts what the activation term of :func:`estimate_memory` estimates,
    through :func:`torch.autograd.graph.saved_tensors_hooks`.
    """
    seen: dict[tuple[int, int], int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        base = t if t._base is None else t._base
        if key[0] != 0 and not (base.requires_grad and base.grad_fn is None):  # not a parameter (nor a view of one)
            seen[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())
