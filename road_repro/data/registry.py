"""The dataset registry: one declarative :class:`DatasetSpec` per dataset, and :func:`load_examples`.

In the style of lm-evaluation-harness, each dataset lives in its own small module under
:mod:`road_repro.data.sets` that builds a spec and calls :func:`register_dataset`. A spec says where the
data comes from -- local files in their original formats under a data directory, or the Hugging Face
hub (parquet datasets that load with ``datasets>=4``, no loading scripts) -- and how records become the
unified examples of :mod:`road_repro.data.schema`. Synthetic datasets (smoke scale) register a
``generate`` function instead, so profiles name them exactly like real datasets.

``load_examples(name, split, data_dir, limit)`` resolves, in order:

1. ``generate`` for synthetic datasets;
2. the first existing local candidate under ``data_dir`` (or ``$ROAD_DATA_DIR``); a candidate with glob
   characters (``*``) reads every match in sorted order; a candidate path that exists but is no readable
   regular file (a directory, a broken symlink, an unreadable file) is an error naming it, never a silent
   fallback to the next candidate;
3. the hub (at the spec's pinned ``hub_revision``); when neither works it raises :class:`DataError`
   naming the dataset, the split, the data directory with the paths tried, and the hub id. The commit a
   hub split was actually read at (pinned or not) is recorded in its :func:`data_source`.

Rows real releases are known to contain and that cannot be used (an empty text, a label outside the
label set, ...) are skipped and counted under one rule for hub and local files
(:mod:`road_repro.data.unusable`): said once per split on the console, appended to the split's
:func:`data_source` (which run configs record), and an error past ``max_unusable_share`` of the split or
when no usable row is left. ``cap`` keeps the usable examples of a deterministic, seeded sample of that
many of the split's rows (:func:`cap_rows`; paper Table 1 sizes, e.g. QA-ZRE's 1,000K of the hub's ~8.4M
rows) in file order: the same rows give the same examples from a local file and from the hub.
"""

from __future__ import annotations

import glob
import itertools
import os
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from road_repro.data.schema import TASK_TYPES, ClassificationExample, QAExample
from road_repro.data.unusable import DEFAULT_MAX_UNUSABLE_SHARE, SkipTally, collecting
from road_repro.errors import ConfigError, DataError
from road_repro.log import logger

Example = QAExample | ClassificationExample
FromHub = Callable[[Iterable[dict[str, Any]], str], list[Example]]
FromFile = Callable[[Path], list[Example]]
Generate = Callable[[str, int | None], list[Example]]

