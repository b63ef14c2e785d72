"""Confidence routing: auto-accept the confident predictions, send the rest to people, with an error bound.

The threshold `hi` is chosen on held-out labeled rows so that the Clopper-Pearson upper confidence bound of
the error rate among auto-accepted rows is at most epsilon (fixed-sequence testing, see `calibrate`). The
guarantee is about rows drawn like the held-out ones: new traffic that drifts away from them voids it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta


def clopper_pearson_upper(errors: int, n: int, level: float) -> float:
    """One-sided upper bound of a binomial error rate at confidence `level` (1.0 when n = 0)."""
    if n == 0 or errors >= n:
        return 1.0
    return float(beta.ppf(level, errors + 1, n - errors))


@dataclass(frozen=True)
class Threshold:
    """A routing threshold and what it does on the rows it was measured on.

    `error_upper_bound` is None when nothing is automated (there is no error rate to bound, and 0.0 would read as
    perfect); `needed_rows` is how many auto-accepted held-out rows, all correct, the least demanding test of the
    procedure needs to certify anything (0 for a fixed threshold, which certifies nothing)."""

    hi: float
    share_automated: float
    error_upper_bound: float | None
    auto_errors: int
    auto_count: int
    total: int
    needed_rows: int = 0

    @property
    def certified(self) -> bool:
        """Whether any row is auto-accepted (for a calibrated threshold: under the error guarantee)."""
        return self.auto_count > 0


def calibrate(confidence: np.ndarray, correct: np.ndarray, epsilon: float, level: float = 0.95,
              grid: int = 100) -> Threshold:
    """The lowest `hi` whose auto-accepted rows keep the error's upper bound <= epsilon.

    Fixed-sequence testing (as in Learn-then-Test): candidates are the confidence quantiles, strictest first,
    each tested at the full `level`; the scan stops at the first failure, which keeps the promise for the one
    chosen without a multiple-testing correction. Candidates automating fewer rows than `min_rows(epsilon,
    level)` are not tested (too few rows to pass even at half the target error rate; capped at half the rows,
    and never below the fewest rows that could pass with no error); that choice, like the sequence, depends on
    the confidences only, never on correctness. If none passes, hi is just above 1.0:
    nothing is automated.
    """
    confidence = np.asarray(confidence, dtype=float)
    wrong = ~np.asarray(correct, dtype=bool)
    total = len(confidence)
    best = Threshold(hi=float(np.nextafter(1.0, 2.0)), share_automated=0.0, error_upper_bound=None, auto_errors=0,
                     auto_count=0, total=total, needed_rows=min_rows(epsilon, level, error_share=0.0))
    if total == 0:
        return best
    # start where a pass is plausible (errors at half the target rate), but never beyond half of the rows, and
    # never where no pass is possible at all (not even with zero errors): all depend on the row count only
    smallest = max(min_rows(epsilon, level, error_share=0.0), min(min_rows(epsilon, level), total // 2))
    for value in np.unique(np.quantile(confidence, np.arange(grid) / grid))[::-1]:
        auto = confidence >= value
        n = int(auto.sum())
        if n < smallest:
            continue
        errors = int(wrong[auto].sum())
        bound = clopper_pearson_upper(errors, n, level)
        if bound > epsilon:
            break
        best = Threshold(hi=float(value), share_automated=n / total, error_upper_bound=bound, auto_errors=errors,
                         auto_count=n, total=total, needed_rows=best.needed_rows)
    return best


def min_rows(epsilon: float, level: float, error_share: float = 0.5) -> int:
    """The fewest rows whose upper bound can be <= epsilon with errors at `error_share` x epsilon."""
    n = 1
    while n < 10_000_000 and clopper_pearson_upper(int(n * epsilon * error_share), n, level) > epsilon:
        n = int(n * 1.1) + 1
    return n


def apply(confidence: np.ndarray, correct: np.ndarray, hi: float, level: float = 0.95) -> Threshold:
    """What a given threshold does on labeled rows: share automated, errors let through, their upper bound."""
    confidence = np.asarray(confidence, dtype=float)
    auto = confidence >= hi
    errors = int((~np.asarray(correct, dtype=bool))[auto].sum())
    n = int(auto.sum())
    return Threshold(hi=float(hi), share_automated=n / max(len(confidence), 1),
                     error_upper_bound=clopper_pearson_upper(errors, n, level) if n else None, auto_errors=errors,
                     auto_count=n, total=len(confidence))


@dataclass(frozen=True)
class Costs:
    """Cost of handling `total` items three ways: routing, full manual review, full automation."""

    routing: float
    manual: float
    automation: float


def costs(threshold: Threshold, all_errors: int, per_label: float, per_error: float) -> Costs:
    """Routing pays people for what it does not automate and errors for what it lets through; full manual
    review pays a label per item (and no errors); full automation pays every error of the model."""
    reviewed = threshold.total - threshold.auto_count
    return Costs(routing=reviewed * per_label + threshold.auto_errors * per_error,
                 manual=threshold.total * per_label, automation=all_errors * per_error)
