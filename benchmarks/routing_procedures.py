"""Routing procedures side by side: how much each automates, and whether it keeps its promise, as labels grow.

For each dataset of configs/benchmark.yaml (one entry per distinct dataset) and seed, models are fitted on growing
random labeled samples of the pool (the labor curve: one model per label count, as a loop's rounds would give; the
routing guarantee does not depend on how the labels were picked). Each model's held-out rows (the test split) are
split in half at random: one half calibrates the threshold, the other is fresh traffic the threshold never saw,
where the share automated and the realized error of the auto-accepted rows are measured.

Rules: `fallback` (al-loop's default, Learn-then-Test with the fallback procedure), `fixed_sequence` (al-loop's
procedure before; stops at its first failure), both for epsilon = 2% at 95%; the fixed rules hi = 0.70 and 0.95.

Run: .venv/bin/python benchmarks/routing_procedures.py [--seeds 10] [--labels 50,100,200,400,800]
Prints two Markdown tables: the rules at the largest label count, and the labor curve (share sent to people).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from al_loop.benchmark import load_benchmark
from al_loop.model import build_estimator, fit
from al_loop.routing import apply, calibrate
from al_loop.workspace import prepare

REPO = Path(__file__).resolve().parents[1]
EPSILON, LEVEL = 0.02, 0.95
DATASETS = ("newsgroups6", "ng20", "rotten_tomatoes", "digits", "breast_cancer", "moons", "checkerboard",
            "imbalanced", "large")


def measure(name: str, config, workspace, seed: int, n_labels: int) -> list[dict]:
    """Every rule's share automated and realized error on fresh held-out rows, for one model."""
    rng = np.random.default_rng([seed, n_labels])
    pool = len(workspace.splits.pool)
    rows = np.sort(rng.choice(pool, size=min(n_labels, pool), replace=False))
    labels = np.asarray(workspace.splits.pool.labels, dtype=object)[rows].astype(str)
    model = fit(build_estimator(config.model, seed), workspace.x_pool[rows], labels, workspace.classes)
    proba = model.predict_proba(workspace.x_test)
    confidence = proba.max(axis=1)
    correct = (np.asarray(workspace.classes, dtype=object)[proba.argmax(axis=1)]
               == np.asarray(workspace.splits.test.labels, dtype=object).astype(str))
    order = rng.permutation(len(confidence))
    calib, fresh = order[: len(order) // 2], order[len(order) // 2:]
    rules = {procedure: calibrate(confidence[calib], correct[calib], EPSILON, LEVEL, procedure=procedure).hi
             for procedure in ("fallback", "fixed_sequence")} | {"fixed 0.70": 0.70, "fixed 0.95": 0.95}
    out = []
    for rule, hi in rules.items():
        measured = apply(confidence[fresh], correct[fresh], hi, LEVEL)
        realized = measured.auto_errors / measured.auto_count if measured.auto_count else 0.0
        out.append({"dataset": name, "seed": seed, "labels": n_labels, "rule": rule,
                    "share_automated": measured.share_automated, "realized_error": realized,
                    "within": realized <= EPSILON, "calibration_rows": len(calib),
                    "accuracy": float(correct.mean())})
    return out


def rules_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and rule, at the largest label count."""
    last = frame[frame["labels"] == frame.groupby("dataset")["labels"].transform("max")]
    return (last.groupby(["dataset", "rule"], sort=False)
            .agg(labels=("labels", "first"), accuracy=("accuracy", "mean"),
                 calibration_rows=("calibration_rows", "first"),
                 automated_mean=("share_automated", "mean"), automated_min=("share_automated", "min"),
                 automated_max=("share_automated", "max"), realized_error_mean=("realized_error", "mean"),
                 realized_error_max=("realized_error", "max"), seeds_within_eps=("within", "sum"),
                 seeds=("seed", "count")).reset_index())


def labor_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Share sent to people per label count (mean, 10th-90th percentile band over seeds), and the jump-backs: a
    seed's curve returning to 100% human after it had automated something."""
    calibrated = frame[frame["rule"].isin(["fallback", "fixed_sequence"])].copy()
    calibrated["human"] = 1.0 - calibrated["share_automated"]
    table = (calibrated.groupby(["dataset", "rule", "labels"], sort=False)["human"]
             .agg(human_mean="mean", human_p10=lambda s: s.quantile(0.1), human_p90=lambda s: s.quantile(0.9))
             .reset_index())
    jumps = []
    for (dataset, rule, _seed), curve in calibrated.sort_values("labels").groupby(["dataset", "rule", "seed"]):
        human = curve["human"].to_numpy()
        jumps.append({"dataset": dataset, "rule": rule,
                      "jump_backs": int(sum(h == 1.0 and (human[:i] < 1.0).any() for i, h in enumerate(human)))})
    counted = pd.DataFrame(jumps).groupby(["dataset", "rule"])["jump_backs"].sum().reset_index()
    return table.merge(counted, on=["dataset", "rule"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--labels", default="50,100,200,400,800", help="label counts of the labor curve")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    counts = [int(v) for v in args.labels.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        _, configs = load_benchmark(REPO / "configs" / "benchmark.yaml", output_dir=folder)
        rows: list[dict] = []
        for name in args.datasets.split(","):
            config = configs[name]
            for seed in range(args.seeds):
                workspace = prepare(config.with_overrides(seed=seed))
                for n_labels in counts:
                    rows += measure(name, config, workspace, seed, n_labels)
            print(f"done {name} (load average {os.getloadavg()[0]:.1f})", flush=True)
    frame = pd.DataFrame(rows)
    print(f"\nRules at the largest label count; epsilon = {EPSILON:.0%}, level {LEVEL:.0%}; {args.seeds} seeds\n")
    print(rules_table(frame).to_markdown(index=False, floatfmt=".3f"))
    print("\nLabor curve: share sent to people (mean, 10th-90th percentile over seeds); jump-backs = seed-rounds "
          "back at 100% human after automating something\n")
    print(labor_table(frame).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
