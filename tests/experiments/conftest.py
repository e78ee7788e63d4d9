"""Shared fixtures for stage tests: one smoke-scale experiment whose warm-started encoders are trained once
per test session (the warm start is the expensive part; every learning test reuses it)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke_experiment(tmp_path_factory):
    """An :class:`Experiment` at the full smoke settings (as ``make reproduce-all`` runs them), one torch
    thread, on a session-wide run store, with the large smoke encoder warm-started (trained once, cached)."""
    import torch

    from road_repro.config import load_profile
    from road_repro.experiments.stages import Experiment

    torch.set_num_threads(1)
    profile = load_profile("smoke", ["runtime.progress=false"])
    experiment = Experiment(profile, tmp_path_factory.mktemp("smoke_runs"), progress=False)
    experiment.warm_start("large")  # ~2 CPU minutes, once: the tests themselves take seconds each
    return experiment
