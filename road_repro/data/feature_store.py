"""Tokenized features on disk: built once, memory-mapped by every stage, table, process and rank.

Why: at the paper scale (Table 1: about 3.9 million MTL examples, 1.9 million span-QA windows at 512 tokens)
int64 features held in RAM cost about 39 GB per process, and under ``torchrun`` each of 8 ranks tokenized
everything again. Here a split is tokenized once, with :func:`road_repro.data.features.qa_features` /
:func:`~road_repro.data.features.pair_features` (one labelling rule for both paths), by Hugging Face
``datasets.Dataset.map(batched=True, num_proc=...)`` into Arrow files, and every later user maps those files
(zero-copy) and rebuilds padded int64 batches from a few rows at a time.

What is stored, per window (the compact layout):

* ``input_ids``: the window's tokens *without padding*, as ``uint16`` when the vocabulary fits (30,522-token
  WordPiece vocabularies do), else ``uint32``; ``attention_mask`` is rebuilt from the length;
* ``type_start``: where the second segment begins -- ``token_type_ids`` are rebuilt as ``pos >= type_start``
  within the length (checked at build time against the tokenizer's own type ids; a tokenizer without type
  ids stores none);
* span QA: ``start_positions`` / ``end_positions`` (``int16``) and ``example_index`` (``int32``); character
  offsets (``offset_start`` / ``offset_end``) only for splits that are *scored* (dev), not for training;
* classification: ``labels`` (``int16``).

Batches come back as the in-memory path made them (so training is bit-identical): sentence pairs padded to the
longest row of the batch; span QA windows padded to ``max_seq_length`` (``per_batch=False``: the reference
objective, whose span softmax runs over every position of the window, as in BERT's and ELECTRA's code and HF
``run_qa.py``) or, with ``per_batch=True`` (``features.span_padding: batch``, whose loss masks padding out), to
the longest window of the batch. The stored layout is the same either way.

Cache key and integrity: a split's *fingerprint* hashes its examples, the tokenizer's identity (its full
serialized definition: vocabulary, normaliser, pre-tokenizer, post-processor -- not its name, so ELECTRA-large
and ELECTRA-base share features), the feature settings and :data:`~road_repro.data.features.FEATURES_VERSION`
(bump it when the layout or labelling changes). Run configs record it. The store folder adds whether offsets
are kept. Folders are built under a file lock (the first process or rank to take it builds, the others wait and
map the result) in a temporary folder that is renamed into place, and hold a ``manifest.json`` written last
with every Arrow file's size and xxh3 checksum; a folder without manifest, with a missing, resized or altered
file, or with another row count is reported and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from itertools import chain
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import xxhash
from filelock import FileLock
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from road_repro.data.features import FEATURES_VERSION, pair_features, qa_windows
from road_repro.data.schema import Answer, ClassificationExample, QAExample
from road_repro.errors import ConfigError, DataError
from road_repro.io import atomic_write_json
from road_repro.log import console, interactive

#: Layout version of a store folder (the manifest's format and column set).
STORE_VERSION = 1

#: Examples per ``Dataset.map`` batch.
MAP_BATCH = 1000

#: Below this many examples a split is tokenized in this process (worker start-up costs more than it saves).
PARALLEL_FROM = 20_000

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FeatureSpec:
    """How a split is tokenized: ``span`` QA windows or sentence ``pair`` rows, and whether offsets are kept."""

    kind: str  # span | pair
    max_seq_length: int
    doc_stride: int = 0
    max_query_length: int = 0
    offsets: bool = False  # keep character offsets (only splits that are scored need them)

    def settings(self) -> dict[str, Any]:
        """The settings that change the tokens or labels (not ``offsets``, which only adds columns)."""
        out = asdict(self)
        out.pop("offsets")
        return out


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of a fast tokenizer's serialized definition without its run-time truncation/padding state.

    Two copies of one tokenizer under different names (ELECTRA-large and -base) share it; any vocabulary,
    lower-casing, special-token or template difference changes it.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"tokenizer {tokenizer.name_or_path!r} is not a fast tokenizer (the feature store needs one)")
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def examples_digest(examples: Sequence[QAExample] | Sequence[ClassificationExample]) -> str:
    """sha256 over every example's id, texts and answers or label, in order."""
    digest = hashlib.sha256()
    for ex in examples:
        if isinstance(ex, QAExample):
            row = [ex.id, ex.question, ex.context, [[a.text, a.start] for a in ex.answers]]
        else:
            row = [ex.id, ex.text_a, ex.text_b, ex.label]
        digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def features_fingerprint(examples_sha: str, tokenizer_sha: str, spec: FeatureSpec) -> str:
    """What a split's training features depend on: examples, tokenizer, settings, layout version."""
    payload = {"version": FEATURES_VERSION, "examples": examples_sha, "tokenizer": tokenizer_sha, **spec.settings()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _id_type(vocab_size: int) -> str:
    return "uint16" if vocab_size <= np.iinfo(np.uint16).max + 1 else "uint32"


def _columns(spec: FeatureSpec, id_type: str, types: bool) -> datasets.Features:
    cols: dict[str, Any] = {"input_ids": datasets.List(datasets.Value(id_type))}
    if types:
        cols["type_start"] = datasets.Value("int16")
    if spec.kind == "span":
        cols.update(start_positions=datasets.Value("int16"), end_positions=datasets.Value("int16"),
                    example_index=datasets.Value("int32"))
        if spec.offsets:
            cols.update(offset_start=datasets.List(datasets.Value("int32")),
                        offset_end=datasets.List(datasets.Value("int32")))
    else:
        cols["labels"] = datasets.Value("int16")
    return datasets.Features(cols)


def _type_start(types: np.ndarray, lengths: np.ndarray, where: str) -> np.ndarray:
    """Where segment 1 starts in each row, from flat ``[T]`` type ids of rows with ``lengths``; ConfigError
    unless each row's type ids are ``0...0 1...1`` (what the store rebuilds them from)."""
    row_start = np.cumsum(lengths) - lengths
    row = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(types)) - row_start[row]
    ones = np.where(types == 1, position, np.iinfo(np.int64).max)
    starts = np.minimum(np.minimum.reduceat(ones, row_start) if len(types) else lengths, lengths)
    if not np.array_equal((position >= starts[row]).astype(types.dtype), types):
        raise ConfigError(f"{where}: the tokenizer's token_type_ids are not two contiguous segments; "
                          f"the feature store cannot rebuild them")
    return starts.astype(np.int16)


