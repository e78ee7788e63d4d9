"""Prediction heads: a span head for MRC and a classification head for NLI / sentiment / paraphrase.

ROaD shares one head per task type across datasets; MT-DNN keeps one per dataset. Both are just a
``ModuleDict`` of these heads keyed by head name (see :mod:`road_repro.models.model`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SpanHead(nn.Module):
    """Start and end logits per token (position 0, CLS, is the no-answer position)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, hidden: Tensor) -> dict[str, Tensor]:
        start, end = self.qa_outputs(hidden).float().unbind(dim=-1)
        return {"start_logits": start, "end_logits": end}


class ClassificationHead(nn.Module):
    """ELECTRA-style sentence(-pair) classifier on the first token: dense, GELU, dropout, projection."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: Tensor) -> dict[str, Tensor]:
        x = self.dropout(hidden[:, 0])
        x = self.dropout(torch.nn.functional.gelu(self.dense(x)))
        return {"logits": self.out_proj(x).float()}
