"""Routing keeps its promise or says it cannot (issue 17): a model routes only with the held-out rows of its own
split, "nothing certified" never reads as perfect, route metrics sit at the model's step, a fixed threshold beyond
epsilon is flagged, and calibration uses every paid label except the ones the model trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from al_loop.annotators.base import Annotation, PullResult
from al_loop.cli import app
from al_loop.clock import utc_now
from al_loop.config import Config, load_config
from al_loop.ledger import Ledger
from al_loop.loop import run_loop
from al_loop.route import route
from al_loop.tracking import Tracker
from al_loop.workspace import prepare


def _traffic(config: Config, tmp_path: Path, rows: slice, name: str = "traffic") -> tuple[Path, dict[str, str]]:
    """Pool rows of the config's split under new ids (routed traffic), and their true labels."""
    pool = prepare(config).splits.pool
    ids = [f"{name}{i}" for i in range(rows.start, rows.stop)]
    path = tmp_path / f"{name}-{rows.start}.csv"
    pool.inputs.iloc[rows].assign(id=ids).to_csv(path, index=False)
    return path, dict(zip(ids, (str(v) for v in np.asarray(pool.labels, dtype=object)[rows]), strict=True))


def _route(config_path: Path, traffic: Path, *options: str):
    return CliRunner().invoke(app, ["route", str(config_path), "--input", str(traffic), *options])


