"""Benchmark 5: the data path at the paper scale -- feature build, bytes on disk, memory of a KD process, projection.

Writes ``<out>/data_path.csv`` (columns ``measure, value, unit, baseline, ratio, goal, meets_goal``):

* (a) **tokenization throughput**: our feature store build (:class:`road_repro.data.feature_store.FeatureStore`,
  examples digest and checksums included) vs Hugging Face ``run_qa.py``'s ``prepare_train_features`` applied
  with ``datasets.Dataset.map(batched=True)`` -- the same tokenizer (the packaged 30,522-token WordPiece, as
  ELECTRA's), the same settings (512 / stride 128 / query 64), the same ``num_proc``, both writing Arrow
  files. Examples/s; goal: ratio >= 1.0. :func:`prepare_train_features` below re-implements run_qa's labelling
  loop (start/end at the first answer's tokens, CLS when the window does not hold it) for this comparison.
* (b) **bytes on disk**: per stored MRC training window at 512 tokens without offsets (windows of long synthetic
  contexts, so every window is full: the worst case; goal <= 1,200 bytes) and on average over the real SQuAD 2.0
  dev windows; the baseline is run_qa's Arrow rows. Per teacher's soft targets of one span window (float16
  start and end logits), baseline float32.
* (c) **peak resident memory of a KD training process** (3 teachers' soft targets, Weighted KD, a tiny model)
  over 10x more windows (200k vs 20k; 2k vs 20k... with ``--quick``: 1k vs 10k), each in a fresh
  subprocess that maps the stored features and the soft-target files as a finetune stage does and trains a fixed
  number of steps. Goal: the larger process's peak RSS grows by less than 10 %.
* (d) **projection to the paper's Table 1** (MTL datasets at 512 tokens, SQuAD 2.0 finetuning): features and soft
  targets on disk, memory per rank, minutes to build the features on 16 cores -- from the sizes measured above
  and the registry's sizes and estimated windows per example (see :func:`table1`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch

from benchmarks.common import BenchSettings, parser, print_table, settings_from_args, shared_data_dir, tokenizer_for, write_csv
from road_repro.data.feature_store import FeatureSpec, FeatureStore
from road_repro.data.registry import load_examples
from road_repro.data.schema import Answer, QAExample
from road_repro.data.synthetic import synthetic_squad
from road_repro.distill.cache import open_soft_targets, save_soft_targets

NAME = "data_path"
COLUMNS = ("measure", "value", "unit", "baseline", "ratio", "goal", "meets_goal")
SPAN = FeatureSpec("span", 512, 128, 64)

#: Paper Table 1's MTL datasets (the paper profile's ``mtl.datasets``) and the finetuning set. Sizes and span-QA
#: windows per example come from the dataset registry and the dry run's estimate
#: (:func:`road_repro.experiments.compute.windows_per_example`), so the projection and the plan agree.
MTL_DATASETS = ("triviaqa", "natural_questions", "quac", "qa_srl", "qa_zre", "snli", "mnli", "qqp", "amazon")
#: Classes per classification dataset (soft targets per row).
CLASSES = {"snli": 3, "mnli": 3, "qqp": 2, "amazon": 5}
BUILD_CORES = 16


def prepare_train_features(examples: dict[str, list], tokenizer, max_seq_length: int, doc_stride: int) -> dict:
    """run_qa.py's training-feature function: padded windows with start/end token labels (CLS when absent)."""
    questions = [q.lstrip() for q in examples["question"]]
    enc = tokenizer(questions, examples["context"], truncation="only_second", max_length=max_seq_length,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length")
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    enc["start_positions"], enc["end_positions"] = [], []
    for i, offsets in enumerate(offset_mapping):
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id)
        seq = enc.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        if not answers["answer_start"]:
            enc["start_positions"].append(cls)
            enc["end_positions"].append(cls)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        first = seq.index(1)
        last = len(ids) - 1 - seq[::-1].index(1)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            enc["start_positions"].append(cls)
            enc["end_positions"].append(cls)
            continue
        while first < len(offsets) and offsets[first][0] <= start_char:
            first += 1
        enc["start_positions"].append(first - 1)
        while offsets[last][1] >= end_char:
            last -= 1
        enc["end_positions"].append(last + 1)
    return enc


def _squad_columns(examples: Sequence[QAExample]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "id": [e.id for e in examples], "question": [e.question for e in examples],
        "context": [e.context for e in examples],
        "answers": [{"text": [a.text for a in e.answers], "answer_start": [a.start for a in e.answers]} for e in examples],
    })


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*.arrow"))


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, BUILD_CORES))


