"""road_repro.evaluate"""

from road_repro.evaluate.hf_metrics import metric_path

__all__ = ["metric_path"]
