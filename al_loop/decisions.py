"""Per-round human-in-the-loop numbers: the routing threshold and what it does (share automated, errors let
through, human workload, cost against full manual review and full automation), the stop set's agreement with
the previous model, and the break-even estimate of the next batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from al_loop.config import Config, RoutingConfig
from al_loop.model import FittedModel
from al_loop.routing import Threshold, apply, calibrate, costs, share_interval
from al_loop.stopping import agreement, break_even, fit_curve, stabilized


def routing_metrics(config: Config, model: FittedModel, x: Any, labels: np.ndarray) -> dict[str, float]:
    """The threshold (fixed or calibrated for epsilon) on held-out labeled rows, and its consequences.

    Nothing certified logs `route_certified` 0 and no error bound (0.0 would read as perfect); the costs come with
    the realized and bounded error they pay for and `route_within_epsilon`, so a saving that breaks epsilon is
    never shown as one."""
    proba = model.predict_proba(x)
    predicted = np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)]
    correct = predicted == np.asarray(labels, dtype=object).astype(str)
    chosen = choose_threshold(config.routing, proba.max(axis=1), correct)
    return threshold_metrics(config, chosen) | cost_metrics(config, chosen, int((~correct).sum()))


def choose_threshold(routing: RoutingConfig, confidence: np.ndarray, correct: np.ndarray) -> Threshold:
    """The fixed routing.hi applied to the rows, or the threshold calibrated on them for routing.epsilon."""
    if routing.hi is not None:
        return apply(confidence, correct, routing.hi, routing.confidence_level)
    return calibrate(confidence, correct, routing.epsilon, routing.confidence_level, procedure=routing.procedure)


def within_epsilon(threshold: Threshold, epsilon: float) -> bool:
    """Whether the rule keeps the error of what it automates within epsilon: its upper bound is <= epsilon, or it
    automates nothing (a fixed `hi` can automate rows whose bound is far above epsilon)."""
    bound = threshold.error_upper_bound
    return threshold.auto_count == 0 or (bound is not None and bound <= epsilon)


def certified(threshold: Threshold, epsilon: float) -> bool:
    """Whether some rows are automated with the error's upper bound within epsilon."""
    return threshold.certified and within_epsilon(threshold, epsilon)


def threshold_metrics(config: Config, chosen: Threshold) -> dict[str, float]:
    """`route_*`: the threshold, the shares, whether it certifies anything, and (only where rows are automated)
    the realized error and the error's upper bound."""
    epsilon = config.routing.epsilon
    metrics = {"route_hi": min(chosen.hi, 1.0), "route_share_automated": chosen.share_automated,
               "route_human_share": 1.0 - chosen.share_automated,
               "route_certified": float(certified(chosen, epsilon)),
               "route_within_epsilon": float(within_epsilon(chosen, epsilon)),
               "route_calibration_rows": float(chosen.total)}
    # the labor curve's band: the share of traffic this threshold would automate, as estimated from these rows
    low, high = share_interval(chosen, config.routing.confidence_level)
    metrics |= {"route_share_automated_low": low, "route_share_automated_high": high}
    if config.routing.hi is None:
        metrics["route_needed_rows"] = float(chosen.needed_rows)
    if chosen.auto_count and chosen.error_upper_bound is not None:
        metrics |= {"route_error_bound": chosen.error_upper_bound,
                    "route_realized_error": chosen.auto_errors / chosen.auto_count,
                    "route_errors_per_1000_bound": 1000 * chosen.error_upper_bound * chosen.share_automated}
    return metrics


def cost_metrics(config: Config, chosen: Threshold, all_errors: int) -> dict[str, float]:
    """`cost_*` per item: routing with the errors it let through on the held-out rows, routing with its errors at
    their upper bound, full manual review, full automation (read them with `route_within_epsilon`)."""
    per_label, per_error = config.costs.per_label, config.costs.per_error
    bill = costs(chosen, all_errors, per_label, per_error)
    n = max(chosen.total, 1)
    bound = chosen.error_upper_bound if chosen.auto_count and chosen.error_upper_bound is not None else 0.0
    bounded = (chosen.total - chosen.auto_count) * per_label + bound * chosen.auto_count * per_error
    return {"cost_routing_per_item": bill.routing / n, "cost_routing_bound_per_item": bounded / n,
            "cost_manual_per_item": bill.manual / n, "cost_automation_per_item": bill.automation / n}


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