class _Builder:
    """The ``Dataset.map`` function: tokenize a batch of examples and return its compact Arrow columns."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, spec: FeatureSpec, id_type: str, types: bool, where: str):
        self.tokenizer, self.spec, self.id_type, self.types, self.where = tokenizer, spec, id_type, types, where

    def __call__(self, batch: dict[str, list], indices: list[int]) -> pa.Table:
        return self.span(batch, indices) if self.spec.kind == "span" else self.pair(batch)

    def span(self, batch: dict[str, list], indices: list[int]) -> pa.Table:
        s = self.spec
        examples = [QAExample(i, c, q, (Answer(t, a),) if a >= 0 else ()) for i, q, c, a, t in
                    zip(batch["id"], batch["question"], batch["context"], batch["answer_start"], batch["answer_text"])]
        w = qa_windows(examples, self.tokenizer, s.max_seq_length, s.doc_stride, s.max_query_length, s.offsets)
        lengths = w["lengths"]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        cols: dict[str, pa.Array] = {"input_ids": pa.ListArray.from_arrays(offsets, w["input_ids"].astype(self.id_type))}
        if self.types:
            cols["type_start"] = pa.array(_type_start(w["token_type_ids"], lengths, self.where))
        cols.update(start_positions=pa.array(w["start_positions"].astype(np.int16)),
                    end_positions=pa.array(w["end_positions"].astype(np.int16)),
                    example_index=pa.array((w["example_index"] + indices[0]).astype(np.int32)))
        if s.offsets:
            cols.update(offset_start=pa.ListArray.from_arrays(offsets, w["offsets"][:, 0].astype(np.int32)),
                        offset_end=pa.ListArray.from_arrays(offsets, w["offsets"][:, 1].astype(np.int32)))
        return pa.table(cols)

    def pair(self, batch: dict[str, list]) -> pa.Table:
        examples = [ClassificationExample("", a, label, b)
                    for a, b, label in zip(batch["text_a"], batch["text_b"], batch["label"])]
        f = pair_features(examples, self.tokenizer, self.spec.max_seq_length)
        lengths = np.fromiter(map(len, f["input_ids"]), dtype=np.int64, count=len(examples))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        flat = np.fromiter(chain.from_iterable(f["input_ids"]), dtype=np.int64, count=int(lengths.sum()))
        cols: dict[str, pa.Array] = {"input_ids": pa.ListArray.from_arrays(offsets, flat.astype(self.id_type))}
        if self.types:
            types = np.fromiter(chain.from_iterable(f["token_type_ids"]), dtype=np.int64, count=len(flat))
            cols["type_start"] = pa.array(_type_start(types, lengths, self.where))
        cols["labels"] = pa.array(np.asarray(f["labels"], dtype=np.int16))
        return pa.table(cols)


def _source_table(examples: Sequence[QAExample] | Sequence[ClassificationExample]) -> datasets.Dataset:
    """The columns the map function reads (ids name an example in errors; only the first answer is a label)."""
    if isinstance(examples[0], QAExample):
        return datasets.Dataset.from_dict({
            "id": [ex.id for ex in examples], "question": [ex.question for ex in examples],
            "context": [ex.context for ex in examples],
            "answer_start": [ex.answers[0].start if ex.answers else -1 for ex in examples],
            "answer_text": [ex.answers[0].text if ex.answers else "" for ex in examples],
        })
    return datasets.Dataset.from_dict({
        "text_a": [ex.text_a for ex in examples], "text_b": [ex.text_b for ex in examples],
        "label": [ex.label for ex in examples],
    })


def _file_sum(path: Path) -> str:
    digest = xxhash.xxh3_64()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 23):
            digest.update(chunk)
    return digest.hexdigest()


def _pad_lists(column: pa.ChunkedArray | pa.Array, width: int | None, fill: int) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow list column as a padded ``[rows, width]`` int64 array (width: the longest row) and the lengths."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
    width = int(lengths.max()) if width is None else width
    out = np.full((len(lengths), width), fill, dtype=np.int64)
    out[np.arange(width)[None, :] < lengths[:, None]] = array.flatten().to_numpy(zero_copy_only=False)
    return out, lengths


class StoredFeatures:
    """One split's features, memory-mapped: padded int64 batches of any rows, labels, offsets for scoring."""

    def __init__(self, dataset: datasets.Dataset, manifest: dict[str, Any], path: Path):
        self.dataset, self.manifest, self.path = dataset, manifest, path
        self.spec = FeatureSpec(**manifest["spec"])
        self.pad_token_id = int(manifest["pad_token_id"])
        self._table = dataset.with_format("arrow")

    def __len__(self) -> int:
        return self.dataset.num_rows

    @property
    def is_span(self) -> bool:
        return self.spec.kind == "span"

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @cached_property
    def lengths(self) -> np.ndarray:
        """Real tokens of every row, int64 ``[rows]`` (length grouping, sorted inference, token counts)."""
        return pc.list_value_length(self.dataset.data.column("input_ids")).to_numpy().astype(np.int64)

    def batch(self, rows: Tensor | Sequence[int], targets: bool = True, per_batch: bool = False) -> dict[str, Tensor]:
        """Model inputs (and, with ``targets``, labels) of ``rows``, as the in-memory path padded them; span
        windows to ``max_seq_length``, or with ``per_batch`` to the longest of ``rows``."""
        index = torch.as_tensor(rows, dtype=torch.long).tolist()
        table: pa.Table = self._table[index]
        width = self.spec.max_seq_length if self.is_span and not per_batch else None
        ids, lengths = _pad_lists(table.column("input_ids"), width, self.pad_token_id)
        positions = np.arange(ids.shape[1])[None, :]
        inside = positions < lengths[:, None]
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(inside.astype(np.int64))}
        if "type_start" in table.column_names:
            start = table.column("type_start").to_numpy().astype(np.int64)
            out["token_type_ids"] = torch.from_numpy((inside & (positions >= start[:, None])).astype(np.int64))
        if targets:
            names = ("start_positions", "end_positions") if self.is_span else ("labels",)
            out.update({n: torch.from_numpy(table.column(n).to_numpy().astype(np.int64)) for n in names})
        return out

    def column(self, name: str) -> Tensor:
        """A scalar column of every row (labels, span positions, example index) as int64."""
        return torch.from_numpy(self.dataset.data.column(name).to_numpy().astype(np.int64))

    def labels(self) -> dict[str, Tensor]:
        """Gold targets of every row: start/end positions for spans, class ids otherwise."""
        return {n: self.column(n) for n in (("start_positions", "end_positions") if self.is_span else ("labels",))}

    @cached_property
    def offsets(self) -> Tensor:
        """``[rows, max_seq_length, 2]`` character offsets of context tokens, ``-1`` elsewhere (scored splits)."""
        if not self.spec.offsets:
            raise DataError(f"{self.path}: this split was stored without character offsets (not a scored split)")
        table = self.dataset.data
        start, _ = _pad_lists(table.column("offset_start"), self.spec.max_seq_length, -1)
        end, _ = _pad_lists(table.column("offset_end"), self.spec.max_seq_length, -1)
        return torch.from_numpy(np.stack([start, end], axis=-1))

    @property
    def nbytes(self) -> int:
        """Bytes of the Arrow files on disk."""
        return sum(f["bytes"] for f in self.manifest["files"])