def _history(config: Config, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of a metric, oldest first."""
    history = MlflowClient(config.tracking_uri).get_metric_history(run_id, key)
    return [(m.step, m.value) for m in sorted(history, key=lambda m: (m.timestamp, m.step))]


def _ledger(config: Config) -> Path:
    return config.output_dir / config.run_name / "ledger.sqlite"


def _review(config: Config, truth: dict[str, str]) -> None:
    """People answer routed items (what a pull of their review tasks records)."""
    with Ledger.open(_ledger(config)) as ledger:
        ledger.record_pull(PullResult(annotations=[Annotation(example_id=e, label=label, annotator="reviewer",
                                                              created_at=utc_now()) for e, label in truth.items()]))


# --- item 1: a model of another seed's run -----------------------------------------------------------------------

def test_route_refuses_a_model_of_another_seed_and_seed_picks_that_run(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30})
    config = load_config(path)
    mine = run_loop(config)
    other = run_loop(config.with_overrides(seed=1))
    traffic, _ = _traffic(config, tmp_path, slice(0, 5))

    refused = _route(path, traffic, "--run-id", other.run_id)
    assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit), refused.output
    text = " ".join(refused.output.split())
    assert f"--run-id {other.run_id} is the model of run margin-seed1" in text
    assert "seed 1" in text and "this config's run margin-seed0 (seed 0)" in text
    assert "add --seed 1 --strategy margin" in text, "the message says how to route with that run"
    alias = _route(path, traffic, "--model", f"{config.tracking.experiment}@margin-seed1")
    assert alias.exit_code == 2 and "is the model of run margin-seed1" in alias.output

    for options in (("--seed", "1", "--run-id", other.run_id), ("--seed", "1"), ("--strategy", "margin")):
        routed = _route(path, traffic, *options)
        assert routed.exit_code == 0, routed.output
        expected = mine.run_id if options == ("--strategy", "margin") else other.run_id
        assert f"model of run {expected}" in routed.output


# --- item 2: nothing certified ---------------------------------------------------------------------------------

def test_nothing_certified_says_why_and_logs_no_error_bound(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30}, routing={"epsilon": 0.001})
    config = load_config(path)
    result = run_loop(config)
    assert _history(config, result.run_id, "route_error_bound") == [], "no bound is logged when nothing is automated"
    assert {v for _, v in _history(config, result.run_id, "route_certified")} == {0.0}
    assert {v for _, v in _history(config, result.run_id, "route_share_automated")} == {0.0}

    traffic, _ = _traffic(config, tmp_path, slice(0, 5))
    routed = _route(path, traffic)
    assert routed.exit_code == 0, routed.output
    text = " ".join(routed.output.split())
    needed = route(config, traffic).threshold.needed_rows
    assert needed > 540
    assert "nothing could be certified, every item goes to review" in text
    assert f"needs at least {needed} auto-accepted held-out rows, all correct, and there are only 540 held-out" in text
    assert "evaluation.size" in text and "raise routing.epsilon" in text and "routing.confidence_level" in text
    assert "0.00%" not in text and "hi = 1.0000" not in text
    assert _history(config, result.run_id, "routed_error_bound") == []
    assert {v for _, v in _history(config, result.run_id, "routed_certified")} == {0.0}


# --- item 3: the step of route metrics, repeated routes, the bound's name ----------------------------------------

def test_route_metrics_sit_at_the_models_label_count_and_repeated_routes_do_not_pile_up(write_config,
                                                                                         tmp_path: Path) -> None:
    config = load_config(write_config(loop={"budget": 30}, routing={"epsilon": 0.3}))
    result = run_loop(config)
    last = result.rounds[-1].metrics
    assert last["route_certified"] == 1.0 and "route_errors_per_1000_bound" in last
    assert "route_expected_errors_per_1000" not in last, "an upper bound is not named an expectation"

    first, _ = _traffic(config, tmp_path, slice(0, 5), "a")
    second, _ = _traffic(config, tmp_path, slice(5, 12), "b")
    routes = [route(config, first), route(config, second), route(config, first)]  # the last re-routes the same ids
    items = _history(config, result.run_id, "routed_items")
    assert [step for step, _ in items] == [30, 30, 30], "logged at the step of the model's 30 labels, not step 0"
    assert [value for _, value in items] == [5.0, 12.0, 12.0], "running totals over the ledger's routed items"
    auto = sum(r.auto for r in routes[:2])
    assert _history(config, result.run_id, "routed_share_automated")[-1] == (30, auto / 12)
    assert not [m for m in MlflowClient(config.tracking_uri).get_run(result.run_id).data.metrics
                if m.startswith("routed_") and _history(config, result.run_id, m)[0][0] != 30]


# --- item 4: a fixed threshold beyond epsilon ----------------------------------------------------------------------

def test_a_fixed_threshold_beyond_epsilon_is_flagged_beside_its_costs(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30}, routing={"hi": 0.3, "epsilon": 0.001})
    config = load_config(path)
    result = run_loop(config)
    last = result.rounds[-1].metrics
    assert last["route_share_automated"] > 0.5
    assert last["route_within_epsilon"] == 0.0 and last["route_certified"] == 0.0
    assert last["route_error_bound"] > 0.001 and last["route_realized_error"] > 0
    assert last["cost_routing_bound_per_item"] >= last["cost_routing_per_item"]

    traffic, _ = _traffic(config, tmp_path, slice(0, 5))
    routed = _route(path, traffic)
    assert routed.exit_code == 0, routed.output
    assert "(fixed routing.hi)" in routed.output and "OUTSIDE the guarantee" in routed.output
    assert _history(config, result.run_id, "routed_within_epsilon")[-1] == (30, 0.0)


# --- item 5: calibration rows: every paid label, never a training row ---------------------------------------------

def _trained(config: Config, run_id: str) -> frozenset[str]:
    """Every row the run's final model may have trained on."""
    from al_loop.route import find_run_model, trained_ids  # imported here: the other tests run without them

    recorded = find_run_model(Tracker(config.tracking_uri, config.tracking.experiment), run_id,
                                             config.output_dir)
    return trained_ids(recorded)


def test_calibration_grows_with_paid_labels_and_never_holds_a_training_row(write_config, tmp_path: Path) -> None:
    config = load_config(write_config(loop={"budget": 40}, evaluation={"size": 40}, routing={"epsilon": 0.1}))
    result = run_loop(config)
    assert result.rounds[-1].metrics["route_calibration_rows"] == 40 + 540, "evaluation labels and the test split"

    first, truth = _traffic(config, tmp_path, slice(0, 6), "a")
    before = route(config, first).calibration
    assert (before.eval_rows, before.routed_rows, before.test_rows, before.excluded) == (40, 0, 540, 0)
    _review(config, truth)  # reviewed after the final model was fit: that model never saw them
    second, _ = _traffic(config, tmp_path, slice(6, 9), "b")
    grown = route(config, second)
    assert (grown.calibration.routed_rows, len(grown.calibration.ids)) == (6, 586)
    assert grown.threshold.total == 586
    assert not set(grown.calibration.ids) & _trained(config, result.run_id)

    extended = config.model_copy(update={"loop": config.loop.model_copy(update={"budget": 50})})
    again = run_loop(extended)  # the next model trains on the reviewed items: they leave calibration
    assert again.rounds[-1].metrics["route_calibration_rows"] == 580
    trained = _trained(extended, again.run_id)
    assert set(truth) <= trained
    after = route(extended, second).calibration
    assert (after.routed_rows, after.excluded, len(after.ids)) == (0, 6, 580)
    with Ledger.read_only(_ledger(extended)) as ledger:
        assert set(ledger.labels()) <= trained
        assert not set(after.ids) & (set(ledger.labels()) | set(truth))


def test_a_model_of_another_strategy_never_calibrates_on_its_training_rows(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 60, "batch_size": 20}, evaluation={"size": 300}, routing={"epsilon": 0.1})
    config = load_config(path)
    run_loop(config)
    other = load_config(write_config(loop={"budget": 60, "batch_size": 20, "strategy": "random"}))
    theirs = run_loop(other)  # same seed and split, no evaluation set: it trained on some of this run's eval rows
    trained = _trained(other, theirs.run_id)
    with Ledger.read_only(_ledger(config)) as ledger:
        overlap = set(ledger.labels(purpose="eval")) & trained
    assert overlap, "the setup has teeth: the other model trained on evaluation rows of this run"
    traffic, _ = _traffic(config, tmp_path, slice(0, 5))
    routed = route(config, traffic, run_id=theirs.run_id)
    assert routed.calibration.excluded == len(overlap) and routed.calibration.eval_rows == 300 - len(overlap)
    assert not set(routed.calibration.ids) & trained
    assert pd.read_csv(routed.decisions)["id"].tolist() == [f"traffic{i}" for i in range(5)]