def throughput(examples: Sequence[QAExample], tmp: Path, workers: int) -> dict[str, float]:
    """(a): examples/s and bytes/window of our store build and of run_qa's ``datasets.map``, same settings."""
    tok = tokenizer_for(BenchSettings(model="minilm"))
    datasets.disable_progress_bars()
    started = time.perf_counter()
    stored = FeatureStore(tmp / "ours", workers=workers).get(examples, tok, SPAN, "bench squad")
    ours = time.perf_counter() - started
    table = _squad_columns(examples)
    (tmp / "hf").mkdir()
    started = time.perf_counter()
    hf = table.map(prepare_train_features, batched=True, num_proc=workers if workers > 1 else None,
                   remove_columns=table.column_names, fn_kwargs={"tokenizer": tok, "max_seq_length": 512,
                                                                 "doc_stride": 128},
                   cache_file_name=str(tmp / "hf" / "features.arrow"), new_fingerprint="run_qa-bench")
    theirs = time.perf_counter() - started
    return {"ours_ex_s": len(examples) / ours, "hf_ex_s": len(examples) / theirs, "ours_rows": len(stored),
            "hf_rows": hf.num_rows, "ours_bytes_per_window": stored.nbytes / len(stored),
            "hf_bytes_per_window": _dir_bytes(tmp / "hf") / hf.num_rows,
            "tokens_per_s": float(stored.dataset.data.column("input_ids").combine_chunks().flatten().__len__()) / ours}


def meets(row) -> bool | None:
    """Whether a row meets its goal (None without one): ``ratio >=``, ``ratio <=`` or ``value <=`` the goal."""
    if row.check is None or pd.isna(row.goal):
        return None
    key, op = row.check.split()
    x = row.ratio if key == "ratio" else row.value
    return bool(x >= row.goal) if op == ">=" else bool(x <= row.goal)


def full_windows(n: int, tmp: Path) -> float:
    """(b): bytes per stored training window when every window is full: contexts of single-token words sized so
    that question + context + special tokens are exactly 512 tokens (one full window each, the worst case)."""
    tok = tokenizer_for(BenchSettings(model="minilm"))
    words = ["alpha", "river", "stone", "music", "paris", "engine", "garden", "silver", "winter", "harbor"]
    question = "Which word comes first?"
    room = SPAN.max_seq_length - tok.num_special_tokens_to_add(pair=True) - len(tok.tokenize(question))
    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        context = " ".join(rng.choice(words, room))
        examples.append(QAExample(f"long-{i}", context, question, (Answer(context[:5], 0),)))
    stored = FeatureStore(tmp / "full").get(examples, tok, SPAN, "full windows")
    lengths = np.diff(stored.dataset.data.column("input_ids").combine_chunks().offsets.to_numpy())
    if len(stored) != n or not (lengths == SPAN.max_seq_length).all():
        raise RuntimeError("the sized synthetic contexts did not make exactly one full window each")
    return stored.nbytes / len(stored)


def soft_target_bytes(tmp: Path, rows: int = 1000) -> tuple[float, float]:
    """(b): bytes per span window per teacher of a float16 soft-target file, and of a float32 one."""
    logits = {"start_logits": torch.randn(rows, 512), "end_logits": torch.randn(rows, 512)}
    half = save_soft_targets(tmp / "half.safetensors", logits, {"teacher": "bench"})
    full = save_soft_targets(tmp / "full.safetensors", logits, {"teacher": "bench"}, dtype=torch.float32)
    return half.stat().st_size / rows, full.stat().st_size / rows


# -- (c): a KD training process, run in a fresh interpreter ----------------------------------------------------

def _prepare_kd(n: int, root: Path, length: int) -> tuple[Path, list[Path]]:
    """Store ``n`` synthetic windows of ``length`` tokens and 3 teachers' float16 soft targets for them."""
    examples = synthetic_squad(n, seed=0)
    spec = FeatureSpec("span", length, 16, 16)
    stored = FeatureStore(root / "features").get(examples, tokenizer_for(BenchSettings(model="minilm")), spec, f"kd {n}")
    gen = torch.Generator().manual_seed(0)
    files = []
    for t in range(3):
        logits = {k: torch.randn(len(stored), length, generator=gen) * 3 for k in ("start_logits", "end_logits")}
        files.append(save_soft_targets(root / f"teacher{t}.safetensors", logits, {"teacher": f"t{t}"}))
    return stored.path, files


