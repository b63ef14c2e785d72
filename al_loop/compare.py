"""Compare strategies in simulation: one parent MLflow run, a child run per (strategy, seed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from al_loop import __version__
from al_loop.config import STRATEGIES, Config, EvaluationConfig, SimulatedAnnotatorConfig
from al_loop.curves import aubc, is_missing, labels_to_target, mean_curve, speed_up, target_key
from al_loop.errors import AlLoopError, ConfigError
from al_loop.ledger import RoundRecord
from al_loop.loop import LoopResult, run_loop
from al_loop.model import build_estimator, evaluate, fit
from al_loop.plots import plot_mean_curves
from al_loop.tracking import Tracker
from al_loop.workspace import Workspace, prepare

OnChild = Callable[[str, int, RoundRecord], None]


@dataclass(frozen=True)
class Comparison:
    """The outcome of a comparison: parent run, reference accuracy, the table and the curves plot."""

    parent_run_id: str
    folder: Path
    full_pool_accuracy: float
    table: pd.DataFrame
    plot: Path
    results: dict[str, list[LoopResult]]


def full_pool_accuracy(config: Config, workspace: Workspace) -> float:
    """Test accuracy of the model trained on every pool label: the ceiling the curves are measured against."""
    pool, test = workspace.splits.pool, workspace.splits.test
    if pool.labels is None or any(v is None for v in pool.labels) or test is None:
        raise AlLoopError("compare runs in simulation: it needs a label for every pool row and held-out test rows")
    model = fit(build_estimator(config.model, config.seed), workspace.x_pool, pool.labels, workspace.classes)
    return evaluate(model, workspace.x_test, test.labels)["accuracy"]


def _parse_strategies(strategies: Sequence[str]) -> list[str]:
    names = [s.strip() for s in strategies if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise ConfigError(f"unknown strategy {unknown or names}; choose from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"strategies listed twice: {names}")
    return names


def compare(config: Config, strategies: Sequence[str] | None = None, seeds: int | None = None,
            on_round: OnChild | None = None) -> Comparison:
    """Run every strategy for `seeds` seeds (config.seed, config.seed + 1, ...) and summarize.

    Always in simulation: the children answer from the label column (the oracle), whatever the annotator
    of the config, and are measured on the held-out test rows.

    Resumable like a single run: re-running the same comparison continues unfinished children.
    """
    names = _parse_strategies(strategies or config.compare.strategies)
    n_seeds = seeds or config.compare.seeds
    if n_seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    seed_list = [config.seed + i for i in range(n_seeds)]
    key = hashlib.sha256(json.dumps([config.identity(), config.loop.budget, config.loop.max_rounds, names,
                                     seed_list]).encode()).hexdigest()[:10]
    folder = config.output_dir / f"compare-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(config.tracking_uri, config.tracking.experiment)
    parent_id = _parent_run(tracker, folder, config, names, seed_list)

    results: dict[str, list[LoopResult]] = {name: [] for name in names}
    reference: list[float] = []
    workspaces: dict[int, Workspace] = {}
    for seed in seed_list:
        # The test split depends on the seed unless a test file is given; features are shared otherwise.
        cache_key = seed if config.dataset.test_path is None else 0
        if cache_key not in workspaces:
            workspaces[cache_key] = prepare(config.with_overrides(seed=seed))
        workspace = workspaces[cache_key]
        reference.append(full_pool_accuracy(config.with_overrides(seed=seed), workspace))
        for name in names:
            child = config.with_overrides(strategy=name, seed=seed).model_copy(
                update={"output_dir": folder, "annotator": SimulatedAnnotatorConfig(),
                        "evaluation": EvaluationConfig()})
            callback = None if on_round is None else (lambda r, n=name, s=seed: on_round(n, s, r))
            results[name].append(run_loop(child, workspace=workspace, parent_run_id=parent_id, on_round=callback))

    full = float(np.mean(reference))
    table = summarize(results, full, config.compare.targets)
    plot = plot_mean_curves({n: mean_curve([r.curve for r in rs]) for n, rs in results.items()},
                            folder / "learning_curves.png",
                            f"{config.dataset_label}: mean test accuracy over {n_seeds} seed(s) (band: ±1 sd)",
                            reference=full)
    _log_parent(tracker, parent_id, folder, table, plot, full)
    return Comparison(parent_run_id=parent_id, folder=folder, full_pool_accuracy=full, table=table, plot=plot,
                      results=results)


def summarize(results: dict[str, list[LoopResult]], full_accuracy: float, targets: Sequence[float]
              ) -> pd.DataFrame:
    """One row per strategy: final accuracy, AUBC (mean and sd over seeds), labels to each target
    (on the mean curve, None if never reached) and the speed-up against random."""
    rows = []
    for name, runs in results.items():
        curves = [r.curve for r in runs]
        steps, mean, _ = mean_curve(curves)
        aubcs = [aubc(x, y) for x, y in curves]
        finals = [y[-1] for _, y in curves]
        row: dict[str, object] = {"strategy": name, "seeds": len(runs),
                                  "final_accuracy": float(np.mean(finals)), "final_accuracy_sd": float(np.std(finals)),
                                  "aubc": float(np.mean(aubcs)), "aubc_sd": float(np.std(aubcs))}
        for target in targets:
            row[f"labels_to_{target_key(target)}"] = labels_to_target(steps, mean, target * full_accuracy)
        rows.append(row)
    table = pd.DataFrame(rows)
    if "random" in results:
        baseline = table.set_index("strategy").loc["random"]
        for target in targets:
            column = f"labels_to_{target_key(target)}"
            table[f"speedup_{target_key(target)}"] = [speed_up(baseline[column], v) for v in table[column]]
    return table


def _parent_run(tracker: Tracker, folder: Path, config: Config, names: list[str], seeds: list[int]) -> str:
    return tracker.parent_run(
        folder / "parent_run_id", f"compare-{config.dataset_label}",
        tags={"dataset": config.dataset_label, "al_loop.kind": "compare", "strategies": ",".join(names),
              "seeds": ",".join(map(str, seeds)), "al_loop.version": __version__},
        params=config.flat_params() | {"compare.strategies": ",".join(names), "compare.seeds": str(len(seeds))})


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (hand-written to avoid a `tabulate` dependency for one table)."""
    def cell(value: object) -> str:
        if is_missing(value):
            return "not reached"
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _log_parent(tracker: Tracker, run_id: str, folder: Path, table: pd.DataFrame, plot: Path, full: float) -> None:
    csv = folder / "comparison.csv"
    table.to_csv(csv, index=False)
    (folder / "comparison.md").write_text(to_markdown(table))
    metrics = {"full_pool_accuracy": full}
    for row in table.to_dict("records"):
        for column, value in row.items():
            if column != "strategy" and isinstance(value, int | float) and value is not None and not np.isnan(value):
                metrics[f"{column}.{row['strategy']}"] = float(value)
    tracker.log_metrics(run_id, metrics)
    for path in (csv, folder / "comparison.md", plot):
        tracker.log_artifact(run_id, path)
    tracker.end_run(run_id)