#: The splits a generated (synthetic) dataset serves.
GENERATED_SPLITS = ("train", "dev", "test")
#: Environment variable naming the local data directory when ``data_dir`` is not given.
DATA_DIR_ENV = "ROAD_DATA_DIR"
#: Hub records are converted in chunks of this many rows so that a ``limit`` stops conversion early.
HUB_CHUNK = 2048
#: Key under which :func:`load_examples` adds each hub record's row number in its split (for messages
#: and ids that stay right across chunks); converters fall back to the record's position without it.
ROW_KEY = "__row__"
#: How a hub repository lays out a config's files: ``"config"`` -- the repository declares its configs
#: (``load_dataset(id, config)``); ``"parquet_export"`` -- the hub's own parquet conversion (the
#: ``refs/convert/parquet`` branch, or a commit of it) keeps each config in a folder (``data_dir=config``).
HUB_LAYOUTS = ("config", "parquet_export")
#: The branch the hub converts script datasets to parquet on.
PARQUET_EXPORT_BRANCH = "refs/convert/parquet"


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to load one dataset: task, hub source, local file candidates and converters.

    * ``hub`` is ``(hub id, config)`` and ``hub_splits`` maps our split names (``"train"``, ``"dev"``,
      ...) to hub split names. ``hub_revision`` pins a commit of the hub repository (docs/datasets.md says
      how each was checked), or names a branch (``None``: main, unpinned). ``hub_layout`` (one of
      :data:`HUB_LAYOUTS`) says how the config is found: ``"parquet_export"`` for a dataset whose main
      branch still holds a loading script (``datasets>=4`` refuses scripts), read from the hub's parquet
      conversion (:data:`PARQUET_EXPORT_BRANCH` or a commit of it), which keeps each config in a folder.
      ``hub_label_names`` are the hub's ClassLabel names for ``label``, checked against the downloaded
      features.
    * ``from_hub(records, where)`` converts hub rows, each carrying its row number under :data:`ROW_KEY`.
      ``hub_rows_are_examples`` says that each hub row is one row read (one example, or one skipped row),
      so a cap can pick the rows before any conversion; otherwise (a dialog per row, rows of other
      subsets) the whole split is converted and then capped.
    * ``local`` maps our split names to candidate paths relative to a data directory (the first that
      exists wins); ``from_file(path)`` reads one such file.
    * ``generate(split, limit)`` makes synthetic data and replaces both sources.
    * ``examples`` and ``context_tokens`` are documented sizes for planning compute without loading
      anything (:mod:`road_repro.experiments.planning`): examples per split (our split names) at the
      paper's scale -- paper Table 1 for the MTL training sets, the official dev sizes for evaluation
      sets; what a hub stand-in or a local file serves can differ, ``size`` says how -- and, for span QA,
      the mean context length in word-level tokens (words and punctuation, as MRQA 2019 counts them),
      from which the dry run estimates windows per example.
    * ``max_unusable_share`` raises the profile's share of skippable rows for a release with a known,
      larger count of them (``notes`` says which and how many).
    """

    name: str
    task: str
    hub: tuple[str, str | None] | None
    hub_splits: dict[str, str]
    local: dict[str, tuple[str, ...]]
    from_hub: FromHub | None
    from_file: FromFile | None
    licence: str
    size: str
    notes: str = ""
    hub_revision: str | None = None
    hub_layout: str = "config"
    hub_rows_are_examples: bool = False
    hub_label_names: tuple[str, ...] | None = None
    generate: Generate | None = field(default=None, compare=False)
    examples: dict[str, int] = field(default_factory=dict)
    context_tokens: int | None = None
    max_unusable_share: float | None = None

    def __post_init__(self) -> None:
        where = f"dataset spec {self.name!r}"
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"{where}: name must be a non-empty identifier")
        if self.task not in TASK_TYPES:
            raise ConfigError(f"{where}: task {self.task!r} is not one of {TASK_TYPES}")
        if not self.licence.strip() or not self.size.strip():
            raise ConfigError(f"{where}: licence and size must be filled in")
        if self.generate is None and self.hub is None and not self.local:
            raise ConfigError(f"{where}: needs a hub source, local files or a generator")
        if self.hub is not None and (self.from_hub is None or not self.hub_splits):
            raise ConfigError(f"{where}: a hub source needs from_hub and hub_splits")
        if self.local and self.from_file is None:
            raise ConfigError(f"{where}: local candidates need from_file")
        for split, count in self.examples.items():
            if split not in self.splits or isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"{where}: examples[{split!r}]={count!r} must be a positive count of one of its "
                                  f"splits ({', '.join(self.splits)})")
        if self.max_unusable_share is not None and not 0 <= self.max_unusable_share < 1:
            raise ConfigError(f"{where}: max_unusable_share={self.max_unusable_share} must lie in [0, 1)")
        if self.context_tokens is not None and (self.task != "mrc" or self.context_tokens < 1):
            raise ConfigError(f"{where}: context_tokens is a positive mean context length of a span-QA dataset")
        if self.hub_layout not in HUB_LAYOUTS:
            raise ConfigError(f"{where}: hub_layout {self.hub_layout!r} is not one of {HUB_LAYOUTS}")
        if self.hub_revision == PARQUET_EXPORT_BRANCH and self.hub_layout != "parquet_export":
            raise ConfigError(f"{where}: revision {PARQUET_EXPORT_BRANCH} needs hub_layout 'parquet_export'")

    @property
    def splits(self) -> tuple[str, ...]:
        """Our split names this dataset can serve (sorted); generated datasets serve :data:`GENERATED_SPLITS`."""
        if self.generate is not None:
            return tuple(sorted(GENERATED_SPLITS))
        return tuple(sorted(set(self.hub_splits) | set(self.local)))


_REGISTRY: dict[str, DatasetSpec] = {}
_LOADED = False


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry; a second spec under the same name raises :class:`ConfigError`."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ConfigError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_registered() -> None:
    """Import the dataset modules once so that they register (lazily, to avoid an import cycle)."""
    global _LOADED
    if not _LOADED:
        import road_repro.data.sets  # noqa: F401  (registers every dataset module)

        _LOADED = True


def dataset_names() -> tuple[str, ...]:
    """All registered dataset names, sorted."""
    _ensure_registered()
    return tuple(sorted(_REGISTRY))


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    _ensure_registered()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def check_request(spec: DatasetSpec, split: str, limit: int | None, cap: int | None = None) -> None:
    """Reject an unknown split or a non-positive limit or cap before any I/O."""
    if split not in spec.splits:
        raise ConfigError(f"dataset {spec.name!r} has no split {split!r} (has: {', '.join(spec.splits)})")
    for what, value in (("limit", limit), ("cap", cap)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{what} for dataset {spec.name!r} must be a positive integer or None, got {value!r}")


def file_problem(path: Path) -> str | None:
    """Why ``path``, which exists as a directory entry, is no readable regular file (None if it is one)."""
    if path.is_symlink() and not path.exists():
        return f"{path} is a broken symlink (to {os.readlink(path)}) where a data file is expected"
    if path.is_dir():
        return f"{path} is a directory where a data file is expected"
    if not path.is_file():
        return f"{path} is not a regular file (a data file is expected)"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable (permissions)"
    return None


def _checked(path: Path) -> Path:
    """``path`` if it is a readable regular file, else a :class:`DataError` naming it and what it is."""
    problem = file_problem(path)
    if problem:
        raise DataError(problem)
    return path


def local_candidates(spec: DatasetSpec, split: str, data_dir: Path) -> list[list[Path]]:
    """For each candidate of ``split``, the files it names under ``data_dir`` (empty if none exists).

    A path that exists but is no readable regular file (a directory, a broken symlink, an unreadable
    file) raises :class:`DataError` naming it: falling back to the next candidate would read other data
    without a word.
    """
    found = []
    for rel in spec.local.get(split, ()):
        if glob.has_magic(rel):
            found.append([_checked(Path(p)) for p in sorted(glob.glob(str(data_dir / rel)))])
        else:
            path = data_dir / rel
            found.append([_checked(path)] if os.path.lexists(path) else [])
    return found


def _load_local(spec: DatasetSpec, split: str, data_dir: Path) -> list[Example] | None:
    """Read the first existing local candidate (all files of a glob candidate); ``None`` if none exists."""
    assert spec.from_file is not None
    for files in local_candidates(spec, split, data_dir):
        if files:
            return [ex for path in files for ex in spec.from_file(path)]
    return None


def _check_hub_labels(spec: DatasetSpec, features: Any) -> None:
    """Fail if the hub's ClassLabel names for ``label`` differ from the names the spec maps through."""
    if spec.hub_label_names is None:
        return
    names = getattr(features.get("label"), "names", None) if features is not None else None
    if names is not None and tuple(names) != spec.hub_label_names:
        raise DataError(
            f"dataset {spec.name!r}: hub {spec.hub} label names are {list(names)}, "
            f"expected {list(spec.hub_label_names)}; the label mapping must be updated"
        )


