"""Typed run configuration: a scale profile, a table spec and ``key=value`` overrides, merged and checked.

Layers (as in the ELECTRA reference: defaults, then per scale, then per table, then the command line):

1. the dataclass defaults below (the paper's Table 8 finetuning values where they apply),
2. ``ablations/profiles/<profile>.yaml`` (``smoke``, ``mini``, ``paper``),
3. the table spec's own ``profile_overrides``, its ``scale_overrides`` for this profile (settings that only
   make sense at one scale, e.g. ELECTRA's finetuning learning rate for real ELECTRA models), and then the
   user's dotlist overrides.

Unknown keys are errors (OmegaConf structured configs), and :func:`validate_profile` checks ranges and
consistency before any compute starts, naming the offending setting.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from road_repro.data.mixing import DRAWS
from road_repro.errors import ConfigError, ConfigProblems
from road_repro.train.memory import GPU_MEMORY_MIB

REPO_ROOT = Path(__file__).resolve().parents[1]
ABLATIONS_DIR = REPO_ROOT / "ablations"
PROFILES_DIR = ABLATIONS_DIR / "profiles"


@dataclass
class WarmStartConfig:
    """Smoke scale only: a stand-in for self-supervised pretraining of a randomly initialised tiny preset.

    Real encoders arrive pretrained; a tiny random-init one cannot learn span QA in the few hundred steps
    the smoke scale affords. So the preset is first trained once (a cached ``warm_start`` stage) on
    disjoint synthetic streams, and every run starts from those encoder weights with fresh heads: phase 1,
    ``steps`` steps of span QA on ``dataset`` alone; phase 2, ``mixture_steps`` steps at ``mixture_lr`` with
    one pass of each ``mixture`` stream per step (one head per task type), so that the encoder also knows
    the sentence-pair and sentence formats. ``ablations/profiles/smoke.yaml`` says why (measured).
    """

    dataset: str = MISSING
    split: str = "train"
    limit: int | None = None
    steps: int = 1500
    lr: float = 1e-3
    batch_size: int = 32
    mixture: dict[str, SplitConfig] = field(default_factory=dict)
    mixture_steps: int = 0
    mixture_lr: float = 3e-3


@dataclass
class ModelConfig:
    """An encoder: a Hugging Face id/path (``name_or_path``) or a tiny preset built from a config."""

    name_or_path: str | None = None
    preset: str | None = None
    tokenizer: str | None = None  # defaults to name_or_path; "minilm" = the packaged MiniLM vocab
    num_layers: int | None = None  # keep only the first k layers (e.g. MiniLM's first 3 as a "base")
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    trust_remote_code: bool = False
    revision: str | None = None  # hub commit (or branch) of name_or_path; the paper profile pins commits
    warm_start: WarmStartConfig | None = None


@dataclass
class SplitConfig:
    """Where one split of a task comes from: a registered dataset name, its split and optional caps:
    ``limit`` keeps the first examples (test scales), ``cap`` a deterministic seeded sample of at most that
    many (paper Table 1 sizes, see :func:`road_repro.data.registry.load_examples`)."""

    dataset: str = MISSING
    split: str = MISSING
    limit: int | None = None
    cap: int | None = None


@dataclass
class TaskConfig:
    """A finetuning / evaluation task: its train and dev splits. ``predict_with`` names another task whose
    finetuned model predicts this one's dev set with no training on it (NewsQA with the SQuAD 2.0 model)."""

    train: SplitConfig | None = None
    dev: SplitConfig | None = None
    predict_with: str | None = None


