"""Safe loading: nothing the package reads can run code.

Static checks over the package source (``ast``, so comments and strings do not count):

* every ``torch.load`` passes ``weights_only=True``;
* ``trust_remote_code`` is only ever passed a value read from the config (``cfg.trust_remote_code``),
  never a literal;
* every model ``from_pretrained`` passes ``use_safetensors=True`` (directly or in the ``**kwargs`` dict
  built beside it), and no module imports a pickle-based serializer.

And two behavioural checks that the guards hold: a checkpoint whose ``state.pt`` carries a pickle payload
(with matching checksums, as an attacker would write it) is refused without running the payload, and a
model folder holding only pickled ``pytorch_model.bin`` weights is not loaded.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import BertConfig

import road_repro
from road_repro.config import ModelConfig
from road_repro.errors import RoadError
from road_repro.models.encoder import TINY_PRESETS, load_encoder
from road_repro.train.checkpoint import is_complete, load_latest, save_checkpoint, sha256_file
from tests.helpers import tiny_model

PACKAGE = Path(road_repro.__file__).parent
PICKLE_MODULES = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent), ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _where(path: Path, node: ast.AST) -> str:
    return f"{path}:{node.lineno}"


def test_torch_load_always_passes_weights_only_true():
    loads = [(path, call) for path, tree in _sources() for call in _calls(tree)
             if isinstance(call.func, ast.Attribute) and call.func.attr == "load"
             and isinstance(call.func.value, ast.Name) and call.func.value.id == "torch"]
    assert loads, "expected the checkpoint's torch.load (the check would be vacuous)"
    unsafe = [_where(path, call) for path, call in loads if not _is_true(_keyword(call, "weights_only"))]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"


def test_no_pickle_based_serializer_is_imported():
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{_where(path, node)} imports {n}" for n in names if n.split(".")[0] in PICKLE_MODULES]
    assert not found, found


def _remote_code_values(tree: ast.AST) -> Iterator[ast.expr]:
    """Every value given for ``trust_remote_code``: as a keyword argument or as a literal dict key."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from (kw.value for kw in node.keywords if kw.arg == "trust_remote_code")
        elif isinstance(node, ast.Dict):
            yield from (v for k, v in zip(node.keys, node.values)
                        if isinstance(k, ast.Constant) and k.value == "trust_remote_code")


def test_trust_remote_code_only_comes_from_the_config():
    values = [(path, v) for path, tree in _sources() for v in _remote_code_values(tree)]
    assert values, "expected the encoder's trust_remote_code=cfg.trust_remote_code (the check would be vacuous)"
    literal = [_where(path, v) for path, v in values
               if not (isinstance(v, ast.Attribute) and v.attr == "trust_remote_code")]
    assert not literal, f"trust_remote_code not taken from the config at {literal}"


def _dicts_with_safetensors(function: ast.AST) -> set[str]:
    """Names assigned, in ``function``, a ``dict(...)`` / ``{...}`` that sets ``use_safetensors=True``."""
    names = set()
    for node in ast.walk(function):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        as_call = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict"
        if as_call and _is_true(_keyword(value, "use_safetensors")):
            names.add(node.targets[0].id)
        if isinstance(value, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "use_safetensors" and _is_true(v)
                                               for k, v in zip(value.keys, value.values)):
            names.add(node.targets[0].id)
    return names


def _loads_safetensors(call: ast.Call, function: ast.AST) -> bool:
    if _is_true(_keyword(call, "use_safetensors")):
        return True
    spread = [kw.value.id for kw in call.keywords if kw.arg is None and isinstance(kw.value, ast.Name)]
    return any(name in _dicts_with_safetensors(function) for name in spread)


def test_pretrained_weights_load_through_safetensors():
    checked, unsafe = 0, []
    for path, tree in _sources():
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for call in _calls(function):
                func = call.func
                if not (isinstance(func, ast.Attribute) and func.attr == "from_pretrained"):
                    continue
                owner = func.value.id if isinstance(func.value, ast.Name) else ast.unparse(func.value)
                if owner.endswith(("Tokenizer", "Config")):  # no weights: vocabularies and JSON configs
                    continue
                checked += 1
                if not _loads_safetensors(call, function):
                    unsafe.append(f"{_where(path, call)} {owner}.from_pretrained")
    assert checked, "expected AutoModel.from_pretrained (the check would be vacuous)"
    assert not unsafe, f"model weights not loaded with use_safetensors=True at {unsafe}"


class Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_checkpoint_with_a_pickle_payload_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    ckpt = save_checkpoint(tmp_path / "ckpts", 1, tiny_model(), {})
    torch.save({"step": 1, "rng": Payload(marker)}, ckpt / "state.pt")
    sums = {name: sha256_file(ckpt / name) for name in ("model.safetensors", "state.pt")}
    (ckpt / "COMPLETE").write_text(json.dumps(sums))  # checksums an attacker can recompute
    assert is_complete(ckpt)
    with pytest.raises(pickle.UnpicklingError):
        load_latest(tmp_path / "ckpts", tiny_model())
    assert not marker.exists(), "torch.load ran code from the checkpoint"


def test_pickled_pretrained_weights_are_not_loaded(tmp_path: Path):
    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model"
    BertConfig(vocab_size=128, **TINY_PRESETS["tiny"]).save_pretrained(model_dir)
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises((OSError, RoadError)):
        load_encoder(ModelConfig(name_or_path=str(model_dir)), vocab_size=128)
    assert not marker.exists(), "pickled weights ran code"
