"""Compare strategies in simulation: a one-dataset benchmark suite (al_loop.benchmark) of the config's loop.

One parent MLflow run and a child run per (strategy, seed), all in the config's MLflow store; the same runner,
summary, parent run and Markdown as the benchmark, with compare's file names and its shorter table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from al_loop.benchmark import BenchmarkConfig, BenchmarkDataset, SeedRun, SuitePlan, run_suite, to_markdown
from al_loop.config import STRATEGIES, Config, EvaluationConfig, SimulatedAnnotatorConfig
from al_loop.errors import ConfigError
from al_loop.ledger import RoundRecord
from al_loop.loop import full_pool_accuracy

OnChild = Callable[[str, int, RoundRecord], None]
OnDone = Callable[[SeedRun], None]

__all__ = ["Comparison", "compare", "full_pool_accuracy", "to_markdown"]


@dataclass(frozen=True)
class Comparison:
    """The outcome of a comparison: parent run, reference accuracy, the table, the curves plot and the runs."""

    parent_run_id: str
    folder: Path
    full_pool_accuracy: float
    table: pd.DataFrame
    plot: Path
    runs: list[SeedRun]
    experiment_id: str = ""


def _parse_strategies(strategies: Sequence[str]) -> list[str]:
    names = [s.strip() for s in strategies if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise ConfigError(f"unknown strategy {unknown or names}; choose from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"strategies listed twice: {names}")
    return names


def compare(config: Config, strategies: Sequence[str] | None = None, seeds: int | None = None,
            on_round: OnChild | None = None, on_done: OnDone | None = None) -> Comparison:
    """Run every strategy for `seeds` seeds (config.seed, config.seed + 1, ...) and summarize.

    Always in simulation: the children answer from the label column (the oracle), whatever the annotator
    of the config, and are measured on the held-out test rows. They log to the config's MLflow store (the
    parent's), their ledgers go to `<output_dir>/compare-<key>/`. `on_done` is called per finished run.

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
    # the children keep the parent's store: with no tracking.uri, the store would follow their output_dir
    tracking = config.tracking.model_copy(update={"uri": config.tracking_uri})
    child = config.model_copy(update={"output_dir": folder, "annotator": SimulatedAnnotatorConfig(),
                                      "evaluation": EvaluationConfig(), "tracking": tracking})
    label = config.dataset_label
    # built without validation: compare allows one seed and a comparison without random, which a suite file does not
    suite = BenchmarkConfig.model_construct(
        id=label, datasets=[BenchmarkDataset.model_construct(name=label, random_budget=None)], strategies=names,
        seeds=n_seeds, first_seed=config.seed, targets=list(config.compare.targets), n_jobs=1,
        ranked_batch_max_pool=config.compute.ranked_batch_max_pool, bootstrap=2000, random_budget_factor=1.0,
        output_dir=config.output_dir, tracking=tracking)
    plan = SuitePlan(kind="compare", folder=folder, run_name=f"compare-{label}", tags={"dataset": label},
                     params=config.flat_params() | {"compare.strategies": ",".join(names),
                                                    "compare.seeds": str(n_seeds)},
                     skip_large=False, table_file="comparison.csv", markdown_file="comparison.md",
                     plot_file="learning_curves.png")
    result = run_suite(suite, {label: child}, plan, on_done=on_done, on_round=on_round)
    return Comparison(parent_run_id=result.parent_run_id, folder=folder,
                      full_pool_accuracy=float(result.table["full_pool_accuracy"].iloc[0]), table=result.table,
                      plot=result.plots[label], runs=result.runs, experiment_id=result.experiment_id)