@dataclass
class FeatureConfig:
    """Tokenization and SQuAD 2.0 post-processing settings (ELECTRA / HF run_qa defaults)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best_size: int = 20
    null_score_diff_threshold: float = 0.0
    answer_selection: str = "reference"  # SQuAD n-best over the whole window (reference) or the context only
    max_pair_length: int = 128  # sentence(-pair) classification, dynamically padded per batch
    # "batch": span windows padded per batch with padding masked out of the span softmax, and finetuning batches
    # (windows and pairs) length-grouped; "window": the reference code's span objective and order -- every window
    # padded to max_seq_length, the softmax over all its positions, shuffled batches
    span_padding: str = "batch"


#: How span-QA windows are padded (FeatureConfig.span_padding).
SPAN_PADDINGS = ("batch", "window")

#: Layer-wise LR decay conventions: "road" (top layer lr*decay) or "electra" (top layer lr*decay**2, as in
#: ELECTRA's reference code); road_repro.train.optim documents both.
LAYERWISE_CONVENTIONS = ("road", "electra")


@dataclass
class OptimConfig:
    """Optimizer and schedule (paper Table 8, finetuning column, as defaults)."""

    epochs: float = 3.0
    steps: int | None = None  # overrides epochs when set (pretraining counts steps)
    lr: float = 5e-5
    batch_size: int = 32
    eval_batch_size: int = 128
    layerwise_lr_decay: float = 0.9
    layerwise_convention: str = "road"  # one of LAYERWISE_CONVENTIONS (see road_repro.train.optim)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0


@dataclass
class DistillConfig:
    """KD settings (paper 3.3: T = 5, lambda = 0.9, W = 0.75, three teachers)."""

    temperature: float = 5.0
    lam: float = 0.9
    w: float = 0.75
    n_teachers: int = 3
    t2_scale: bool = True  # multiply KL_T by T^2 (Hinton et al. 2015); applies to every KD term, MTL included


def _pretrain_optim() -> "OptimConfig":
    return OptimConfig(steps=50_000, lr=3e-4, batch_size=512, layerwise_lr_decay=0.75)


@dataclass
class MTLConfig:
    """Multi-task pretraining (paper 2.1, Table 1 and the pretraining column of Table 8).

    ``datasets`` maps each MTL dataset to its training split; ROaD shares one head per task type, MT-DNN
    keeps one per dataset. These splits and caps are the MTL data even where a dataset's name is also a
    finetuning task's (``mnli``, ``qqp``): the task's own split and cap never leak into MTL.
    ``seeds``: several MTL runs per arm (empty: one, ``seed``); finetuning seed ``i`` starts from MTL run
    ``seeds[i mod k]``, so MTL variance enters the claim verdicts (each is a stage the plan counts).
    ``draws``: how a ROaD step's passes draw datasets, ``with_replacement`` (Algorithm 1's
    ``random(datasets)`` per pass, the default) or ``without_replacement`` (distinct datasets within a step).
    KD during MTL (paper 2.2, Table 4) uses ``kd_temperature`` and ``kd_lam`` (and ``distill.t2_scale``)
    with a teacher finetuned per dataset (``teacher_epochs`` epochs with the finetuning settings).
    """

    datasets: dict[str, SplitConfig] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=_pretrain_optim)
    pass_step: int = 4
    draws: str = "with_replacement"
    seed: int = 1
    seeds: list[int] = field(default_factory=list)  # several MTL runs per arm (see above); empty: one, ``seed``
    kd_temperature: float = 5.0
    kd_lam: float = 0.7
    teacher_epochs: float = 3.0


@dataclass
class RuntimeConfig:
    """How to run: device, precision, checkpoint cadence, progress bars."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (bf16 where supported, else fp16; fp32 on CPU)
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = only at the end
    progress: bool = True
    compile: bool = False  # torch.compile the model for training
    feature_workers: int = 0  # processes that tokenize a split into the feature store; 0 = auto (1 for small splits)
    max_rows_per_device: int = 0  # rows per GPU per micro-batch (gradient accumulation); 0 = auto from GPU memory
    activation_checkpointing: bool = False  # recompute each encoder layer in backward (less memory, ~1/3 more compute)
    gpu: str = "V100-32GB"  # the GPU the dry run sizes memory for (road_repro.train.memory.GPU_MEMORY_MIB)
    nproc: int = 1  # GPUs the dry run plans for (make's NPROC or --nproc override it)


@dataclass
class ProfileConfig:
    """One scale (smoke, mini, paper): models, data, hyperparameters and seeds."""

    name: str = MISSING
    description: str = ""
    scale_note: str = ""  # shown on every report page (e.g. "smoke: a pipeline check, not a reproduction")
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    data_dir: str | None = None
    max_unusable_share: float = 0.001  # skippable rows (empty text, unknown label) allowed per split (road_repro.data.unusable)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    finetune: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    mtl: MTLConfig = field(default_factory=MTLConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class MTLRow:
    """Multi-task pretraining before finetuning: ROaD (``road``) or MT-DNN (``mtdnn``), optionally with KD."""

    mode: str = "road"
    pass_step: int | None = None  # None = the profile's mtl.pass_step (ROaD only)
    kd: bool = False
    steps_fraction: float = 1.0  # of mtl.optim.steps (blog 5.1 trains the base model 40k of the paper's 50k)


