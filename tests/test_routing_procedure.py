"""The routing procedure (Learn-then-Test with the fallback procedure): its promise on data with known truth, and
what it buys over the fixed-sequence scan (one early error no longer sends everything back to people)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al_loop.routing import calibrate, clopper_pearson_upper, min_rows

EPSILON, LEVEL = 0.02, 0.95


def _world(rng: np.random.Generator, n: int, slope: float) -> tuple[np.ndarray, np.ndarray]:
    """Confidences skewed to 1, and errors with a known rate: P(wrong | c) = slope * (1 - c)."""
    confidence = 1.0 - rng.beta(0.4, 4.0, n)
    return confidence, rng.random(n) >= slope * (1.0 - confidence)


def _true_error(hi: float, slope: float, rng: np.random.Generator) -> float:
    """The error rate of rows at or above `hi`, on a large fresh sample of the same world."""
    confidence = 1.0 - rng.beta(0.4, 4.0, 400_000)
    kept = confidence >= hi
    return float((slope * (1.0 - confidence[kept])).mean()) if kept.any() else 0.0


@pytest.mark.parametrize("procedure", ["fallback", "fixed_sequence"])
@pytest.mark.parametrize("slope", [0.5, 1.0])
def test_the_promise_holds_in_at_least_the_confidence_level_of_calibrations(procedure: str, slope: float) -> None:
    rng = np.random.default_rng([7, int(slope * 10)])
    broken, automated = 0, []
    for _ in range(300):
        chosen = calibrate(*_world(rng, 1500, slope), EPSILON, LEVEL, procedure=procedure)
        automated.append(chosen.share_automated)
        if chosen.certified and _true_error(chosen.hi, slope, rng) > EPSILON:
            broken += 1
    assert broken / 300 <= 1 - LEVEL + 0.02, f"{procedure}: the promise broke in {broken} of 300 calibrations"
    assert np.mean(automated) > 0.2, "and it automates a useful share"


def test_where_every_threshold_breaks_epsilon_almost_nothing_is_ever_certified() -> None:
    """All nulls true (a flat error rate just above epsilon): any certification is a false one."""
    rng = np.random.default_rng(3)
    false = sum(calibrate(rng.random(2000), rng.random(2000) >= 0.025, EPSILON, LEVEL).certified for _ in range(400))
    assert false / 400 <= 1 - LEVEL


def test_errors_where_the_fixed_sequence_starts_send_everything_to_people_but_not_with_the_fallback() -> None:
    """The labor curve's jump back to 100% human: a few errors among the rows where the fixed sequence starts (here
    its first candidate holds 523 rows) end its scan before it certifies anything; the fallback also starts on the
    cleanest rows and keeps what it certified there."""
    rng = np.random.default_rng(0)
    confidence = np.sort(1.0 - rng.beta(0.4, 6.0, 1200))[::-1]
    correct = np.ones(1200, dtype=bool)
    correct[rng.choice(np.arange(320, 520), 10, replace=False)] = False
    correct[600:][rng.random(600) < 0.05] = False
    fixed = calibrate(confidence, correct, EPSILON, LEVEL, procedure="fixed_sequence")
    fallback = calibrate(confidence, correct, EPSILON, LEVEL)
    assert not fixed.certified
    assert fallback.certified and 0.2 <= fallback.share_automated <= 0.3, fallback
    assert fallback.auto_errors == 0 and fallback.error_upper_bound is not None
    assert fallback.error_upper_bound <= EPSILON


def test_the_fallback_automates_at_least_as_much_as_the_fixed_sequence_on_average() -> None:
    rng = np.random.default_rng(11)
    gains = [calibrate(c, k, EPSILON, LEVEL).share_automated
             - calibrate(c, k, EPSILON, LEVEL, procedure="fixed_sequence").share_automated
             for c, k in (_world(rng, 800, 1.0) for _ in range(200))]
    assert np.mean(gains) > 0, f"mean gain {np.mean(gains):.3f}"


def test_nothing_certified_says_how_many_clean_rows_it_needs() -> None:
    rng = np.random.default_rng(1)
    chosen = calibrate(rng.uniform(0.5, 1.0, 100), np.ones(100, dtype=bool), EPSILON, LEVEL)
    assert not chosen.certified and chosen.error_upper_bound is None and chosen.hi > 1.0
    assert chosen.needed_rows > 100
    n = chosen.needed_rows  # with this few rows the fallback is the fixed sequence, at the full level
    assert clopper_pearson_upper(0, n, LEVEL) <= EPSILON < clopper_pearson_upper(0, n - 1, LEVEL)
    assert calibrate(rng.uniform(0.5, 1.0, 3 * n), np.ones(3 * n, dtype=bool), EPSILON, LEVEL).certified


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 400), st.integers(0, 2**32 - 1), st.sampled_from(["fallback", "fixed_sequence"]))
def test_a_certified_threshold_always_has_its_bound_within_epsilon(n: int, seed: int, procedure: str) -> None:
    rng = np.random.default_rng(seed)
    confidence = rng.random(n)
    correct = rng.random(n) < 0.9 + 0.1 * confidence
    chosen = calibrate(confidence, correct, 0.1, 0.9, procedure=procedure)
    assert chosen.total == n and 0 <= chosen.auto_count <= n
    if chosen.certified:
        assert chosen.error_upper_bound is not None and chosen.error_upper_bound <= 0.1
        assert chosen.auto_count == int((confidence >= chosen.hi).sum())
        assert chosen.auto_errors == int((~correct[confidence >= chosen.hi]).sum())
    else:
        assert chosen.auto_count == 0 and chosen.error_upper_bound is None


def test_an_unknown_procedure_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown routing procedure"):
        calibrate(np.ones(3), np.ones(3, dtype=bool), EPSILON, procedure="bonferroni")
    assert min_rows(EPSILON, LEVEL, error_share=0.0) == 149


def test_the_share_band_covers_the_share_and_narrows_with_rows() -> None:
    from al_loop.routing import Threshold, share_interval

    small = share_interval(Threshold(0.9, 0.5, 0.01, 0, 50, 100), LEVEL)
    large = share_interval(Threshold(0.9, 0.5, 0.01, 0, 5000, 10000), LEVEL)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 5
    assert share_interval(Threshold(1.1, 0.0, None, 0, 0, 100), LEVEL)[0] == 0.0


def test_the_tradeoff_automates_more_as_epsilon_grows() -> None:
    from al_loop.routing import tradeoff

    confidence, correct = _world(np.random.default_rng(5), 2000, 1.0)
    shares = [t.share_automated for _, t in tradeoff(confidence, correct, [0.01, 0.02, 0.05, 0.1], LEVEL)]
    assert shares == sorted(shares) and shares[-1] > shares[0]


def test_route_explain_shows_the_tradeoff_of_the_runs_model_and_routes_nothing(write_config) -> None:
    from typer.testing import CliRunner

    from al_loop.cli import app
    from al_loop.config import load_config
    from al_loop.ledger import Ledger
    from al_loop.loop import run_loop

    path = write_config(loop={"budget": 60}, routing={"epsilon": 0.05})
    config = load_config(path)
    run_loop(config)
    result = CliRunner().invoke(app, ["route", str(path), "--explain"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines() if line.strip().endswith("routing.epsilon")
             or (line.strip()[:1].isdigit() and "%" in line)]
    epsilons = [float(parts[0].rstrip("%")) for parts in lines]
    assert epsilons == sorted(epsilons) and 5.0 in epsilons and len(epsilons) == 6, result.output
    shares = [float(parts[1].rstrip("%")) for parts in lines]
    assert shares == sorted(shares), "a larger epsilon never automates less"
    assert "<- routing.epsilon" in result.output
    with Ledger.open(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        assert not ledger.routed_labels() and not ledger.routed_unpushed(), "--explain alone routes nothing"
    missing = CliRunner().invoke(app, ["route", str(path)])
    assert missing.exit_code == 2 and "give --input" in missing.output


def test_each_round_logs_the_band_of_the_share_sent_to_people(write_config) -> None:
    from al_loop.config import load_config
    from al_loop.loop import run_loop

    config = load_config(write_config(loop={"budget": 60}, costs={"per_accuracy_point": 1.0}))
    routed = [r.metrics for r in run_loop(config).rounds if "route_share_automated" in r.metrics]
    assert len(routed) >= 3
    for metrics in routed:
        assert (metrics["route_share_automated_low"] <= metrics["route_share_automated"]
                <= metrics["route_share_automated_high"])
        assert metrics["route_share_automated_high"] - metrics["route_share_automated_low"] > 0
