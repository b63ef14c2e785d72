"""Per-round human-in-the-loop numbers: the routing threshold and what it does (share automated, errors let
through, human workload, cost against full manual review and full automation), the stop set's agreement with
the previous model, and the break-even estimate of the next batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from al_loop.config import Config
from al_loop.model import FittedModel
from al_loop.routing import apply, calibrate, costs
from al_loop.stopping import agreement, break_even, fit_curve, stabilized


def routing_metrics(config: Config, model: FittedModel, x: Any, labels: np.ndarray) -> dict[str, float]:
    """The threshold (fixed or calibrated for epsilon) on held-out labeled rows, and its consequences."""
    proba = model.predict_proba(x)
    predicted = np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)]
    confidence = proba.max(axis=1)
    correct = predicted == np.asarray(labels, dtype=object).astype(str)
    routing = config.routing
    chosen = (apply(confidence, correct, routing.hi, routing.confidence_level) if routing.hi is not None
              else calibrate(confidence, correct, routing.epsilon, routing.confidence_level))
    bill = costs(chosen, int((~correct).sum()), config.costs.per_label, config.costs.per_error)
    n = max(chosen.total, 1)
    return {
        "route_hi": min(chosen.hi, 1.0), "route_share_automated": chosen.share_automated,
        "route_human_share": 1.0 - chosen.share_automated,
        "route_error_bound": chosen.error_upper_bound,
        "route_expected_errors_per_1000": 1000 * chosen.error_upper_bound * chosen.share_automated,
        "cost_routing_per_item": bill.routing / n, "cost_manual_per_item": bill.manual / n,
        "cost_automation_per_item": bill.automation / n,
    }


def stop_set(config: Config, pool_size: int) -> np.ndarray:
    """A fixed random sample of pool rows (seeded) on which successive models' predictions are compared."""
    rng = np.random.default_rng([config.seed, 7_919])
    size = min(config.stopping.stop_set_size, pool_size)
    return np.sort(rng.choice(pool_size, size=size, replace=False))


def stop_set_kappa(previous: Sequence[int] | None, current: np.ndarray) -> float | None:
    """Cohen's kappa between the previous and the current model's stop-set predictions."""
    return None if previous is None else agreement([str(v) for v in previous], [str(v) for v in current])


def break_even_metrics(config: Config, curve: list[tuple[float, float]]) -> dict[str, float]:
    """The fitted curve's predicted gain of the next batch, and (with a value per point) its value and cost."""
    fitted = fit_curve([n for n, _ in curve], [a for _, a in curve])
    if fitted is None:
        return {}
    verdict = break_even(fitted, curve[-1][0], config.loop.batch_size, config.costs.per_label,
                         config.costs.per_accuracy_point or 0.0)
    metrics = {"next_batch_gain": verdict.gain, "curve_plateau": fitted.a}
    if config.costs.per_accuracy_point is not None:
        metrics |= {"next_batch_value": verdict.value, "next_batch_cost": verdict.cost}
    return metrics


def stop_rule_fired(config: Config, history: Sequence[dict[str, float]]) -> str | None:
    """Why the configured stop rule (beyond the budget) says to stop, from the rounds' metrics so far."""
    rule = config.stopping
    if rule.rule == "stabilizing":
        kappas = [m["stop_kappa"] for m in history if "stop_kappa" in m]
        if stabilized(kappas, rule.kappa, rule.window):
            return (f"stabilizing predictions: kappa >= {rule.kappa} between successive models over the last "
                    f"{rule.window} rounds")
    if rule.rule == "break_even" and len(history) > rule.window and "next_batch_value" in history[-1]:
        last = history[-1]
        # the forecast alone stops too early on an S-shaped curve (slow start, then a steep rise): the return
        # actually seen over the last `window` batches must also be below the cost
        seen = (last.get("accuracy", 0.0) - history[-1 - rule.window].get("accuracy", 0.0)) / rule.window
        seen_value = max(seen, 0.0) * 100 * (config.costs.per_accuracy_point or 0.0)
        if max(last["next_batch_value"], seen_value) < last["next_batch_cost"]:
            return (f"break-even: the next batch would return {last['next_batch_value']:.2f} (the last batches "
                    f"{seen_value:.2f} each) for a cost of {last['next_batch_cost']:.2f}")
    return None
