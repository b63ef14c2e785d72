"""Stopping rules: stabilizing predictions (Bloodgood & Vijay-Shanker 2009) and break-even from a fitted
learning curve; the budget rule lives in the loop."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.metrics import cohen_kappa_score


def agreement(previous: Sequence[str], current: Sequence[str]) -> float:
    """Cohen's kappa between two models' predictions on the same stop set (1.0 when both are constant alike)."""
    previous, current = np.asarray(previous), np.asarray(current)
    if np.array_equal(previous, current):
        return 1.0
    return float(cohen_kappa_score(previous, current))


def stabilized(kappas: Sequence[float], threshold: float = 0.99, window: int = 3) -> bool:
    """True when the last `window` kappas between successive models are all >= threshold."""
    return len(kappas) >= window and all(k >= threshold for k in kappas[-window:])


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(n, -c)


@dataclass(frozen=True)
class CurveFit:
    """accuracy(n) = a - b n^-c fitted on the curve so far (inverse power law)."""

    a: float
    b: float
    c: float

    def predict(self, n: float) -> float:
        return float(_power_law(np.asarray(float(n)), self.a, self.b, self.c))


def fit_curve(labels: Sequence[float], accuracy: Sequence[float]) -> CurveFit | None:
    """Fit the inverse power law; None with fewer than 4 points or when the fit fails."""
    x, y = np.asarray(labels, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) < 4:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(_power_law, x, y, p0=(min(1.0, y.max() + 0.05), 1.0, 0.5),
                                  bounds=([0.0, 0.0, 0.01], [1.0, 100.0, 3.0]), maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return CurveFit(*map(float, params))


@dataclass(frozen=True)
class BreakEven:
    """The next batch's expected accuracy gain, its value, its cost, and whether it pays for itself."""

    gain: float
    value: float
    cost: float

    @property
    def pays(self) -> bool:
        return self.value >= self.cost


def break_even(curve: CurveFit, labels: float, batch: int, per_label: float, per_point: float) -> BreakEven:
    """Value of the next batch = predicted accuracy gain in points x value per point; cost = batch x per label."""
    gain = max(0.0, curve.predict(labels + batch) - curve.predict(labels))
    return BreakEven(gain=gain, value=gain * 100 * per_point, cost=batch * per_label)