@dataclass
class TeacherSource:
    """Where a teacher's own soft targets came from, when the teacher was itself distilled (blog 4.2: a
    ROaD-large teacher distilled from 3 ROaD-large teachers). Its teachers are plain finetunes."""

    model: str = MISSING
    mtl: MTLRow | None = None
    ensemble: bool = True  # the first distill.n_teachers seeds (paper: 3), else the first seed only
    distill: str = "kd"  # how the teacher was distilled: kd | annealing | weighted


@dataclass
class TeacherSpec:
    """The teacher(s) of a row, instead of the default (same model and init, the first n_teachers seeds).

    ``model`` (another size: cross-model KD, blog 4.1 / 5.1 / 6), optionally after multi-task pretraining
    (``mtl``: a ROaD-large teacher is ROaD MTL + SQuAD 2.0 finetuning); ``ensemble``: the first
    ``distill.n_teachers`` seeds (paper: 3) or only the first seed; ``distilled_from``: the teachers were
    themselves distilled (blog 4.2). Teacher runs are ordinary cached stages, shared with every table.
    """

    model: str = MISSING
    mtl: MTLRow | None = None
    ensemble: bool = False
    distilled_from: TeacherSource | None = None


@dataclass
class HiddenKDSpec:
    """Hidden-state distillation (blog 4.3): ``weight`` x MSE between the projected student hidden states and
    the teacher's, all layers (uniform map, embeddings to embeddings) or the last layer only. Added to the
    row's logits objective: plain CE when the row has no ``distill``, else its KD loss. One teacher."""

    weight: float = 1.0
    last_layer_only: bool = False


@dataclass
class AugmentSpec:
    """Training-data augmentation (paper Table 3): add ``negative_questions`` x (answerable questions)
    unanswerable questions made by swapping an entity of the question (see data.augmentation)."""

    negative_questions: float = 0.0
    ner: str = "auto"  # auto (a spaCy English pipeline when installed, else the heuristic) | heuristic | spacy:<pkg>
    seed: int = 0  # the augmented data is the same for every model seed


@dataclass
class RowSpec:
    """One printed row of a table: its label as printed (joins paper_tables.csv) and how to compute it.

    ``recipe``: ``finetune`` (one run per seed), ``ensemble`` (average the teachers' dev logits) or
    ``published`` (a number the paper quotes from another publication: shown with the published value,
    not run). ``published: true`` on a ``finetune`` row marks a quoted number we can also run (a plain
    finetune of a public encoder, loaded by name; a stand-in encoder at the smoke and mini scales).
    """

    method: str = MISSING
    recipe: str = "finetune"  # finetune | ensemble | published
    distill: str | None = None  # None | kd | annealing | weighted
    model: str | None = None  # profile model key; defaults to the table's
    paper_model: str | None = None  # the paper's model column, where a table has several models
    label_smoothing: float = 0.0
    mtl: MTLRow | None = None
    teacher: TeacherSpec | None = None
    hidden: HiddenKDSpec | None = None
    augment: AugmentSpec | None = None
    published: bool = False


@dataclass
class ClaimSpec:
    """A claim of the paper or blog this table supports: row ``better`` beats row ``worse`` (``kind:
    greater``), the two are about equal (``equal``) or ``better`` is not worse (``not_worse``), on one task
    and metric. Rows are named by their ``method`` (and ``paper_model`` where the table has several models);
    the paper's own difference is read from paper_tables.csv. ``equal`` and ``not_worse`` need a ``margin``
    (points) and ``margin_source`` (why that margin); ``conflict`` flags a claim that the source's own text
    and table read two ways (the report shows both readings). The rule: road_repro/report/verdicts.py."""

    claim: str = MISSING  # the claim in words, as the paper or blog makes it
    better: str = MISSING
    worse: str = MISSING
    dataset: str = "squad_v2"
    metric: str = "f1"
    paper_model: str | None = None
    kind: str = "greater"
    worse_paper_model: str | None = None  # the worse row's paper_model when it differs (ROaD vs DeBERTa-large)
    margin: float | None = None
    margin_source: str = ""
    conflict: str = ""


CLAIM_KINDS = ("greater", "equal", "not_worse")


