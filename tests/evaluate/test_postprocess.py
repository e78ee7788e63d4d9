"""SQuAD 2.0 post-processing on hand-made logits, against brute force, and with the real doc-stride tokenizer."""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from road_repro.data.schema import Answer, QAExample
from road_repro.errors import ConfigError, DataError
from road_repro.evaluate.postprocess import squad_predictions

CONTEXT = "Denver Broncos won Super Bowl 50 in 2016"
WORDS = [m.span() for m in re.finditer(r"\S+", CONTEXT)]  # Denver Broncos won Super Bowl 50 in 2016
L = 12  # [CLS] question [SEP] up to 8 context words [SEP] (pad)
FIRST = 3  # position of the first context token


def feature_offsets(first_word: int, last_word: int) -> torch.Tensor:
    """[L, 2] offsets of a feature holding context words first_word..last_word-1 from position 3 on."""
    off = torch.full((L, 2), -1, dtype=torch.long)
    for pos, w in enumerate(range(first_word, last_word), start=FIRST):
        off[pos] = torch.tensor(WORDS[w])
    return off


def logits(values: dict[int, float]) -> torch.Tensor:
    """[L] zeros with the given position -> value entries."""
    out = torch.zeros(L)
    for pos, v in values.items():
        out[pos] = v
    return out


def one_feature(start: dict[int, float], end: dict[int, float], **kwargs) -> tuple[dict, dict]:
    """Post-process one question with one feature over the whole context."""
    example = QAExample("q", CONTEXT, "who?")
    return squad_predictions(
        [example], torch.tensor([0]), feature_offsets(0, 8)[None], logits(start)[None], logits(end)[None], **kwargs
    )


def test_known_answer() -> None:
    """Start 5 on 'Denver' (pos 3), end 4 on 'Broncos' (pos 4): span 9, null 1 + 1 = 2, odds 2 - 9."""
    preds, odds = one_feature({0: 1.0, 3: 5.0}, {0: 1.0, 4: 4.0})
    assert preds == {"q": "Denver Broncos"}
    assert odds == {"q": pytest.approx(-7.0)}


def test_null_wins_when_cls_scores_high_and_threshold_shifts_it() -> None:
    """Null 6 + 6 = 12 against span 9: odds 3 > 0 -> ''. The rule is a strict '>': threshold 3 answers."""
    start, end = {0: 6.0, 3: 5.0}, {0: 6.0, 4: 4.0}
    preds, odds = one_feature(start, end)
    assert preds == {"q": ""} and odds == {"q": pytest.approx(3.0)}
    assert one_feature(start, end, null_score_diff_threshold=3.0)[0] == {"q": "Denver Broncos"}
    assert one_feature(start, end, null_score_diff_threshold=2.5)[0] == {"q": ""}


def test_span_across_doc_stride_features_picks_best_and_min_null() -> None:
    """Feature A (words 0-5): 'Super Bowl' 2 + 2, null 1 + 1. Feature B (words 3-7): 'Bowl 50' 3 + 3, null 4 + 4.
    Best span 6 from B; null = min(2, 8) = 2, so odds = -4 and the question is answered (max null would say '')."""
    example = QAExample("q", CONTEXT, "which?")
    offsets = torch.stack([feature_offsets(0, 6), feature_offsets(3, 8)])
    # word w sits at position FIRST + w - first_word of its feature
    start = torch.stack([logits({0: 1.0, FIRST + 3: 2.0}), logits({0: 4.0, FIRST + 1: 3.0})])
    end = torch.stack([logits({0: 1.0, FIRST + 4: 2.0}), logits({0: 4.0, FIRST + 2: 3.0})])
    preds, odds = squad_predictions([example], torch.tensor([0, 0]), offsets, start, end)
    assert preds == {"q": "Bowl 50"}
    assert odds == {"q": pytest.approx(-4.0)}


