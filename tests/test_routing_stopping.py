"""Routing thresholds keep their error bound where the truth is known; stopping rules fire on a flat curve
and not on a rising one."""

from __future__ import annotations

import numpy as np
import pytest

from al_loop.routing import apply, calibrate, clopper_pearson_upper, costs
from al_loop.stopping import agreement, break_even, fit_curve, stabilized


def test_clopper_pearson_matches_known_values() -> None:
    assert clopper_pearson_upper(0, 10, 0.95) == pytest.approx(1 - 0.05 ** (1 / 10))
    assert clopper_pearson_upper(0, 149, 0.95) < 0.02 < clopper_pearson_upper(0, 147, 0.95)
    assert clopper_pearson_upper(3, 100, 0.95) == pytest.approx(0.0757, abs=1e-3)  # the exact binomial bound
    assert clopper_pearson_upper(0, 0, 0.95) == 1.0


def _traffic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mostly confident predictions (confidence 0.5 + 0.5 Beta(6, 1)); calibrated: P(correct) = confidence."""
    confidence = 0.5 + 0.5 * rng.beta(6, 1, n)
    return confidence, rng.random(n) < confidence


def test_the_calibrated_threshold_keeps_its_promise_on_fresh_data_over_many_seeds() -> None:
    epsilon, level, violations, shares = 0.02, 0.9, 0, []
    truth = _traffic(1_000_000, np.random.default_rng(12345))
    ideal = max(np.mean(truth[0] >= t) for t in np.linspace(0.5, 1, 501)
                if (~truth[1][truth[0] >= t]).mean() <= epsilon)  # the best share an oracle could automate
    for seed in range(200):
        rng = np.random.default_rng(seed)
        chosen = calibrate(*_traffic(3000, rng), epsilon=epsilon, level=level)
        confidence, correct = _traffic(200_000, rng)  # the truth: a large fresh sample of the same traffic
        auto = confidence >= chosen.hi
        realized = (~correct[auto]).mean() if auto.any() else 0.0
        violations += realized > epsilon
        shares.append(auto.mean())
    assert violations / 200 <= 1 - level, f"the bound failed in {violations} of 200 calibrations"
    share = np.mean(shares)
    assert share > 0.4 * ideal, f"and it still automates a useful share ({share:.2f} vs {ideal:.2f})"


def test_a_model_too_poor_for_the_target_automates_nothing() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 1000)
    chosen = calibrate(confidence, rng.random(1000) < 0.7, epsilon=0.02)
    assert chosen.auto_count == 0 and chosen.hi > 1.0


def test_apply_and_costs_count_what_each_policy_pays() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.6])
    correct = np.array([True, True, False, True, False])
    at = apply(confidence, correct, hi=0.9)
    assert (at.auto_count, at.auto_errors, at.share_automated) == (3, 1, 0.6)
    bill = costs(at, all_errors=2, per_label=1.0, per_error=10.0)
    assert (bill.routing, bill.manual, bill.automation) == (2 * 1.0 + 1 * 10.0, 5.0, 20.0)


def test_route_metrics_say_when_nothing_is_certified_and_when_a_rule_breaks_epsilon(write_config) -> None:
    from al_loop.api import load_config
    from al_loop.decisions import cost_metrics, threshold_metrics

    config = load_config(write_config(routing={"epsilon": 0.02}))
    confidence = np.linspace(0.5, 1.0, 100)
    nothing = calibrate(confidence, np.ones(100, dtype=bool), epsilon=0.02)  # 100 rows cannot certify 2% at 95%
    metrics = threshold_metrics(config, nothing)
    assert (metrics["route_certified"], metrics["route_share_automated"]) == (0.0, 0.0)
    assert "route_error_bound" not in metrics and "route_errors_per_1000_bound" not in metrics
    assert metrics["route_needed_rows"] == nothing.needed_rows > 100
    assert cost_metrics(config, nothing, 0)["cost_routing_per_item"] == 1.0, "everything goes to people"

    fixed = load_config(write_config(routing={"hi": 0.6, "epsilon": 0.02}))
    loose = apply(confidence, confidence > 0.7, hi=0.6)  # automates rows that are wrong up to 0.7
    metrics = threshold_metrics(fixed, loose) | cost_metrics(fixed, loose, int((confidence <= 0.7).sum()))
    assert metrics["route_within_epsilon"] == 0.0 and metrics["route_certified"] == 0.0
    assert metrics["route_error_bound"] > 0.02 and metrics["route_realized_error"] == loose.auto_errors / 80
    assert metrics["cost_routing_bound_per_item"] > metrics["cost_routing_per_item"]


def test_stabilizing_predictions_fires_after_a_window_of_agreement() -> None:
    assert agreement(["a", "b", "a"], ["a", "b", "a"]) == 1.0
    assert agreement(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == pytest.approx(-1.0)
    assert not stabilized([0.995, 0.999])
    assert stabilized([0.5, 0.995, 0.999, 1.0])
    assert not stabilized([0.995, 0.98, 1.0, 1.0])


def test_break_even_says_stop_on_a_flat_curve_and_go_on_a_rising_one() -> None:
    labels = np.arange(20, 420, 20, dtype=float)
    rising = 0.95 - 2.0 * labels ** -0.5  # still gaining about 0.2 points per 20 labels at 400
    flat = 0.95 - 30.0 * labels ** -1.5   # gaining almost nothing by 400
    for curve, should_pay in ((rising, True), (flat, False)):
        fitted = fit_curve(labels, curve)
        assert fitted is not None
        verdict = break_even(fitted, labels[-1], batch=20, per_label=1.0, per_point=100.0)
        assert verdict.pays is should_pay, (curve[-3:], verdict)
    assert fit_curve([10, 20], [0.5, 0.6]) is None


def test_each_round_logs_routing_stop_kappa_and_break_even_and_the_rule_stops_the_loop(write_config) -> None:
    from al_loop.api import load_config, run_loop

    config = load_config(write_config(loop={"budget": 400, "batch_size": 20},
                                      stopping={"rule": "stabilizing", "kappa": 0.95, "window": 2},
                                      costs={"per_label": 1.0, "per_error": 20.0, "per_accuracy_point": 5.0}))
    result = run_loop(config)
    assert result.stopped_because.startswith("stabilizing predictions"), result.stopped_because
    last = result.rounds[-1].metrics
    assert result.rounds[-1].n_labels < 400, "it stopped before the budget"
    assert last["stop_kappa"] >= 0.95 and result.rounds[-2].metrics["stop_kappa"] >= 0.95
    assert 0 <= last["route_share_automated"] <= 1 and last["route_within_epsilon"] == 1.0
    if last["route_certified"]:
        assert last["route_error_bound"] <= 0.02 + 1e-9 and "route_errors_per_1000_bound" in last
    else:
        assert "route_error_bound" not in last and last["route_share_automated"] == 0.0
    assert last["cost_manual_per_item"] == 1.0 and "cost_routing_bound_per_item" in last
    assert {"next_batch_gain", "next_batch_value", "next_batch_cost"} <= set(last)
    assert "stop_kappa" not in result.rounds[0].metrics, "no predecessor for the first model"


def test_break_even_needs_a_value_per_point(write_config) -> None:
    from al_loop.api import load_config
    from al_loop.errors import ConfigError

    with pytest.raises(ConfigError, match=r"costs\.per_accuracy_point"):
        load_config(write_config(stopping={"rule": "break_even"}))


def test_a_calibrated_model_is_logged_and_loads_back_for_routing(write_config, mlflow_uri: str) -> None:
    from sklearn.calibration import CalibratedClassifierCV

    from al_loop.api import load_config, run_loop
    from al_loop.route import load_model
    from al_loop.tracking import Tracker

    config = load_config(write_config(model={"calibration": "sigmoid"}, loop={"budget": 60}, routing={"epsilon": 0.05}))
    result = run_loop(config)
    pipeline = load_model(Tracker(mlflow_uri, config.tracking.experiment), result.run_id, config.output_dir)
    assert isinstance(pipeline[-1], CalibratedClassifierCV)
    assert "route_share_automated" in result.rounds[-1].metrics