class FeatureStore:
    """Tokenized splits under ``root``, one folder per (fingerprint, offsets), shared by processes and ranks."""

    def __init__(self, root: Path, workers: int = 0, progress: bool = False):
        self.root = Path(root)
        self.workers = workers  # 0: one process below PARALLEL_FROM examples, else up to 16 cores
        self.progress = progress
        self._verified: dict[Path, StoredFeatures] = {}
        self.built: list[Path] = []  # folders this instance tokenized (for logs and tests)

    def folder(self, fingerprint: str, spec: FeatureSpec) -> Path:
        return self.root / f"{fingerprint[:24]}-{'scored' if spec.offsets else 'train'}"

    def manifest(self, fingerprint: str, spec: FeatureSpec) -> dict[str, Any] | None:
        """The manifest of a finished folder, if there is one (no checks; for plans and dry runs)."""
        try:
            return json.loads((self.folder(fingerprint, spec) / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def get(self, examples: Sequence[QAExample] | Sequence[ClassificationExample], tokenizer: PreTrainedTokenizerBase,
            spec: FeatureSpec, what: str, fingerprint: str | None = None) -> StoredFeatures:
        """The split's stored features, built first if absent or damaged (under the folder's file lock)."""
        if not examples:
            raise DataError(f"{what}: no examples to tokenize")
        fingerprint = fingerprint or features_fingerprint(examples_digest(examples), tokenizer_identity(tokenizer), spec)
        path = self.folder(fingerprint, spec)
        if path in self._verified:
            return self._verified[path]
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f".{path.name}.lock")):
            problem = self._problem(path, fingerprint)
            if problem is not None:
                if path.exists():
                    console().warning("features of %s: rebuilding (%s)", what, problem)
                    shutil.rmtree(path)
                self._build(examples, tokenizer, spec, fingerprint, path, what)
                self.built.append(path)
            stored = self._open(path)
        self._verified[path] = stored
        return stored

    def open(self, path: Path) -> StoredFeatures:
        """Map a finished folder by its path (checked as :meth:`get` checks it); DataError if it is unusable."""
        path = Path(path)
        try:
            fingerprint = json.loads((path / MANIFEST).read_text())["fingerprint"]
        except (OSError, ValueError, KeyError):
            fingerprint = ""
        problem = self._problem(path, fingerprint)
        if problem is not None:
            raise DataError(f"{path}: stored features are unusable ({problem})")
        return self._open(path)

    def _problem(self, path: Path, fingerprint: str) -> str | None:
        """Why the folder cannot be used (absent, partial, damaged), or None."""
        if not path.exists():
            return "absent"
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return "no readable manifest: a build was interrupted"
        if manifest.get("store_version") != STORE_VERSION or manifest.get("fingerprint") != fingerprint:
            return "the manifest is of another layout or split"
        for entry in manifest["files"]:
            file = path / entry["name"]
            if not file.is_file() or file.stat().st_size != entry["bytes"]:
                return f"{entry['name']} is missing or has another size"
            if _file_sum(file) != entry["xxh3"]:
                return f"{entry['name']} does not match its checksum"
        return None

    def _open(self, path: Path) -> StoredFeatures:
        manifest = json.loads((path / MANIFEST).read_text())
        parts = [datasets.Dataset.from_file(str(path / f["name"])) for f in manifest["files"]]
        dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        if dataset.num_rows != manifest["rows"]:
            raise DataError(f"{path}: {dataset.num_rows} rows but the manifest says {manifest['rows']}")
        return StoredFeatures(dataset, manifest, path)

    def _workers(self, n: int) -> int:
        if self.workers:
            return self.workers
        return 1 if n < PARALLEL_FROM else max(1, min(os.cpu_count() or 1, 16))

    def _build(self, examples, tokenizer: PreTrainedTokenizerBase, spec: FeatureSpec, fingerprint: str, path: Path,
               what: str) -> None:
        started = time.time()
        workers = self._workers(len(examples))
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        id_type = _id_type(len(tokenizer))
        probe = tokenizer("a", "b")
        types = "token_type_ids" in probe and any(probe["token_type_ids"])
        if spec.max_seq_length > np.iinfo(np.int16).max:
            raise ConfigError(f"{what}: max_seq_length={spec.max_seq_length} is too long for the feature store")
        if not self.progress or not interactive():  # datasets' bars redraw with \r: none in a log file
            datasets.disable_progress_bars()
        source = _source_table(examples)
        dataset = source.map(
            _Builder(tokenizer, spec, id_type, types, what), batched=True, batch_size=MAP_BATCH, with_indices=True,
            num_proc=workers if workers > 1 else None, remove_columns=source.column_names,
            features=_columns(spec, id_type, types),
            cache_file_name=str(tmp / "features.arrow"), new_fingerprint=fingerprint[:32],
            desc=f"tokenizing {what}",
        )
        names = sorted(Path(f["filename"]).name for f in dataset.cache_files)
        del dataset
        files = [{"name": n, "bytes": (tmp / n).stat().st_size, "xxh3": _file_sum(tmp / n)} for n in names]
        rows = sum(datasets.Dataset.from_file(str(tmp / n)).num_rows for n in names)
        # The lock holder writes its own manifest whatever its rank (road_repro/io.py: the writers' rule).
        atomic_write_json(tmp / MANIFEST, {
            "store_version": STORE_VERSION, "fingerprint": fingerprint, "spec": asdict(spec), "what": what,
            "rows": rows, "examples": len(examples), "files": files, "id_dtype": id_type, "token_types": types,
            "pad_token_id": tokenizer.pad_token_id or 0, "tokenizer": tokenizer.name_or_path,
            "workers": workers, "build_seconds": round(time.time() - started, 2),
        }, all_ranks=True)
        os.replace(tmp, path)
        console().info("features of %s: %d examples -> %d rows, %.1f MB, built in %.1f s on %d process(es)",
                       what, len(examples), rows, sum(f["bytes"] for f in files) / 1e6, time.time() - started,
                       workers)
