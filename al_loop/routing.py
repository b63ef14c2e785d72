"""Confidence routing: auto-accept the confident predictions, send the rest to people, with an error bound.

The threshold `hi` is chosen on held-out labeled rows so that, with probability at least the confidence level,
the error rate among auto-accepted rows is at most epsilon: Learn-then-Test (Angelopoulos et al. 2021) over a grid
of thresholds with the fallback procedure (Wiens 2003), see `calibrate`. The guarantee is about rows drawn like the
held-out ones: new traffic that drifts away from them voids it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, binom


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


PROCEDURES = ("fallback", "fixed_sequence")
EARLY_SHARE = 0.2  # of the error budget (1 - level), spent on the cleanest rows; the rest where a pass is plausible


def calibrate(confidence: np.ndarray, correct: np.ndarray, epsilon: float, level: float = 0.95,
              grid: int = 100, procedure: str = "fallback") -> Threshold:
    """The lowest `hi` certified to keep the error among auto-accepted rows <= epsilon, at confidence `level`.

    Learn-then-Test: one hypothesis per candidate threshold (the confidence quantiles, strictest first), "the error
    rate of rows at or above it exceeds epsilon", tested with the exact binomial p-value (rejected at alpha exactly
    when the Clopper-Pearson bound at 1 - alpha is <= epsilon). Any threshold whose hypothesis is rejected is
    certified; the one automating most is chosen. The multiple-testing procedure keeps the family-wise error <=
    1 - level, so the chosen threshold keeps its promise with probability >= level:

    - `fallback` (default; Wiens 2003): the error budget 1 - level is split between two starting points, 20% at
      the first candidate with enough rows to pass with no error at that share (the cleanest rows) and 80% where a
      pass is plausible (the fixed sequence's start, see below). A rejected hypothesis passes its budget on to the
      next candidate, so a clean start runs the scan at the full level; a failure does not end it: the scan goes on
      from the next starting point. Errors where the fixed sequence starts no longer send everything back to
      people. With few held-out rows (the first start would not come before the second) it is the fixed sequence.
    - `fixed_sequence`: all of the budget on one start, the scan stops at its first failure (al-loop's only
      procedure until `fallback` was added).
      Its start is the candidate automating min_rows(epsilon, level) rows (a pass plausible with errors at half the
      target rate), capped at half the rows and never below the fewest rows that could pass with no error.

    The candidates and the starting points depend on the confidences only, never on correctness. If nothing is
    certified, hi is just above 1.0, nothing is automated, and `needed_rows` says how many clean held-out rows the
    least demanding start needs.
    """
    if procedure not in PROCEDURES:
        raise ValueError(f"unknown routing procedure {procedure!r}; choose one of {', '.join(PROCEDURES)}")
    confidence = np.asarray(confidence, dtype=float)
    wrong = ~np.asarray(correct, dtype=bool)
    total = len(confidence)
    delta = 1.0 - level
    plausible = max(min_rows(epsilon, level, error_share=0.0), min(min_rows(epsilon, level), total // 2))
    early = min_rows(epsilon, 1.0 - EARLY_SHARE * delta, error_share=0.0)
    later = max(plausible, min_rows(epsilon, 1.0 - (1.0 - EARLY_SHARE) * delta, error_share=0.0))
    if procedure == "fixed_sequence" or early >= later:  # few rows: the fixed sequence already starts on the top
        anchors = [(plausible, 1.0)]
    else:
        anchors = [(early, EARLY_SHARE), (later, 1.0 - EARLY_SHARE)]
    nothing = Threshold(hi=float(np.nextafter(1.0, 2.0)), share_automated=0.0, error_upper_bound=None,
                        auto_errors=0, auto_count=0, total=total,
                        needed_rows=min(min_rows(epsilon, 1.0 - share * delta, error_share=0.0)
                                        for _, share in anchors))
    if total == 0:
        return nothing
    values, counts, errors = _candidates(confidence, wrong, grid)
    weights = np.zeros(len(values))
    for rows, share in anchors:  # each anchor's budget goes to the first candidate with that many rows
        reaching = np.flatnonzero(counts >= rows)
        if len(reaching):
            weights[reaching[0]] += share
    p_values = binom.cdf(errors, counts, epsilon)
    best, carried = nothing, 0.0
    for value, n, k, weight, p in zip(values, counts, errors, weights, p_values, strict=True):
        alpha = delta * weight + carried
        if alpha > 0 and p <= alpha:
            carried = alpha
            best = Threshold(hi=float(value), share_automated=int(n) / total,
                             error_upper_bound=clopper_pearson_upper(int(k), int(n), level), auto_errors=int(k),
                             auto_count=int(n), total=total, needed_rows=nothing.needed_rows)
        else:
            carried = 0.0
            if procedure == "fixed_sequence" and alpha > 0:
                break
    return best


def _candidates(confidence: np.ndarray, wrong: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate thresholds (confidence quantiles, strictest first), the rows at or above each, their errors."""
    values = np.unique(np.quantile(confidence, np.arange(grid) / grid))[::-1]
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    cumulative_errors = np.concatenate([[0], np.cumsum(wrong[order])])
    counts = np.searchsorted(-ranked, -values, side="right")
    return values, counts, cumulative_errors[counts]


@functools.lru_cache(maxsize=256)  # depends on its arguments only; called a few times per round
def min_rows(epsilon: float, level: float, error_share: float = 0.5) -> int:
    """The fewest rows whose upper bound can be <= epsilon with errors at `error_share` x epsilon (10,000,000 if
    none up to there): a growing search, then bisection (the bound falls as rows grow at a fixed error share)."""
    def passes(n: int) -> bool:
        return clopper_pearson_upper(int(n * epsilon * error_share), n, level) <= epsilon

    high = 1
    while high < 10_000_000 and not passes(high):
        high *= 2
    if high >= 10_000_000:
        return 10_000_000
    low = high // 2  # fails (or 0)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return high


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


def share_interval(threshold: Threshold, level: float = 0.95) -> tuple[float, float]:
    """A two-sided Clopper-Pearson interval of the share of traffic the threshold automates (the held-out rows at
    or above it are a sample of the traffic): the band of the labor curve."""
    n, k = threshold.total, threshold.auto_count
    if n == 0:
        return 0.0, 1.0
    tail = (1.0 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def tradeoff(confidence: np.ndarray, correct: np.ndarray, epsilons: Sequence[float], level: float = 0.95,
             procedure: str = "fallback") -> list[tuple[float, Threshold]]:
    """What each target error rate would automate on these held-out rows: the trade-off a team picks epsilon from
    ("at 3% you would automate 55%")."""
    return [(float(epsilon), calibrate(confidence, correct, float(epsilon), level, procedure=procedure))
            for epsilon in epsilons]
