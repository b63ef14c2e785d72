"""Routing and stopping on the benchmark datasets: measured, not assumed.

For each dataset and seed, a margin loop runs to its budget (simulation). Then:
- routing: the final model's threshold is calibrated for epsilon = 2% (Clopper-Pearson, 95%) on one half of
  the held-out rows and applied to the other half (a fresh split), against the fixed rules hi = 0.70 and
  hi = 0.95: share of traffic automated and the realized error among the auto-accepted items;
- stopping: the round at which each rule would have fired (stabilizing predictions, kappa >= 0.99 over 3
  rounds; break-even with 1 per label and VALUE_PER_POINT per accuracy point) and the accuracy given up by
  stopping there instead of at the budget.

Run: .venv/bin/python benchmarks/routing_stopping.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from al_loop.benchmark import load_benchmark
from al_loop.decisions import stop_rule_fired
from al_loop.loop import run_loop
from al_loop.model import build_estimator, fit
from al_loop.routing import apply, calibrate
from al_loop.workspace import prepare

REPO = Path(__file__).resolve().parents[1]
EPSILON, LEVEL = 0.02, 0.95
VALUE_PER_POINT = 20.0  # what one accuracy point is worth, in label costs (break-even rule)


def _routing_rows(dataset: str, seed: int, config, workspace, labels: dict[str, str]) -> list[dict]:
    model = fit(build_estimator(config.model, seed), workspace.x_pool[workspace.rows(list(labels))],
                np.array(list(labels.values())), workspace.classes)
    proba = model.predict_proba(workspace.x_test)
    confidence = proba.max(axis=1)
    correct = np.asarray(workspace.classes, dtype=object)[proba.argmax(axis=1)] == np.asarray(
        workspace.splits.test.labels, dtype=object)
    half = np.random.default_rng([seed, 99]).permutation(len(confidence))
    calib, fresh = half[: len(half) // 2], half[len(half) // 2:]
    chosen = calibrate(confidence[calib], correct[calib], EPSILON, LEVEL)
    rows = []
    for name, hi in (("calibrated ε=2%", chosen.hi), ("fixed 0.70", 0.70), ("fixed 0.95", 0.95)):
        measured = apply(confidence[fresh], correct[fresh], hi, LEVEL)
        realized = measured.auto_errors / measured.auto_count if measured.auto_count else 0.0
        rows.append({"dataset": dataset, "seed": seed, "rule": name, "hi": min(hi, 1.0),
                     "share_automated": measured.share_automated, "realized_error": realized,
                     "keeps_2pct": realized <= EPSILON})
    return rows


def _stopping_rows(dataset: str, seed: int, config, rounds) -> list[dict]:
    """Where each rule of al_loop.decisions.stop_rule_fired would have stopped this run."""
    history = [r.metrics for r in rounds if r.n_labels and "accuracy" in r.metrics]
    labels = [r.n_labels for r in rounds if r.n_labels and "accuracy" in r.metrics]
    final = history[-1]["accuracy"]
    rows = []
    for rule in ("break_even", "stabilizing"):
        ruled = config.model_copy(update={"stopping": config.stopping.model_copy(update={"rule": rule})})
        at = next((i for i in range(1, len(history) + 1) if stop_rule_fired(ruled, history[:i])), None)
        if at is not None:
            rows.append({"dataset": dataset, "seed": seed, "rule": rule, "labels_at_stop": labels[at - 1],
                         "accuracy_at_stop": history[at - 1]["accuracy"],
                         "accuracy_given_up": final - history[at - 1]["accuracy"]})
    rows.append({"dataset": dataset, "seed": seed, "rule": "budget", "labels_at_stop": labels[-1],
                 "accuracy_at_stop": final, "accuracy_given_up": 0.0})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    _, configs = load_benchmark(REPO / "configs" / "benchmark.yaml")
    routing, stopping = [], []
    with tempfile.TemporaryDirectory() as folder:
        for name, base in configs.items():
            for seed in range(args.seeds):
                config = base.with_overrides(strategy="margin", seed=seed).model_copy(
                    update={"output_dir": Path(folder) / name})
                config.costs.per_accuracy_point = VALUE_PER_POINT
                config.tracking.uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
                workspace = prepare(config)
                result = run_loop(config, workspace=workspace)
                from al_loop.ledger import Ledger

                with Ledger.open(result.run_dir / "ledger.sqlite") as ledger:
                    labels = ledger.labels()
                routing += _routing_rows(name, seed, config, workspace, labels)
                stopping += _stopping_rows(name, seed, config, result.rounds)
                print(f"done {name} seed {seed}", flush=True)
    route_table = (pd.DataFrame(routing).groupby(["dataset", "rule"], sort=False)
                   .agg(hi=("hi", "mean"), share_automated=("share_automated", "mean"),
                        realized_error=("realized_error", "mean"), max_realized_error=("realized_error", "max"),
                        seeds_within_2pct=("keeps_2pct", "sum")).reset_index())
    stop_table = (pd.DataFrame(stopping).groupby(["dataset", "rule"], sort=False)
                  .agg(seeds_fired=("seed", "count"), labels_at_stop=("labels_at_stop", "mean"),
                       accuracy_at_stop=("accuracy_at_stop", "mean"),
                       accuracy_given_up=("accuracy_given_up", "mean")).reset_index())
    print(f"\nRouting (final margin model; threshold on half the held-out rows, measured on the other half), "
          f"{args.seeds} seeds\n")
    print(route_table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else route_table.to_string())
    print(f"\nStopping (margin, budget as in configs/benchmark.yaml; break-even with 1 per label and "
          f"{VALUE_PER_POINT:g} per accuracy point), {args.seeds} seeds\n")
    print(stop_table.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else stop_table.to_string())


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