@dataclass
class TableSpec:
    """A paper or blog table: the tasks and metrics it reports, the model, the rows, the claims."""

    table: str = MISSING  # id in paper_tables.csv (T5, B51, ...)
    title: str = MISSING
    model: str = "large"
    evaluate: dict[str, list[str]] = field(default_factory=dict)  # task -> metrics, e.g. squad_v2: [f1, em]
    rows: list[RowSpec] = field(default_factory=list)
    claims: list[ClaimSpec] = field(default_factory=list)
    profile_overrides: dict[str, Any] = field(default_factory=dict)
    scale_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile name -> overrides at that scale
    notes: list[str] = field(default_factory=list)  # what the page must say about how the table was run

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(m for ms in self.evaluate.values() for m in ms))


DISTILL_METHODS = (None, "kd", "annealing", "weighted")
RECIPES = ("finetune", "ensemble", "published")
MTL_MODES = ("road", "mtdnn")


def _resolve_path(name_or_path: str, folder: Path, kind: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = folder / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    raise ConfigError(f"unknown {kind} {name_or_path!r}: no file {candidate} (known: {', '.join(known)})")


def load_yaml(path: Path, kind: str = "settings file") -> Any:
    """``OmegaConf.load`` with a YAML syntax error reported as a ConfigError naming the file and line, and a
    top level that is not a mapping (a list, say) reported before OmegaConf's merge fails on it."""
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {_one_line(exc)}") from exc
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: its top level is a {'list' if isinstance(cfg, ListConfig) else 'value'}; a {kind} "
                          "is a mapping of settings (key: value lines, e.g. `name: ...`)")
    return cfg


def _one_line(exc: OmegaConfBaseException) -> str:
    """OmegaConf's message without its ``full_key:`` / ``object_type=`` lines, naming the setting once."""
    msg = str(getattr(exc, "msg", None) or exc).splitlines()[0].strip()
    key = getattr(exc, "full_key", None)
    if isinstance(exc, ConfigKeyError) and key:
        return f"unknown setting {key!r} ({msg})"
    return f"{key}: {msg}" if key and key not in msg else msg


def _container_mismatch(base: Any, layer: Any, prefix: str = "") -> str | None:
    """The first setting of ``layer`` that is a list where ``base`` holds a mapping or the reverse (OmegaConf's
    merge raises a bare ``TypeError`` on it, naming no key)."""
    if not isinstance(layer, DictConfig) or not isinstance(base, DictConfig) or base._is_none() or layer._is_none():
        return None
    for key in layer.keys():
        if key not in base:
            continue  # an unknown key: the merge names it
        b, v = base._get_node(key), layer._get_node(key)
        kinds = [("mapping" if isinstance(n, DictConfig) else "list" if isinstance(n, ListConfig) else None) for n in (b, v)]
        if None not in kinds and kinds[0] != kinds[1]:
            return f"{prefix}{key} must be a {kinds[0]}, not a {kinds[1]}"
        found = _container_mismatch(b, v, f"{prefix}{key}.")
        if found:
            return found
    return None


def _merge(schema: type, *layers: Any, what: str) -> Any:
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *layers)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{what}: {_one_line(exc)}") from exc
    except TypeError as exc:  # "Cannot merge incompatible container types": a list where a mapping goes
        base = OmegaConf.structured(schema)
        for layer in layers:
            found = _container_mismatch(base, layer)
            if found:
                raise ConfigError(f"{what}: {found}") from exc
            base = OmegaConf.merge(base, layer)
        raise