def test_max_answer_length_is_respected() -> None:
    """Start 5 on 'Denver', end 5 on '2016' (8 tokens) and 1 on 'Broncos': whole context at length 8, else
    'Denver Broncos' (6 beats every other pair within 3 tokens, all at most 5)."""
    start, end = {0: -9.0, FIRST: 5.0}, {0: -9.0, FIRST + 7: 5.0, FIRST + 1: 1.0}
    assert one_feature(start, end, max_answer_length=8)[0] == {"q": CONTEXT}
    assert one_feature(start, end, max_answer_length=7)[0] == {"q": "Denver Broncos"}
    preds, odds = one_feature(start, end, max_answer_length=3)
    assert preds == {"q": "Denver Broncos"} and odds == {"q": pytest.approx(-18.0 - 6.0)}


def test_only_top_n_best_starts_and_ends_are_paired() -> None:
    """With n_best_size=1 the only pair is 'Denver'..'2016', too long for 3 tokens: no span, '' with odds inf."""
    preds, odds = one_feature({0: -9.0, FIRST: 5.0}, {0: -9.0, FIRST + 7: 5.0, FIRST + 1: 1.0},
                              max_answer_length=3, n_best_size=1)
    assert preds == {"q": ""} and odds == {"q": float("inf")}


def test_non_context_tokens_and_reversed_spans_are_never_chosen() -> None:
    """Huge logits on question, separator and padding positions are ignored; end 'won' (10) before start
    'Bowl' (10) is invalid. Best valid: 'Broncos' (1) .. 'won' (10) = 11 > 10; null -20 -> odds -31."""
    outside = {1: 100.0, 2: 100.0, L - 1: 100.0}
    start = {**outside, 0: -10.0, FIRST + 4: 10.0, FIRST + 1: 1.0}
    end = {**outside, 0: -10.0, FIRST + 2: 10.0, FIRST + 3: 1.0}
    example = QAExample("q", CONTEXT, "who?")
    offsets = feature_offsets(0, 8)
    offsets[L - 1] = -1
    preds, odds = squad_predictions([example], torch.tensor([0]), offsets[None], logits(start)[None],
                                    logits(end)[None])
    assert preds == {"q": "Broncos won"} and odds == {"q": pytest.approx(-31.0)}


def brute_force(start: torch.Tensor, end: torch.Tensor, offsets: torch.Tensor, max_len: int) -> tuple[float, int, int]:
    """Best valid (score, start, end) over all L^2 pairs of one feature, by direct enumeration."""
    best = (float("-inf"), -1, -1)
    ctx = [bool(o[0] >= 0) for o in offsets]
    for i, j in itertools.product(range(len(ctx)), repeat=2):
        if ctx[i] and ctx[j] and i <= j < i + max_len:
            best = max(best, (float(start[i]) + float(end[j]), i, j), key=lambda t: t[0])
    return best


def test_matches_brute_force_on_random_logits() -> None:
    """n_best_size >= L makes the top-k search exhaustive, so it must equal the O(L^2) enumeration."""
    gen = torch.Generator().manual_seed(0)
    examples = [QAExample(f"q{i}", CONTEXT, "?") for i in range(4)]
    example_index = torch.tensor([0, 1, 1, 2, 3, 3, 3, 0])
    n = len(example_index)
    offsets = torch.stack([feature_offsets(a, b) for a, b in [(0, 8), (0, 5), (3, 8), (1, 7), (0, 3), (2, 6),
                                                              (5, 8), (4, 8)]])
    start, end = torch.randn(n, L, generator=gen), torch.randn(n, L, generator=gen)
    preds, odds = squad_predictions(examples, example_index, offsets, start, end, n_best_size=L,
                                    max_answer_length=3, null_score_diff_threshold=float("inf"))
    for i, ex in enumerate(examples):
        feats = [f for f in range(n) if example_index[f] == i]
        null = min(float(start[f, 0] + end[f, 0]) for f in feats)
        score, s, e, f = max(((*brute_force(start[f], end[f], offsets[f], 3), f) for f in feats),
                             key=lambda t: t[0])
        assert odds[ex.id] == pytest.approx(null - score, abs=1e-6)
        assert preds[ex.id] == CONTEXT[int(offsets[f, s, 0]) : int(offsets[f, e, 1])]