def cap_rows(total: int, cap: int, key: str) -> list[int]:
    """Indices (sorted) of a deterministic sample of ``cap`` of ``total`` rows; seeded by ``key`` alone,
    so every process, run and machine takes the same rows."""
    if cap >= total:
        return list(range(total))
    return sorted(random.Random(f"road-repro cap {key}").sample(range(total), cap))


def _cap_key(name: str, split: str) -> str:
    """The seed of a split's cap (:func:`cap_rows`), the same for a local file and the hub."""
    return f"{name}:{split}"


#: A full git commit id.
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def loaded_commit(ds: Any) -> str | None:
    """The hub commit a ``datasets.load_dataset`` result was read at, or ``None`` if it does not say.

    ``datasets`` resolves the revision to a commit before loading (``HubDatasetModuleFactory``; offline,
    the newest cached one) and uses that commit as the builder's hash, the last folder of its cache
    directory ``<cache>/<namespace>___<name>/<config>/<version>/<commit>/``, where the split's Arrow files
    (``Dataset.cache_files``) lie.
    """
    for entry in getattr(ds, "cache_files", None) or ():
        folder = Path(str(entry.get("filename", ""))).parent.name
        if COMMIT_SHA.fullmatch(folder):
            return folder
    return None


#: The hub commit each (dataset, split) this process read from the hub was loaded at (:func:`loaded_commit`).
_HUB_COMMITS: dict[tuple[str, str], str] = {}


