"""Learning-curve metrics: AUBC, labels needed to reach a target, mean curves over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def aubc(labels: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under the budget curve, normalized by the budget span: the mean accuracy over the labels spent.

    Trapezoidal rule over (labels, accuracy) from the first to the last point; 1.0 is a perfect curve.
    A single point has no span, so its AUBC is that point's accuracy.
    """
    x = np.asarray(labels, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("labels and accuracy must be non-empty and of the same length")
    if np.any(np.diff(x) <= 0):
        raise ValueError("labels must be strictly increasing")
    if x.size == 1:
        return float(y[0])
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def labels_to_target(labels: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """The fewest labels at which the curve first reaches `target` accuracy, or None if it never does."""
    x = np.asarray(labels, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if x.shape != y.shape:
        raise ValueError("labels and accuracy must have the same length")
    reached = np.flatnonzero(y >= target)
    return None if reached.size == 0 else float(x[reached[0]])


def mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard deviation over seeds, on the label counts every curve has."""
    if not curves:
        raise ValueError("no curves to average")
    common = set(curves[0][0].tolist())
    for x, _ in curves[1:]:
        common &= set(x.tolist())
    steps = np.array(sorted(common), dtype=float)
    stacked = np.array([[dict(zip(x.tolist(), y.tolist(), strict=True))[s] for s in steps] for x, y in curves])
    return steps, stacked.mean(axis=0), stacked.std(axis=0)


def target_key(target: float) -> str:
    """The column/metric suffix of a target share of the full-pool accuracy: 0.95 -> '95pct'."""
    return f"{round(target * 100)}pct"


def is_missing(value: object) -> bool:
    """None or NaN: a labels-to-target or speed-up that could not be measured."""
    return value is None or (isinstance(value, float) and value != value)


def speed_up(random_labels: float | None, strategy_labels: float | None) -> float | None:
    """How many times fewer labels a strategy needs than random to reach a target (None if unknown)."""
    if random_labels is None or strategy_labels is None or strategy_labels <= 0:
        return None
    return random_labels / strategy_labels


def run_summary(labels: Sequence[float], accuracy: Sequence[float], targets: Sequence[float],
                full_accuracy: float | None = None, budget: float | None = None) -> dict[str, float]:
    """The metrics that summarize one run's curve, for the runs table: `aubc` up to `budget` (the common budget
    of a comparison; the whole curve if None) and, when the full-pool accuracy is known, `full_pool_accuracy` and
    `labels_to_<t>pct`: the first point of this curve at t x the full-pool accuracy (left out if never reached)."""
    x = np.asarray(labels, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if x.size == 0:
        return {}
    keep = x <= budget if budget is not None else np.ones(x.size, dtype=bool)
    out = {"aubc": aubc(x[keep], y[keep])} if keep.any() else {}
    if full_accuracy is not None:
        out["full_pool_accuracy"] = float(full_accuracy)
        for target in targets:
            reached = labels_to_target(x, y / full_accuracy, target)
            if reached is not None:
                out[f"labels_to_{target_key(target)}"] = reached
    return out