def kd_process(features: Path, teachers: Sequence[Path], steps: int) -> dict[str, float]:
    """What a KD finetune stage holds: mapped features, mapped soft targets (Weighted KD), a model; peak RSS."""
    from benchmarks.common import _proc_status_kb
    from road_repro.config import ModelConfig, OptimConfig
    from road_repro.distill.targets import TeacherTargets
    from road_repro.models.model import build_model
    from road_repro.train.loop import EpochBatches, Pass, train
    from road_repro.train.objectives import Objective, pass_losses

    torch.set_num_threads(1)
    stored = FeatureStore(features.parent).open(features)
    files = [open_soft_targets(p) for p in teachers]
    gold = stored.labels()
    extra = {f"teacher_{side}_logits": TeacherTargets(files, f"{side}_logits", "weighted", gold[f"{side}_positions"])
             for side in ("start", "end")}
    batches = EpochBatches(len(stored), 16, seed=0)
    model = build_model(ModelConfig(preset="tiny"), 30522, {"mrc": "span"})
    objective = Objective("weighted", 5.0, 0.9)

    def source(step: int) -> list[Pass]:
        rows = batches(step)
        batch = stored.batch(rows)
        batch.update({k: v[rows] for k, v in extra.items()})
        return [Pass("mrc", "bench", batch)]

    train(model, source, lambda out, p, prog: pass_losses(objective, out, p.batch, prog), steps,
          OptimConfig(lr=1e-4, batch_size=16), num_layers=model.num_layers, device=torch.device("cpu"), progress=False)
    return {"peak_rss_mb": (_proc_status_kb("VmHWM") or 0) / 1024, "rows": len(stored),
            "anon_mb": (_proc_status_kb("RssAnon") or 0) / 1024, "file_mb": (_proc_status_kb("RssFile") or 0) / 1024}


def peak_rss(sizes: Sequence[int], tmp: Path, length: int, steps: int) -> dict[int, float]:
    """(c): peak RSS (MiB) of a fresh KD process per dataset size."""
    out = {}
    for n in sizes:
        features, teachers = _prepare_kd(n, tmp / f"kd{n}", length)
        cmd = [sys.executable, "-m", "benchmarks.data_path", "--kd-process", str(features), "--steps", str(steps),
               *(["--teachers", *map(str, teachers)])]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        out[n] = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return out


# -- (d): projection -------------------------------------------------------------------------------------------

def examples_bytes() -> dict[str, float]:
    """Python memory per loaded example (tracemalloc), on the real data when present, else synthetic."""
    import tracemalloc

    from road_repro.data.synthetic_tasks import synthetic_nli

    root = shared_data_dir()
    out = {}
    for kind, load in (("span", lambda: load_examples("squad_v2", "dev", data_dir=root, limit=3000) if root
                        else synthetic_squad(3000, 0)),
                       ("pair", lambda: load_examples("mnli", "dev", data_dir=root, limit=3000) if root
                        else synthetic_nli(3000, 0))):
        tracemalloc.start()
        examples = load()
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[kind] = current / len(examples)
        del examples
    return out


def table1() -> dict[str, tuple[str, int, float]]:
    """Per paper-scale training set: (kind, examples, windows per example at 512 / 128 / 64)."""
    from road_repro.data.registry import get_dataset
    from road_repro.experiments.compute import windows_per_example

    out = {}
    for name in (*MTL_DATASETS, "squad_v2"):
        spec = get_dataset(name)
        span = spec.task == "mrc"
        windows = windows_per_example(spec.context_tokens, SPAN.max_seq_length, SPAN.doc_stride,
                                      SPAN.max_query_length) if span else 1.0
        out[name] = ("span" if span else "pair", spec.examples["train"], windows)
    return out


def projection(window_bytes: float, pair_row_bytes: float, soft_bytes: float, tokens_per_s: float,
               example_bytes: dict[str, float]) -> list[tuple[str, float, str]]:
    """(d): the paper's data (MTL datasets of Table 1 and SQuAD 2.0 train) at our measured sizes and rates.

    Every span window is costed as a full 512-token window (an upper bound), pairs at the measured average."""
    sets = table1()
    squad = sets.pop("squad_v2")
    span_windows = sum(n * w for kind, n, w in sets.values() if kind == "span")
    pair_rows = sum(n for kind, n, _ in sets.values() if kind == "pair")
    squad_windows = squad[1] * squad[2]
    features_gb = ((span_windows + squad_windows) * window_bytes + pair_rows * pair_row_bytes) / 1e9
    # KD during MTL: one teacher per dataset; span logits per window, class logits per row (float16).
    mtl_soft = span_windows * soft_bytes + sum(sets[d][1] * CLASSES[d] * 2 for d in CLASSES)
    squad_soft = 3 * squad_windows * soft_bytes  # Weighted KD from 3 teachers (Table 5)
    examples_gb = (sum(n for kind, n, _ in sets.values() if kind == "span") * example_bytes["span"]
                   + pair_rows * example_bytes["pair"]) / 1e9
    tokens = (span_windows + squad_windows) * SPAN.max_seq_length + pair_rows * pair_row_bytes / 2
    return [
        ("paper MTL + SQuAD 2.0: span-QA windows at 512 tokens", span_windows + squad_windows, "windows"),
        ("paper MTL + SQuAD 2.0: features on disk, every window full (shared by every rank and table)",
         features_gb, "GB"),
        ("paper: soft targets on disk, KD during MTL (1 teacher per dataset, float16)", mtl_soft / 1e9, "GB"),
        ("paper: soft targets on disk, SQuAD 2.0 Weighted KD (3 teachers, float16)", squad_soft / 1e9, "GB"),
        ("paper: RAM per rank for data: the MTL datasets' examples held as Python objects (features and soft "
         "targets are page-cache maps shared by the ranks)", examples_gb, "GB"),
        (f"paper: minutes to build every feature on {BUILD_CORES} cores (measured tokens/s per process x "
         f"{BUILD_CORES})", tokens / (tokens_per_s * BUILD_CORES) / 60, "min"),
    ]


