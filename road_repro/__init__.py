"""road-repro: reproduction and ablation suite for ROaD (Robustly Optimized and Distilled Training)."""

__version__ = "0.1.0"
