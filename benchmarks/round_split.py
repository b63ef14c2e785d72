"""Where a round's time goes as the labels grow: select, fit, evaluate, decisions, ledger, MLflow log.

    .venv/bin/python benchmarks/round_split.py [--pool 14000] [--batch 100] [--budget 10000] [--out DIR]

A simulated run (the oracle annotator) of the margin strategy on a synthetic dense pool (make_classification:
--pool rows + 2,000 test rows, 20 features, 5 classes, written as CSV files), LogisticRegression(max_iter=1000),
an initial random set of --batch labels, then batches of --batch up to --budget labels (one MLflow step per
round, sqlite store under --out). `costs.per_accuracy_point` is set, so every round also computes the routing
metrics on the test rows, the stop-set kappa and the break-even estimate (the decisions stage), as a run with
costs does. The model is not logged at the finish (tracking.log_model: false); the finish is not timed.

Each stage is timed with time.perf_counter by wrapping functions from here (al-loop is not changed for it), in
exclusive time: a wrapped call inside another wrapped call counts for its own stage only.
- select: _Loop.queue_next_round (the strategy's scoring and picking, minus the ledger and fit calls in it)
- fit: al_loop.loop.fit (every model fit) and _Loop.model_for (which gathers the labeled rows and labels for it);
  evaluate: al_loop.loop.evaluate (predictions and metrics)
- decisions: _Loop.decisions, _Loop.routing_on, stop_rule_fired, _Loop.quality_metrics (minus the ledger calls)
- ledger: every public method of al_loop.ledger.Ledger; MLflow log: every public method of Tracker
- annotator: the oracle's push and pull; other: the rest of the round (its own loop code)
A round lasts from the end of the previous round (the on_round callback) to its own end, so it includes the stop
check before it (the first round: from its selection on). One short warm-up run (3 rounds, untimed) pays the
imports and first calls, then --repeats timed runs; the table gives, for each of three label counts, the median
over the 3 rounds nearest to it in every timed run (3 x repeats rounds).
The load average (os.getloadavg) is printed before and after: the machine may be shared.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table
from sklearn.datasets import make_classification

STAGES = ("select", "fit", "evaluate", "decisions", "ledger", "mlflow", "annotator", "other")
TARGETS = (100, 1_000, 10_000)
SEED = 0


class Clock:
    """Exclusive time per stage: a wrapped call's time goes to its stage, minus the wrapped calls inside it."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []  # [stage, started, nested seconds]

    def wrap(self, stage: str, function: Any) -> Any:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [stage, time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return function(*args, **kwargs)
            finally:
                self._stack.pop()
                total = time.perf_counter() - frame[1]
                self.spent[stage] += total - frame[2]
                self.calls[stage] += 1
                if self._stack:
                    self._stack[-1][2] += total

        return timed

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        spent, calls = dict(self.spent), dict(self.calls)
        self.spent.clear()
        self.calls.clear()
        return spent, calls


def instrument(clock: Clock, by_method: bool = False) -> None:
    """Wrap al-loop's stages (module attributes and class methods) with the clock."""
    from al_loop import loop as loop_module
    from al_loop.annotators.simulated import SimulatedAnnotator
    from al_loop.ledger import Ledger
    from al_loop.tracking import Tracker

    loop_module.fit = clock.wrap("fit", loop_module.fit)
    loop_module.evaluate = clock.wrap("evaluate", loop_module.evaluate)
    loop_module.stop_rule_fired = clock.wrap("decisions", loop_module.stop_rule_fired)
    cls = loop_module._Loop
    cls.queue_next_round = clock.wrap("select", cls.queue_next_round)
    cls.model_for = clock.wrap("fit", cls.model_for)
    for name in ("decisions", "routing_on", "quality_metrics"):
        setattr(cls, name, clock.wrap("decisions", getattr(cls, name)))
    for owner, stage, names in ((Ledger, "ledger", None), (Tracker, "mlflow", None),
                                (SimulatedAnnotator, "annotator", ("push", "pull"))):
        for name, member in list(vars(owner).items()):
            if (names is not None and name not in names) or name.startswith("_") or not inspect.isfunction(member):
                continue
            if name in ("transaction",):  # a context manager used inside the methods, not a stage of its own
                continue
            setattr(owner, name, clock.wrap(f"{stage}.{name}" if by_method else stage, member))


def write_pool(folder: Path, rows: int) -> tuple[Path, Path]:
    """A synthetic dense pool and test split as CSV files (ids, 20 feature columns, label)."""
    x, y = make_classification(n_samples=rows + 2_000, n_features=20, n_informative=10, n_classes=5,
                               n_clusters_per_class=2, class_sep=0.8, random_state=SEED)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    frame["label"] = [f"c{v}" for v in y]
    pool, test = folder / "pool.csv", folder / "test.csv"
    frame.iloc[:rows].to_csv(pool, index=False)
    frame.iloc[rows:].to_csv(test, index=False)
    return pool, test


def run(folder: Path, pool_rows: int, batch: int, budget: int, clock: Clock) -> list[dict[str, Any]]:
    """One simulated run; returns one record per round: labels, seconds, stage seconds and ledger calls. The first
    round is timed from its selection on (the MLflow run's start and its inputs are not part of a round)."""
    from al_loop.config import load_config
    from al_loop.loop import _Loop, run_loop

    pool, test = write_pool(folder, pool_rows)
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "dataset": {"path": str(pool), "test_path": str(test), "id_column": "id", "label_column": "label",
                    "feature_columns": [f"f{i}" for i in range(20)]},
        "model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}},
        "loop": {"strategy": "margin", "initial_strategy": "random", "batch_size": batch, "initial_size": batch,
                 "budget": budget},
        "costs": {"per_accuracy_point": 5.0},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": folder.name, "log_model": False},
        "compute": {"blas_threads": 1},
        "seed": SEED,
        "output_dir": str(folder / "runs"),
    }))
    config = load_config(config_path)
    records: list[dict[str, Any]] = []
    mark = [time.perf_counter()]
    select = _Loop.queue_next_round

    def first_round_starts(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not records:
            clock.take()
            mark[0] = time.perf_counter()
        return select(self, *args, **kwargs)

    def on_round(record: Any) -> None:
        now = time.perf_counter()
        spent, calls = clock.take()
        methods = {k: v for k, v in spent.items() if "." in k}
        for key, value in methods.items():  # --by-method: the stage is the sum of its methods
            stage = key.split(".")[0]
            spent[stage] = spent.get(stage, 0.0) + value
            calls[stage] = calls.get(stage, 0) + calls.pop(key)
        for key in methods:
            del spent[key]
        total = now - mark[0]
        spent["other"] = total - sum(spent.values())
        records.append({"round": record.round, "labels": int(record.n_labels or 0), "seconds": total,
                        "stages": spent, "ledger_calls": calls.get("ledger", 0), "methods": methods})
        mark[0] = time.perf_counter()

    _Loop.queue_next_round = first_round_starts
    try:
        run_loop(config, on_round=on_round)
    finally:
        _Loop.queue_next_round = select
    return records


def nearest(runs: list[list[dict[str, Any]]], target: int) -> list[dict[str, Any]]:
    """The 3 rounds nearest to a label count, of every run."""
    return [r for records in runs for r in sorted(records, key=lambda r: (abs(r["labels"] - target), r["labels"]))[:3]]


def summarize(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """For each target label count, the medians over the 3 rounds nearest to it in every run."""
    rows = []
    for target in TARGETS:
        near = sorted(nearest(runs, target), key=lambda r: r["labels"])
        row: dict[str, Any] = {"labels": f"{near[0]['labels']:,}-{near[-1]['labels']:,}",
                               "round": statistics.median(r["seconds"] for r in near) * 1000,
                               "ledger_calls": statistics.median(r["ledger_calls"] for r in near)}
        for stage in STAGES:
            row[stage] = statistics.median(r["stages"].get(stage, 0.0) for r in near) * 1000
        row["bookkeeping"] = row["round"] - row["fit"] - row["evaluate"]
        rows.append(row)
    return rows


def print_methods(console: Console, runs: list[list[dict[str, Any]]]) -> None:
    names = sorted({name for records in runs for r in records for name in r["methods"]})
    table = Table(title="Time per method (ms, median of the 3 rounds nearest each label count, every run)")
    table.add_column("method")
    near_rounds = [nearest(runs, t) for t in TARGETS]
    for target in TARGETS:
        table.add_column(f"~{target:,}", justify="right")
    for name in names:
        table.add_row(name, *(f"{statistics.median(r['methods'].get(name, 0.0) for r in near) * 1000:.2f}"
                              for near in near_rounds))
    console.print(table)


COLUMNS = [("labels", "labels (3 rounds)"), ("round", "round ms"), ("select", "select"), ("fit", "fit"),
           ("evaluate", "evaluate"), ("decisions", "decisions"), ("ledger", "ledger"), ("mlflow", "MLflow log"),
           ("annotator", "annotator"), ("other", "other"), ("bookkeeping", "round - fit - evaluate"),
           ("ledger_calls", "ledger calls")]


def cell(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=14_000, help="pool rows (> budget)")
    parser.add_argument("--batch", type=int, default=100, help="initial set and batch size")
    parser.add_argument("--budget", type=int, default=10_000, help="labels at the last round")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (after one short warm-up run)")
    parser.add_argument("--by-method", action="store_true", help="also print the ledger's and MLflow's time "
                        "per method (ms, median of the 3 rounds nearest each label count)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()
    if args.pool <= args.budget:
        parser.error("--pool must be larger than --budget")
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.out or Path(temporary)
        for name in ("warm-up", *(f"run-{i}" for i in range(args.repeats))):
            (folder / name).mkdir(parents=True, exist_ok=True)
        clock = Clock()
        instrument(clock, args.by_method)
        run(folder / "warm-up", args.pool, args.batch, 3 * args.batch, clock)  # imports, caches, first calls
        runs = [run(folder / f"run-{i}", args.pool, args.batch, args.budget, clock) for i in range(args.repeats)]
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()
    rows = summarize(runs)
    console = Console(width=200)
    table = Table(title=f"Round time split (ms, median of the 3 rounds nearest each label count in each of "
                        f"{args.repeats} runs), pool {args.pool:,}, batch {args.batch}")
    for _, title in COLUMNS:
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(*(cell(row[key]) for key, _ in COLUMNS))
    console.print(table)
    if args.by_method:
        print_methods(console, runs)
    first, last = rows[0], rows[-1]
    ratio = last["bookkeeping"] / first["bookkeeping"]
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"load average {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} before, "
               f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} after; {args.repeats} runs of "
               f"{len(runs[0])} rounds in {elapsed:.0f} s")
    print(f"\nround - fit - evaluate at {last['labels']} labels / at {first['labels']}: {ratio:.2f}x")
    print(machine)
    print("\nMarkdown:\n")
    print("| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + "|".join("---:" for _ in COLUMNS) + "|")
    for row in rows:
        print("| " + " | ".join(cell(row[key]) for key, _ in COLUMNS) + " |")
    print(f"\nCommand: `.venv/bin/python benchmarks/round_split.py{''.join(' ' + a for a in sys.argv[1:])}`; "
          f"{machine}; bookkeeping ratio {ratio:.2f}x.")


if __name__ == "__main__":
    main()