def _hub_dataset(spec: DatasetSpec, split: str) -> Any:
    """``datasets.load_dataset`` of the split at the spec's revision, in the spec's layout; records the commit."""
    assert spec.hub is not None
    import datasets

    hub_id, config = spec.hub
    revision = {"revision": spec.hub_revision} if spec.hub_revision else {}
    if spec.hub_layout == "parquet_export":  # a parquet export keeps each config in a folder
        ds = datasets.load_dataset(hub_id, split=spec.hub_splits[split], data_dir=config, **revision)
    else:
        ds = datasets.load_dataset(hub_id, config, split=spec.hub_splits[split], **revision)
    commit = loaded_commit(ds)
    if commit is not None:
        _record_commit(spec, split, commit)
    return ds


def _record_commit(spec: DatasetSpec, split: str, commit: str) -> None:
    """Remember the commit a hub split was read at; say once when it is not the pinned commit."""
    pinned = spec.hub_revision if spec.hub_revision and COMMIT_SHA.fullmatch(spec.hub_revision) else None
    if pinned and commit != pinned and _HUB_COMMITS.get((spec.name, split)) != commit:
        assert spec.hub is not None
        logger.warning("dataset %s split %s: hub %s is pinned at %s but was loaded at %s (an offline cache "
                       "of another commit?)", spec.name, split, spec.hub[0], pinned, commit)
    _HUB_COMMITS[(spec.name, split)] = commit


def _load_hub(spec: DatasetSpec, split: str, limit: int | None, cap: int | None = None) -> list[Example]:
    """Download the hub split and convert it chunk by chunk (stopping early once ``limit`` is reached).

    With a ``cap`` below the split's rows and ``hub_rows_are_examples``, only the rows the cap keeps
    (:func:`cap_rows`, the rule :func:`load_examples` applies to a local file) are converted (QA-ZRE: 1M
    of ~8.4M), so the split never exists as Python objects in full.
    """
    assert spec.hub is not None and spec.from_hub is not None
    hub_id, config = spec.hub
    hub_split = spec.hub_splits[split]
    ds = _hub_dataset(spec, split)
    _check_hub_labels(spec, ds.features)
    where = f"hub {hub_id}" + (f"[{config}]" if config else "") + f" split {hub_split}"
    indices: list[int] | range = range(len(ds))
    if cap is not None and spec.hub_rows_are_examples and len(ds) > cap:
        indices = cap_rows(len(ds), cap, _cap_key(spec.name, split))
        ds = ds.select(indices)
    rows = ({**rec, ROW_KEY: row} for row, rec in zip(indices, ds))
    out: list[Example] = []
    while chunk := list(itertools.islice(rows, HUB_CHUNK)):
        out.extend(spec.from_hub(chunk, where))
        if limit is not None and len(out) >= limit:
            break
    return out


def _resolve_data_dir(data_dir: Path | None) -> Path | None:
    """``data_dir`` or ``$ROAD_DATA_DIR``; a named directory that does not exist raises :class:`DataError`."""
    if data_dir is None and os.environ.get(DATA_DIR_ENV):
        data_dir = Path(os.environ[DATA_DIR_ENV])
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataError(f"data directory {data_dir} does not exist (from data_dir or ${DATA_DIR_ENV})")
    return Path(data_dir) if data_dir is not None else None


#: What was skipped in each split this process loaded: ``{(dataset, split, source): summary line}``.
_SKIPPED: dict[tuple[str, str, str], str] = {}


def _source(spec: DatasetSpec, split: str, root: Path | None, with_commit: bool = True) -> str:
    """The source string of :func:`data_source`, without the skipped-rows note; for the hub, with the
    commit it was loaded at once this process has loaded it (unless ``with_commit`` is false)."""
    if spec.generate is not None:
        return f"generated ({spec.name})"
    if root is not None and split in spec.local:
        for files in local_candidates(spec, split, root):
            if files:
                return ", ".join(str(path.resolve()) for path in files)
    if spec.hub is None or split not in spec.hub_splits:
        return "none"
    commit = _HUB_COMMITS.get((spec.name, split)) if with_commit else None
    if spec.hub_revision is None:
        revision = f"@main (not pinned; loaded {commit})" if commit else "@main (not pinned)"
    elif commit and commit != spec.hub_revision:
        revision = f"@{spec.hub_revision} (loaded {commit})"
    else:
        revision = f"@{spec.hub_revision}"
    return f"hub:{spec.hub[0]}" + (f"[{spec.hub[1]}]" if spec.hub[1] else "") + f":{spec.hub_splits[split]}{revision}"


