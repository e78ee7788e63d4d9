"""Real and padded tokens in the dry run (road_repro.experiments.compute): span windows priced as they run."""

from __future__ import annotations

import pytest

from road_repro.experiments.compute import PADDING_FACTOR, Tokens, row_tokens, window_tokens


def test_window_tokens_of_squad_match_the_measured_mean():
    # 137 MRQA context tokens x 1.2 word pieces + 16 question pieces + 3 special tokens; measured: 180.5
    assert window_tokens(137, 512, 128, 64) == pytest.approx(137 * 1.2 + 19)
    assert window_tokens(None, 512, 128, 64) is None


def test_long_contexts_fill_their_windows():
    # TriviaQA (784 context tokens) at 512/128: several windows, each close to full, never above 512
    real = window_tokens(784, 512, 128, 64)
    assert 400 < real <= 512


def test_row_tokens_by_padding_rule():
    assert row_tokens(180.0, 512, per_batch=False, batching="grouped") == Tokens(180.0, 512.0)
    assert row_tokens(180.0, 512, per_batch=True, batching="grouped") == Tokens(180.0, 180.0 * PADDING_FACTOR["grouped"])
    assert row_tokens(300.0, 512, per_batch=True, batching="shuffled") == Tokens(300.0, 512.0)  # capped
    assert row_tokens(None, 128, per_batch=True, batching="sorted") == Tokens(128.0, 128.0)  # unknown length


def test_tokens_add_scale_and_padding_share():
    total = Tokens(100.0, 400.0) * 2 + Tokens(50.0, 50.0)
    assert total == Tokens(250.0, 850.0)
    assert total.padding_share == pytest.approx(1 - 250 / 850)
    assert Tokens().padding_share == 0.0