def load_table_spec(name_or_path: str) -> TableSpec:
    """Read ``ablations/<name>.yaml`` into a checked :class:`TableSpec`."""
    path = _resolve_path(name_or_path, ABLATIONS_DIR, "table spec")
    spec: TableSpec = _merge(TableSpec, load_yaml(path, "table spec"), what=f"table spec {path}")
    scales = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    for scale in spec.scale_overrides:
        if scale not in scales:
            raise ConfigError(f"{path}: scale_overrides.{scale} names no profile (one of {', '.join(scales)})")
    for i, row in enumerate(spec.rows):
        if row.recipe not in RECIPES:
            raise ConfigError(f"{path}: rows[{i}].recipe={row.recipe!r} is not one of {RECIPES}")
        if row.distill not in DISTILL_METHODS:
            raise ConfigError(f"{path}: rows[{i}].distill={row.distill!r} is not one of {DISTILL_METHODS}")
        for where, mtl in ((f"rows[{i}].mtl", row.mtl), (f"rows[{i}].teacher.mtl", row.teacher and row.teacher.mtl),
                           (f"rows[{i}].teacher.distilled_from.mtl",
                            row.teacher and row.teacher.distilled_from and row.teacher.distilled_from.mtl)):
            if mtl is not None and mtl.mode not in MTL_MODES:
                raise ConfigError(f"{path}: {where}.mode={mtl.mode!r} is not one of {MTL_MODES}")
        if row.teacher is not None and row.distill is None and row.hidden is None:
            raise ConfigError(f"{path}: rows[{i}] names a teacher but no distill method or hidden-state KD")
        if row.hidden is not None:
            if row.hidden.weight <= 0:
                raise ConfigError(f"{path}: rows[{i}].hidden.weight={row.hidden.weight} must be > 0")
            if row.teacher is None or row.teacher.ensemble:
                raise ConfigError(f"{path}: rows[{i}].hidden needs one teacher (teacher: {{model: ..., ensemble: false}})")
            if row.distill in ("annealing", "weighted"):
                raise ConfigError(f"{path}: rows[{i}].hidden combines with plain CE or distill: kd only")
        source = row.teacher and row.teacher.distilled_from
        if source is not None and source.distill not in DISTILL_METHODS[1:]:
            raise ConfigError(f"{path}: rows[{i}].teacher.distilled_from.distill={source.distill!r} is not one of "
                              f"{DISTILL_METHODS[1:]}")
        if row.augment is not None and not 0 < row.augment.negative_questions <= 1:
            raise ConfigError(f"{path}: rows[{i}].augment.negative_questions={row.augment.negative_questions} "
                              "must lie in (0, 1]")
        if not 0 <= row.label_smoothing < 1:
            raise ConfigError(f"{path}: rows[{i}].label_smoothing={row.label_smoothing} must lie in [0, 1)")
        if row.recipe == "published" and (row.distill or row.mtl or row.teacher or row.hidden or row.augment):
            raise ConfigError(f"{path}: rows[{i}] is a published number (recipe: published): it has no training settings")
    if not spec.evaluate:
        raise ConfigError(f"{path}: evaluate must name at least one task and its metrics")
    duplicate_rows(spec, path)
    rows = {(r.method, r.paper_model) for r in spec.rows}
    for i, claim in enumerate(spec.claims):
        for side, model in (("better", claim.paper_model), ("worse", claim.worse_paper_model or claim.paper_model)):
            if (getattr(claim, side), model) not in rows:
                raise ConfigError(f"{path}: claims[{i}].{side}={getattr(claim, side)!r} (paper_model "
                                  f"{model!r}) is not a row of the table")
        if claim.metric not in spec.evaluate.get(claim.dataset, []):
            raise ConfigError(f"{path}: claims[{i}] compares {claim.dataset} {claim.metric}, which the table does not evaluate")
        if claim.kind not in CLAIM_KINDS:
            raise ConfigError(f"{path}: claims[{i}].kind={claim.kind!r} is not one of {CLAIM_KINDS}")
        if (claim.kind == "greater") != (claim.margin is None) or (claim.margin is not None and not (
                claim.margin > 0 and claim.margin_source)):
            raise ConfigError(f"{path}: claims[{i}] ({claim.kind}) needs margin > 0 and margin_source for equal / "
                              f"not_worse and no margin for greater; got margin={claim.margin!r}")
    return spec


def duplicate_rows(spec: TableSpec, path: Path | str) -> None:
    """Rows are selected by ``method`` (and ``paper_model``) in claims, summaries and plots, so two rows with the
    same pair would pool their runs: each pair must be unique, and a method that names its ``paper_model`` in
    one row must name it in every row (a claim without one selects the method across all models)."""
    seen: dict[tuple[str, str | None], int] = {}
    for i, row in enumerate(spec.rows):
        j = seen.setdefault((row.method, row.paper_model), i)
        if j != i:
            model = f" and paper_model {row.paper_model!r}" if row.paper_model else ""
            raise ConfigError(f"{path}: rows[{j}] and rows[{i}] both have method {row.method!r}{model}: claims, "
                              "summaries and plots select rows by method, so their runs would be pooled; give each row "
                              "its own method name (or a distinct paper_model)")
    for method in {m for m, model in seen if model is None}:
        models = sorted(model for m, model in seen if m == method and model is not None)
        if models:
            raise ConfigError(f"{path}: method {method!r} has rows with paper_model {models} and a row without one: "
                              "give that row a paper_model or another method name")