def data_source(name: str, split: str, data_dir: Path | None = None) -> str:
    """Where :func:`load_examples` reads ``split`` of ``name`` from, for provenance: ``generated``, the local
    file(s) it reads (absolute, symlinks resolved), or ``hub:<id>[config]:<hub split>@<revision>``; once
    this process has loaded it, the hub commit it was read at (``@main (not pinned; loaded <commit>)``, or
    ``@<branch> (loaded <commit>)``) and what was skipped (``; skipped 3 of 363,849 rows: ...``)."""
    spec, root = get_dataset(name), _resolve_data_dir(data_dir)
    source = _source(spec, split, root)
    skipped = _SKIPPED.get((name, split, _source(spec, split, root, with_commit=False)))
    return f"{source}; {skipped}" if skipped else source


def _apply_cap(examples: list[Example], rows: list[int], total: int, cap: int, key: str) -> list[Example]:
    """The examples of a seeded sample of ``cap`` of the ``total`` rows read (:func:`cap_rows`), in file order.

    ``rows`` holds each example's row number among the rows read, usable or not (as the hub's rows are
    picked before conversion), so the unusable rows in the sample are dropped and the same rows give the
    same examples from a local file and from the hub.
    """
    if total <= cap:
        return examples
    keep = set(cap_rows(total, cap, key))
    return [ex for ex, row in zip(examples, rows) if row in keep]


def load_examples(name: str, split: str, data_dir: Path | None = None, limit: int | None = None,
                  cap: int | None = None, max_unusable_share: float = DEFAULT_MAX_UNUSABLE_SHARE) -> list[Example]:
    """Load split ``split`` of dataset ``name`` as validated examples: the usable ones of a seeded sample of
    ``cap`` rows (:func:`cap_rows`, file order kept), then at most ``limit`` (the first ones).

    Synthetic datasets generate their data; otherwise the first existing local candidate under
    ``data_dir`` (or ``$ROAD_DATA_DIR``) is read, else the hub. Unusable rows are skipped and counted
    (:mod:`road_repro.data.unusable`; ``max_unusable_share``, or the spec's own where larger). Raises
    :class:`ConfigError` for an unknown dataset, split, limit or cap, and :class:`DataError` naming dataset,
    split, data directory and hub id when no source works, naming the source when too many rows (or all)
    are unusable.
    """
    spec = get_dataset(name)
    check_request(spec, split, limit, cap)
    if spec.generate is not None:
        return spec.generate(split, limit)
    root = _resolve_data_dir(data_dir)
    key = (name, split, _source(spec, split, root, with_commit=False))
    share = max(max_unusable_share, spec.max_unusable_share or 0.0)
    with collecting() as tally:
        examples = _read(spec, split, root, limit, cap)
    source = _source(spec, split, root)
    summary = tally.check(len(examples), f"dataset {name!r} split {split!r} ({source})", share)
    if summary and key not in _SKIPPED:
        logger.warning("dataset %s split %s (%s): %s", name, split, source, summary)
    _SKIPPED[key] = summary
    return _capped(examples, tally, cap, _cap_key(name, split), source)[:limit]


def _capped(examples: list[Example], tally: SkipTally, cap: int | None, key: str, source: str) -> list[Example]:
    """:func:`_apply_cap` with each example's row from the load's tally."""
    if cap is None:
        return examples
    return _apply_cap(examples, tally.example_rows(len(examples), source), tally.rows or len(examples), cap, key)


def _read(spec: DatasetSpec, split: str, root: Path | None, limit: int | None, cap: int | None) -> list[Example]:
    """Every example of the first source that works (local candidates, else the hub), unsampled."""
    name = spec.name
    if root is not None and split in spec.local:
        examples = _load_local(spec, split, root)
        if examples is not None:
            return examples
    if root is not None:
        local = f"no local file found in data dir {root} (tried {list(spec.local.get(split, ()))})"
    else:
        local = f"no data dir given (data_dir or ${DATA_DIR_ENV})"
    if spec.hub is None or split not in spec.hub_splits:
        raise DataError(f"dataset {name!r} split {split!r}: {local}, and no hub source for it")
    try:
        return _load_hub(spec, split, None if cap else limit, cap)
    except DataError:
        raise
    except Exception as exc:  # offline, missing dataset, network or format errors from `datasets`
        raise DataError(
            f"dataset {name!r} split {split!r}: {local}, and hub {spec.hub[0]!r} "
            f"(config {spec.hub[1]!r}, split {spec.hub_splits[split]!r}, revision {spec.hub_revision or 'main'!r}) "
            f"failed: {type(exc).__name__}: {exc}"
        ) from exc
