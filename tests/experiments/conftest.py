"""Shared fixtures for stage tests: one smoke-scale experiment whose warm-started encoders are trained once
per test session, shared by the xdist workers (the warm start is the expensive part: the learning tests
and the Table 5 notebook test reuse it)."""

from __future__ import annotations

import os

import pytest


def _session_dir(tmp_path_factory, name: str):
    """A folder shared by every xdist worker of this test session (the run store's file locks make the
    second worker wait for, then reuse, a stage the first is computing)."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def smoke_experiment(tmp_path_factory):
    """An :class:`Experiment` at the full smoke settings (as ``make reproduce-all`` runs them), one torch
    thread, on a session-wide run store, with the large smoke encoder warm-started (trained once, cached)."""
    import torch

    from road_repro.config import load_profile
    from road_repro.experiments.stages import Experiment

    torch.set_num_threads(1)
    profile = load_profile("smoke", ["runtime.progress=false"])
    experiment = Experiment(profile, _session_dir(tmp_path_factory, "smoke-runs"), progress=False)
    experiment.warm_start("large")  # ~2 CPU minutes, once: the tests themselves take seconds each
    return experiment
