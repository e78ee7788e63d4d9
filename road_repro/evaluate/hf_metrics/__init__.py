"""Our metrics as Hugging Face ``evaluate`` modules, shipped with the package and loaded offline by path.

``evaluate.load(metric_path("road_squad_v2"))`` and ``evaluate.load(metric_path("road_accuracy"))`` give
``evaluate.Metric`` objects whose ``compute`` delegates to :func:`road_repro.evaluate.squad_v2.evaluate`
and :func:`road_repro.evaluate.accuracy.accuracy`, so a Hugging Face pipeline scores with exactly our code.
Each module is a folder ``<name>/<name>.py`` (the layout ``evaluate.load`` expects of a local module).
"""

from __future__ import annotations

from pathlib import Path

#: The packaged ``evaluate`` modules.
METRICS = ("road_squad_v2", "road_accuracy")


def metric_path(name: str) -> str:
    """Path of the packaged ``evaluate`` module script ``name`` (one of :data:`METRICS`), for ``evaluate.load``."""
    if name not in METRICS:
        raise ValueError(f"metric_path: unknown metric {name!r}; packaged: {', '.join(METRICS)}")
    return str(Path(__file__).resolve().parent / name / f"{name}.py")