def run(settings: BenchSettings) -> pd.DataFrame:
    """Every measure above, as one frame (also written to ``<out>/data_path.csv``)."""
    quick = settings.quick
    workers = _workers()
    tmp = Path(tempfile.mkdtemp(prefix="road-bench-data-"))
    try:
        root = None if settings.data == "synthetic" else shared_data_dir()
        n = 600 if quick else 11_873
        examples = (load_examples("squad_v2", "dev", data_dir=root, limit=n) if root
                    else synthetic_squad(n, settings.seed, n_facts=3, max_facts=12))
        data = "squad_v2 dev (shared data)" if root else "synthetic_squad"
        a = throughput(examples, tmp / "a", workers)
        per_core_tokens = a["tokens_per_s"] / workers
        full = full_windows(40 if quick else 400, tmp / "b")
        soft_half, soft_full = soft_target_bytes(tmp / "b", 200 if quick else 2000)
        pairs = load_examples("mnli", "dev", data_dir=root, limit=2000) if root else None
        if pairs is None:
            from road_repro.data.synthetic_tasks import synthetic_nli
            pairs = synthetic_nli(2000, 0)
        pair_store = FeatureStore(tmp / "pairs").get(pairs, tokenizer_for(BenchSettings(model="minilm")),
                                                     FeatureSpec("pair", 128), "pairs")
        pair_bytes = pair_store.nbytes / len(pair_store)
        small, large = (1_000, 10_000) if quick else (20_000, 200_000)
        rss = peak_rss((small, large), tmp / "c", length=64, steps=5 if quick else 30)
        rows = [  # (measure, value, unit, baseline, goal, what meets the goal)
            (f"(a) tokenization throughput, {data}, 512/128, num_proc={workers}: feature store vs run_qa "
             "prepare_train_features + datasets.map", a["ours_ex_s"], "examples/s", a["hf_ex_s"], 1.0, "ratio >="),
            ("(b) bytes per stored MRC training window, full 512-token window, no offsets", full, "bytes",
             a["hf_bytes_per_window"], 1200.0, "value <="),
            (f"(b) bytes per stored MRC training window, {data} average", a["ours_bytes_per_window"], "bytes",
             a["hf_bytes_per_window"], None, None),
            ("(b) soft targets per teacher per span window at 512 (float16 start + end)", soft_half, "bytes",
             soft_full, None, None),
            ("(b) bytes per stored sentence-pair row (mnli dev, 128)", pair_bytes, "bytes", None, None, None),
            (f"(c) peak RSS of a KD training process (3 teachers, Weighted KD), {large:,} vs {small:,} windows",
             rss[large], "MiB", rss[small], 1.10, "ratio <="),
        ]
        proj = projection(full, pair_bytes, soft_half, per_core_tokens, examples_bytes())
        rows += [(f"(d) {m}", v, u, None, None, None) for m, v, u in proj]
        frame = pd.DataFrame(rows, columns=["measure", "value", "unit", "baseline", "goal", "check"])
        frame[["baseline", "goal"]] = frame[["baseline", "goal"]].astype(float)
        frame["ratio"] = frame["value"] / frame["baseline"]
        frame["meets_goal"] = [meets(row) for row in frame.itertuples()]
        frame = frame[list(COLUMNS)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_csv(frame, settings.out, NAME)
    return frame


def report(frame: pd.DataFrame, settings: BenchSettings) -> None:
    print_table("Data path: feature store, soft targets, KD process memory, paper-scale projection", frame, COLUMNS)


def main(argv: Sequence[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--kd-process", type=Path, default=None, help=argparse.SUPPRESS)  # internal: one KD process of (c)
    p.add_argument("--teachers", type=Path, nargs="*", default=[])
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    if args.kd_process is not None:
        print(json.dumps(kd_process(args.kd_process, args.teachers, args.steps)))
        return
    settings = settings_from_args(args)
    report(run(settings), settings)


if __name__ == "__main__":
    main()
