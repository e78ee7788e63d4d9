"""Experiment's stage methods are thin: each takes exactly what its stage_kinds module's ``run`` takes.

The planner reads a stage's arguments through ``Experiment.<kind>``'s signature (``planning._arguments``), and
the stages call each other through ``Context``'s declarations, so a default or a parameter that drifted between
the three would plan or run a different stage than it says.
"""

from __future__ import annotations

import inspect

import pytest

from road_repro.experiments import stage_kinds
from road_repro.experiments.context import Context
from road_repro.experiments.stage_kinds import ensemble, finetune, mtl, predict, soft_targets, warm_start
from road_repro.experiments.stages import Experiment

MODULES = {"warm_start": warm_start, "finetune": finetune, "soft_targets": soft_targets, "ensemble": ensemble,
           "predict": predict, "mtl": mtl}


def _parameters(fn) -> list[tuple[str, object]]:
    """(name, default) of every parameter after the first (``self`` or ``exp``)."""
    return [(p.name, p.default) for p in list(inspect.signature(fn).parameters.values())[1:]]


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_each_stage_method_takes_what_its_module_takes(kind):
    method, module = _parameters(getattr(Experiment, kind)), _parameters(MODULES[kind].run)
    if kind == "predict":  # the module names the finished run model_run (its own name is run)
        module = [("run", d) if n == "model_run" else (n, d) for n, d in module]
    assert method == module
    if kind in Context.__abstractmethods__:
        assert _parameters(getattr(Context, kind)) == method


def test_every_stage_kind_module_is_exposed_by_experiment():
    modules = {name for name in vars(stage_kinds) if inspect.ismodule(getattr(stage_kinds, name))}
    assert modules == set(MODULES) and Context.__abstractmethods__ <= set(MODULES)
