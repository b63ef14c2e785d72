"""Learning-curve plots (PNG) for a single run and for a comparison of strategies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_learning_curve(labels: Sequence[int], accuracy: Sequence[float], path: Path, title: str) -> Path:
    """Accuracy against labels used, one line."""
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(labels, accuracy, marker="o", markersize=3)
    _style(axes, title)
    return _save(figure, path)


def plot_mean_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path,
                     title: str, reference: float | None = None) -> Path:
    """One line per strategy: mean accuracy over seeds, with a band of ± the given half-width."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, (steps, mean, half_width) in curves.items():
        axes.plot(steps, mean, label=name)
        axes.fill_between(steps, mean - half_width, mean + half_width, alpha=0.2)
    if reference is not None:
        axes.axhline(reference, color="grey", linestyle="--", linewidth=1, label="full pool")
    axes.legend(loc="lower right")
    _style(axes, title)
    return _save(figure, path)


def _style(axes: plt.Axes, title: str) -> None:
    axes.set_xlabel("labels used")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)


def _save(figure: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