def parse_overrides(overrides: str | Sequence[str] | None) -> list[str]:
    """The user's ``KEY=VALUE`` settings as a list, checked before OmegaConf sees them.

    A bare ``KEY`` is an error (OmegaConf would read it as null and silently unset the setting, e.g. a data
    cap). A single string is one override, or a YAML list of them (papermill ``-p overrides "a=b"`` or
    ``-p overrides '["a=b"]'`` pass a string), never a sequence of characters.
    """
    if overrides is None:
        return []
    if isinstance(overrides, str):
        text = overrides.strip()
        if text.startswith("["):
            try:
                overrides = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"overrides {text!r} is not a YAML list of KEY=VALUE strings: {exc}".splitlines()[0]) from exc
        else:
            overrides = [text] if text else []
    if not isinstance(overrides, Sequence) or isinstance(overrides, str):
        raise ConfigError(f"overrides={overrides!r} must be a list of KEY=VALUE strings, e.g. [\"distill.lam=0.7\"]")
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"override {item!r} is not a KEY=VALUE string (quote it: \"distill.lam=0.7\")")
        key, eq, _ = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"override {item!r} has no '=VALUE': write {key.strip() or 'KEY'}=VALUE "
                              f"({key.strip() or 'KEY'}=null to unset a setting)")
    return list(overrides)


def parse_seeds(seeds: str | Sequence[int] | None) -> list[int] | None:
    """The user's seeds (``--seeds``, a notebook's ``seeds``): None for the profile's, else a list of integers.
    A string is a YAML list or one seed (papermill ``-p seeds "[1, 2]"`` passes a string)."""
    if seeds is None:
        return None
    if isinstance(seeds, str):
        try:
            seeds = yaml.safe_load(seeds)
        except yaml.YAMLError as exc:
            raise ConfigError(f"seeds={seeds!r} is not a list of integers, e.g. [1, 2, 3]") from exc
        seeds = [seeds] if isinstance(seeds, int) else seeds
    if not isinstance(seeds, Sequence) or isinstance(seeds, str) or not all(type(s) is int for s in seeds):
        raise ConfigError(f"seeds={seeds!r} must be a list of integers, e.g. [1, 2, 3]")
    return list(seeds)