def test_low_precision_logits_are_accepted() -> None:
    preds, odds = one_feature({0: 1.0, 3: 5.0}, {0: 1.0, 4: 4.0})
    example = QAExample("q", CONTEXT, "who?")
    half = squad_predictions([example], torch.tensor([0]), feature_offsets(0, 8)[None],
                             logits({0: 1.0, 3: 5.0})[None].bfloat16(), logits({0: 1.0, 4: 4.0})[None].bfloat16())
    assert half == (preds, odds)


def test_real_tokenizer_doc_stride(tokenizer) -> None:
    """A long context split into several 48-token features; logits peak on the answer's tokens in every
    feature that holds it. The unanswerable question's CLS dominates, so it gets ''."""
    filler = " ".join(f"Sentence {i} talks about nothing in particular." for i in range(12))
    context = f"{filler} The final was won by the Denver Broncos in Santa Clara. {filler}"
    answer = Answer("Denver Broncos", context.index("Denver Broncos"))
    examples = [QAExample("a", context, "Who won the final?", (answer,)), QAExample("u", context, "Who lost?")]
    enc = tokenizer([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                    max_length=48, stride=16, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length", return_tensors="pt")
    example_index = enc["overflow_to_sample_mapping"]
    n = len(example_index)
    assert n > 4 and (example_index == 0).sum() > 1  # several features per question
    offsets = enc["offset_mapping"].clone()
    for f in range(n):
        outside = torch.tensor([sid != 1 for sid in enc.sequence_ids(f)])
        offsets[f][outside] = -1
    start, end = torch.zeros(n, 48), torch.zeros(n, 48)
    a_end = answer.start + len(answer.text)
    for f in range(n):
        if example_index[f] == 0:
            start[f][(offsets[f, :, 0] == answer.start)] = 8.0
            end[f][(offsets[f, :, 1] == a_end)] = 8.0
        else:
            start[f, 0] = end[f, 0] = 9.0
    answered = example_index == 0
    assert (start[answered] == 8.0).sum() > 1 and (end[answered] == 8.0).sum() > 1  # answer in 2+ features
    preds, odds = squad_predictions(examples, example_index, offsets, start, end)
    assert preds == {"a": "Denver Broncos", "u": ""}
    assert odds["a"] == pytest.approx(0.0 - 16.0) and odds["u"] == pytest.approx(18.0 - 0.0)


# --- bad input -------------------------------------------------------------------------------------------


def _args(n: int = 1) -> dict:
    return {
        "examples": [QAExample("q", CONTEXT, "?")],
        "example_index": torch.zeros(n, dtype=torch.long),
        "offsets": feature_offsets(0, 8).expand(n, L, 2),
        "start_logits": torch.zeros(n, L),
        "end_logits": torch.zeros(n, L),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"end_logits": torch.zeros(1, L - 1)}, "start_logits .* and end_logits"),
        ({"offsets": torch.zeros(1, L, 3, dtype=torch.long)}, "offsets .* must be"),
        ({"example_index": torch.zeros(2, dtype=torch.long)}, "example_index"),
        ({"example_index": torch.tensor([1])}, r"must lie in 0\.\.0"),
        ({"examples": [QAExample("q", CONTEXT, "?"), QAExample("r", CONTEXT, "?")]}, r"no feature, e\.g\. \['r'\]"),
        ({"examples": [QAExample("q", CONTEXT, "?"), QAExample("q", CONTEXT, "?")]}, "not unique"),
        ({"examples": [QAExample("q", "Denver", "?")]}, "beyond the context of example 'q'"),
    ],
)
def test_bad_tensors_raise_data_error(change: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        squad_predictions(**{**_args(), **change})


@pytest.mark.parametrize("setting", ["n_best_size", "max_answer_length"])
def test_bad_settings_raise_config_error(setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        squad_predictions(**_args(), **{setting: 0})
