"""al-loop: an active-learning annotation loop (uncertainty sampling, Label Studio, MLflow)."""

__version__ = "0.1.0"