def load_profile(
    name_or_path: str, overrides: str | Sequence[str] = (), table: TableSpec | None = None
) -> ProfileConfig:
    """Merge defaults, the profile file, the table's overrides and dotlist ``overrides``; then validate
    (against ``table`` where given: :func:`profile_problems`)."""
    overrides = parse_overrides(overrides)
    path = _resolve_path(name_or_path, PROFILES_DIR, "profile")
    layers = [load_yaml(path, "profile")]
    if table is not None and table.profile_overrides:
        layers.append(OmegaConf.create(table.profile_overrides))
    scale = layers[0].get("name") or path.stem  # the profile's name, so a copy of paper.yaml keeps paper's overrides
    if table is not None and scale in table.scale_overrides:
        layers.append(OmegaConf.create(table.scale_overrides[scale]))
    try:
        layers.append(OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad override in {overrides}: {_one_line(exc)}") from exc
    except (ValueError, TypeError, KeyError) as exc:  # e.g. 'k=[a]' then 'k._=1': OmegaConf indexes a list by '_'
        raise ConfigError(f"bad override in {overrides}: {exc}") from exc
    profile: ProfileConfig = _merge(ProfileConfig, *layers, what=f"profile {path} with overrides {overrides}")
    if profile.data_dir is None and os.environ.get("ROAD_DATA_DIR"):
        profile.data_dir = os.environ["ROAD_DATA_DIR"]
    validate_profile(profile, table)
    return profile


def trains_teacher_ensembles(spec: TableSpec) -> bool:
    """Whether any row of ``spec`` uses an ensemble of ``distill.n_teachers`` single-model runs (its own
    default teachers, an ``ensemble`` row, or a teacher or teacher source with ``ensemble: true``)."""
    for row in spec.rows:
        if row.recipe == "published":
            continue
        t = row.teacher
        if t is None and (row.recipe == "ensemble" or row.distill or row.hidden):
            return True
        if t is not None and (t.ensemble or (t.distilled_from is not None and t.distilled_from.ensemble)):
            return True
    return False


#: Range checks of the numeric settings: (block attribute path, field, lowest, highest, kind of bounds).
#: ``"()"`` open, ``"[]"`` closed, ``"[)"`` / ``"(]"`` half-open; ``None`` = unbounded on that side.
_OPTIM_RANGES = (
    ("lr", 0, None, "()"), ("batch_size", 1, None, "[]"), ("eval_batch_size", 1, None, "[]"),
    ("epochs", 0, None, "()"), ("steps", 1, None, "[]"), ("layerwise_lr_decay", 0, 1, "(]"),
    ("warmup_ratio", 0, 1, "[)"), ("weight_decay", 0, None, "[]"), ("adam_eps", 0, None, "()"),
    ("adam_beta1", 0, 1, "[)"), ("adam_beta2", 0, 1, "[)"), ("max_grad_norm", 0, None, "()"),
)
_RANGES: dict[str, tuple[tuple[str, float | None, float | None, str], ...]] = {
    "finetune": _OPTIM_RANGES,
    "mtl.optim": _OPTIM_RANGES,
    "distill": (("temperature", 0, None, "()"), ("lam", 0, 1, "[]"), ("w", 0, 1, "(]"), ("n_teachers", 1, None, "[]")),
    "features": (("max_seq_length", 16, None, "[]"), ("doc_stride", 1, None, "[]"), ("max_query_length", 1, None, "[]"),
                 ("max_answer_length", 1, None, "[]"), ("n_best_size", 1, None, "[]"),
                 ("max_pair_length", 8, None, "[]")),
    "mtl": (("pass_step", 1, None, "[]"), ("kd_temperature", 0, None, "()"), ("kd_lam", 0, 1, "[]"),
            ("teacher_epochs", 0, None, "()")),
    "runtime": (("checkpoint_every", 0, None, "[]"), ("feature_workers", 0, None, "[]"),
                ("max_rows_per_device", 0, None, "[]"), ("nproc", 1, None, "[]")),
}

#: What ``runtime.device`` may name: auto, cpu, cuda, cuda:<index>, mps.
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _out_of_range(value: Any, low: float | None, high: float | None, bounds: str) -> str | None:
    """Why ``value`` breaks the range, or None; ``None`` values are unset (allowed where a field is optional)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "must be a number"
    too_low = low is not None and (value < low if bounds[0] == "[" else value <= low)
    too_high = high is not None and (value > high if bounds[1] == "]" else value >= high)
    if too_low or too_high:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        return f"must lie in {bounds[0]}{lo}, {hi}{bounds[1]}"
    return None


def profile_problems(p: ProfileConfig, table: TableSpec | None = None) -> list[str]:
    """Every range and consistency problem of a profile, each naming the setting (empty list: none).
    With ``table``, the teacher count is checked only if the table trains teacher ensembles."""
    problems: list[str] = []
    for block, checks in _RANGES.items():
        obj: Any = p
        for part in block.split("."):
            obj = getattr(obj, part)
        for key, low, high, bounds in checks:
            why = _out_of_range(getattr(obj, key), low, high, bounds)
            if why:
                problems.append(f"{block}.{key}={getattr(obj, key)!r} {why}")
    for key, optim in (("finetune", p.finetune), ("mtl.optim", p.mtl.optim)):
        if optim.layerwise_convention not in LAYERWISE_CONVENTIONS:
            problems.append(f"{key}.layerwise_convention={optim.layerwise_convention!r} must be one of "
                            f"{', '.join(LAYERWISE_CONVENTIONS)}")
    d = p.distill
    if len(set(p.mtl.seeds)) != len(p.mtl.seeds):
        problems.append(f"mtl.seeds={p.mtl.seeds} has duplicates")
    if not p.seeds:
        problems.append("seeds must name at least one seed")
    elif not all(type(seed) is int for seed in p.seeds):  # OmegaConf lets a nested list through List[int]
        problems.append(f"seeds={p.seeds} must be a list of integers, e.g. [1, 2, 3]")
    elif len(set(p.seeds)) != len(p.seeds):
        problems.append(f"seeds={p.seeds} has duplicates")
    elif d.n_teachers > len(p.seeds) and (table is None or trains_teacher_ensembles(table)):
        problems.append(f"distill.n_teachers={d.n_teachers} teachers requested but only {len(p.seeds)} seeds exist "
                        "(teachers are the single-model runs of the first n_teachers seeds)")
    f = p.features
    if f.max_query_length > 0 and f.doc_stride >= f.max_seq_length - f.max_query_length - 3:
        problems.append(f"features.doc_stride={f.doc_stride} leaves no room: it must be < max_seq_length - "
                        f"max_query_length - 3 = {f.max_seq_length - f.max_query_length - 3}")
    if f.span_padding not in SPAN_PADDINGS:
        problems.append(f"features.span_padding={f.span_padding!r} must be one of {', '.join(SPAN_PADDINGS)}")
    if f.answer_selection not in ("reference", "context"):
        problems.append(f"features.answer_selection={f.answer_selection!r} must be reference or context")
    if p.runtime.precision not in ("fp32", "bf16", "fp16", "auto"):
        problems.append(f"runtime.precision={p.runtime.precision!r} must be fp32, bf16, fp16 or auto")
    if not _DEVICE.fullmatch(str(p.runtime.device)):
        problems.append(f"runtime.device={p.runtime.device!r} is not a device: use auto, cpu, cuda, cuda:<index> or mps")
    if p.runtime.gpu not in GPU_MEMORY_MIB:
        problems.append(f"runtime.gpu={p.runtime.gpu!r} must be one of {', '.join(GPU_MEMORY_MIB)}")
    m_cfg = p.mtl
    if m_cfg.draws not in DRAWS:
        problems.append(f"mtl.draws={m_cfg.draws!r} must be one of {DRAWS}")
    if m_cfg.pass_step >= 1 and m_cfg.optim.batch_size >= 1 and m_cfg.optim.batch_size % m_cfg.pass_step:
        problems.append(f"mtl.pass_step={m_cfg.pass_step} does not divide mtl.optim.batch_size={m_cfg.optim.batch_size}")
    for key, task in p.tasks.items():
        if task.dev is None and task.train is None:
            problems.append(f"tasks.{key}: needs a train or a dev split")
        if task.predict_with is not None and task.predict_with not in p.tasks:
            problems.append(f"tasks.{key}.predict_with={task.predict_with!r} is not a task of this profile")
        for split_name, split in (("train", task.train), ("dev", task.dev)):
            if split is not None and split.limit is not None and split.limit < 1:
                problems.append(f"tasks.{key}.{split_name}.limit={split.limit} must be >= 1 (or null for all)")
    for key, split in m_cfg.datasets.items():
        if split.limit is not None and split.limit < 1:
            problems.append(f"mtl.datasets.{key}.limit={split.limit} must be >= 1 (or null for all)")
        if split.cap is not None and split.cap < 1:
            problems.append(f"mtl.datasets.{key}.cap={split.cap} must be >= 1 (or null for all)")
    if not 0 <= p.max_unusable_share < 1:
        problems.append(f"max_unusable_share={p.max_unusable_share} must lie in [0, 1) (a share of a split's rows)")
    for key, m in p.models.items():
        if (m.name_or_path is None) == (m.preset is None):
            problems.append(f"models.{key}: set exactly one of name_or_path or preset")
        if m.warm_start is not None and m.preset is None:
            problems.append(f"models.{key}.warm_start applies to tiny presets only (pretrained models are pretrained)")
        if m.num_layers is not None and m.num_layers < 1:
            problems.append(f"models.{key}.num_layers={m.num_layers} must be >= 1")
        for name in ("hidden_dropout", "attention_dropout"):
            why = _out_of_range(getattr(m, name), 0, 1, "[)")
            if why:
                problems.append(f"models.{key}.{name}={getattr(m, name)!r} {why}")
        if m.warm_start is not None:
            for name, low, bounds in (("steps", 1, "[]"), ("lr", 0, "()"), ("batch_size", 1, "[]")):
                why = _out_of_range(getattr(m.warm_start, name), low, None, bounds)
                if why:
                    problems.append(f"models.{key}.warm_start.{name}={getattr(m.warm_start, name)!r} {why}")
    return problems


def validate_profile(p: ProfileConfig, table: TableSpec | None = None) -> None:
    """Raise one ConfigError listing every problem of :func:`profile_problems` (one line each)."""
    problems = profile_problems(p, table)
    if problems:
        raise ConfigProblems(problems, f"in profile {p.name!r}")


def to_dict(obj: Any) -> dict[str, Any]:
    """A plain, JSON-ready dict of a config dataclass (for hashing and provenance)."""
    return OmegaConf.to_container(OmegaConf.structured(obj), resolve=True)  # type: ignore[return-value]
