"""Benchmark: datasets x strategies x seeds in simulation, measured against random.

Protocol (docs/benchmark.md): a held-out test split never queried; for one seed, the same initial labeled
set for every strategy (the loop's round-0 draw depends only on the seed); batch size, budget, model and
features stated per dataset; paired comparisons over seeds. Each (dataset, strategy, seed) is an ordinary
loop run with its own ledger, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from pydantic import Field, ValidationError, field_validator
from scipy.stats import wilcoxon

from al_loop import __version__
from al_loop.compare import full_pool_accuracy, to_markdown
from al_loop.config import (
    STRATEGIES,
    Config,
    ConfigError,
    TrackingConfig,
    _format_validation_error,
    _resolve,
    _Strict,
    config_from_dict,
    read_yaml,
)
from al_loop.curves import aubc, is_missing, labels_to_target, mean_curve, target_key
from al_loop.loop import run_loop
from al_loop.plots import plot_mean_curves
from al_loop.tracking import Tracker
from al_loop.workspace import prepare


class BenchmarkDataset(_Strict):
    """One dataset of the suite: the config sections of its loop (dataset, features, model, loop)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: dict[str, Any]
    features: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    loop: dict[str, Any] = Field(default_factory=dict)


class BenchmarkConfig(_Strict):
    """The suite: which datasets, strategies and seeds, and how to summarize them."""

    id: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    datasets: list[BenchmarkDataset] = Field(min_length=1)
    strategies: list[str] = Field(default_factory=lambda: list(STRATEGIES))
    seeds: int = Field(10, ge=2)
    first_seed: int = Field(0, ge=0)
    targets: list[float] = Field(default_factory=lambda: [0.90, 0.95, 0.98])
    n_jobs: int = Field(2, ge=1)
    ranked_batch_max_pool: int = Field(5000, gt=0, description="skip ranked_batch on larger pools")
    bootstrap: int = Field(2000, ge=100)
    output_dir: Path = Path("runs/benchmark")
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="al-loop-benchmark"))

    @field_validator("strategies")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
        if "random" not in value:
            raise ValueError("the benchmark measures strategies against random: include 'random'")
        return value


@dataclass(frozen=True)
class SeedRun:
    """One (dataset, strategy, seed) run, summarized."""

    dataset: str
    strategy: str
    seed: int
    steps: np.ndarray
    accuracy: np.ndarray
    full_accuracy: float
    round_seconds: float
    run_id: str


@dataclass(frozen=True)
class BenchmarkResult:
    """The outcome: parent run, folder, per-run summaries, the results table and the plots."""

    parent_run_id: str
    folder: Path
    runs: list[SeedRun]
    table: pd.DataFrame
    plots: dict[str, Path]


def load_benchmark(path: str | Path) -> tuple[BenchmarkConfig, dict[str, Config]]:
    """Read a benchmark YAML; returns the suite and one loop config per dataset (seed set per run)."""
    data, base = read_yaml(path)
    if "dataset" in data and "datasets" not in data:
        raise ConfigError(f"{path} is a loop config (it has `dataset`); al-loop benchmark expects a suite with a "
                          "`datasets` list, like configs/benchmark.yaml. For one config use al-loop compare")
    try:
        suite = BenchmarkConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, str(path))) from None
    suite.output_dir = _resolve(base, suite.output_dir, "output_dir", must_exist=False)
    if suite.tracking.uri is None:
        suite.tracking.uri = f"sqlite:///{suite.output_dir / 'mlflow.db'}"
    configs = {}
    for entry in suite.datasets:
        folder = suite.output_dir / suite.id / entry.name
        sections = {"dataset": entry.dataset, "features": entry.features, "model": entry.model, "loop": entry.loop,
                     "tracking": {**suite.tracking.model_dump(mode="json"), "log_model": False},
                     "output_dir": str(folder)}
        configs[entry.name] = config_from_dict(sections, base, source=f"{path}: datasets[{entry.name}]")
    if len(configs) != len(suite.datasets):
        raise ConfigError(f"{path}: dataset names must be unique")
    return suite, configs


def run_benchmark(path: str | Path, seeds: int | None = None, n_jobs: int | None = None,
                  on_done: Callable[[SeedRun], None] | None = None) -> BenchmarkResult:
    """Run (or resume) the suite, seeds in parallel; log a parent MLflow run with the table and plots."""
    suite, configs = load_benchmark(path)
    if seeds is not None:
        suite.seeds = seeds
    seed_list = list(range(suite.first_seed, suite.first_seed + suite.seeds))
    folder = suite.output_dir / suite.id
    folder.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(suite.tracking.uri or "", suite.tracking.experiment)
    parent = _parent_run(tracker, folder, suite)
    jobs = [delayed(_run_dataset_seed)(configs[d.name], d.name, _strategies_for(suite, configs[d.name]), seed,
                                       parent, suite.id) for d in suite.datasets for seed in seed_list]
    runs: list[SeedRun] = []
    for batch in Parallel(n_jobs=n_jobs or suite.n_jobs, return_as="generator_unordered")(jobs):
        for run in batch:
            runs.append(run)
            if on_done is not None:
                on_done(run)
    runs.sort(key=lambda r: (r.dataset, r.strategy, r.seed))
    table = summarize(runs, suite.targets, suite.bootstrap, seed=suite.first_seed)
    plots = {name: plot_dataset(runs, name, folder / f"curves_{name}.png") for name in configs}
    _log_parent(tracker, parent, folder, table, plots, runs)
    return BenchmarkResult(parent_run_id=parent, folder=folder, runs=runs, table=table, plots=plots)


def _strategies_for(suite: BenchmarkConfig, config: Config) -> list[str]:
    """The suite's strategies, without ranked_batch where the pool is too large for its distance matrices."""
    if "ranked_batch" not in suite.strategies:
        return list(suite.strategies)
    pool_size = len(prepare(config).splits.pool)
    if pool_size <= suite.ranked_batch_max_pool:
        return list(suite.strategies)
    return [s for s in suite.strategies if s != "ranked_batch"]


def _run_dataset_seed(config: Config, dataset: str, strategies: Sequence[str], seed: int, parent: str,
                      benchmark_id: str) -> list[SeedRun]:
    """All strategies for one (dataset, seed), sharing the features (one worker process)."""
    seeded = config.with_overrides(seed=seed)
    workspace = prepare(seeded)
    full = full_pool_accuracy(seeded, workspace)
    tracker = Tracker(seeded.tracking_uri, seeded.tracking.experiment)
    out = []
    for strategy in strategies:
        result = run_loop(seeded.with_overrides(strategy=strategy), workspace=workspace, parent_run_id=parent,
                          extra_tags={"benchmark_id": benchmark_id, "dataset": dataset})
        tracker.log_metrics(result.run_id, {"full_pool_accuracy": full})  # the reference of labels-to-target
        steps, accuracy = result.curve
        seconds = [r.metrics.get("round_seconds", np.nan) for r in result.rounds[1:]]
        out.append(SeedRun(dataset=dataset, strategy=strategy, seed=seed, steps=steps, accuracy=accuracy,
                           full_accuracy=full, round_seconds=float(np.nanmean(seconds)) if seconds else np.nan,
                           run_id=result.run_id))
    return out


# -- statistics ---------------------------------------------------------------------------------------


def summarize(runs: Sequence[SeedRun], targets: Sequence[float], n_boot: int, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, strategy): AUBC, final accuracy, labels to each target share of the full-pool
    accuracy (on the mean curve), speed-up vs random with a paired bootstrap 95% interval over seeds, a
    Wilcoxon signed-rank test of AUBC against random (paired by seed), and seconds per round."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset in sorted({r.dataset for r in runs}):
        mine = [r for r in runs if r.dataset == dataset]
        baseline = {r.seed: r for r in mine if r.strategy == "random"}
        full = float(np.mean([r.full_accuracy for r in baseline.values()]))
        for strategy in _ordered({r.strategy for r in mine}):
            by_seed = {r.seed: r for r in mine if r.strategy == strategy}
            seeds = sorted(set(by_seed) & set(baseline))
            aubcs = np.array([aubc(by_seed[s].steps, by_seed[s].accuracy) for s in seeds])
            random_aubcs = np.array([aubc(baseline[s].steps, baseline[s].accuracy) for s in seeds])
            row: dict[str, Any] = {
                "dataset": dataset, "strategy": strategy, "seeds": len(seeds), "full_pool_accuracy": full,
                "aubc": float(aubcs.mean()), "aubc_sd": float(aubcs.std(ddof=1)) if len(seeds) > 1 else 0.0,
                "aubc_vs_random": float((aubcs - random_aubcs).mean()),
                "wins_vs_random": int((aubcs > random_aubcs).sum()),
                "wilcoxon_p": _wilcoxon(aubcs, random_aubcs),
                "final_accuracy": float(np.mean([by_seed[s].accuracy[-1] for s in seeds])),
                "seconds_per_round": float(np.nanmean([by_seed[s].round_seconds for s in seeds])),
            }
            for target in targets:
                key = target_key(target)
                mine_curve = [(by_seed[s].steps, by_seed[s].accuracy) for s in seeds]
                base_curve = [(baseline[s].steps, baseline[s].accuracy) for s in seeds]
                labels = _labels_to(mine_curve, target * full)
                base_labels = _labels_to(base_curve, target * full)
                row[f"labels_to_{key}"] = labels
                row[f"speedup_{key}"] = None if labels is None or base_labels is None else base_labels / labels
                low, high = _bootstrap_speedup(mine_curve, base_curve, target * full, n_boot, rng)
                row[f"speedup_{key}_low"], row[f"speedup_{key}_high"] = low, high
            rows.append(row)
    return pd.DataFrame(rows)


def _ordered(strategies: set[str]) -> list[str]:
    return [s for s in STRATEGIES if s in strategies]


def _labels_to(curves: list[tuple[np.ndarray, np.ndarray]], target: float) -> float | None:
    steps, mean, _ = mean_curve(curves)
    return labels_to_target(steps, mean, target)


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired AUBCs (None when they never differ)."""
    if len(a) < 2 or np.allclose(a, b):
        return None
    return float(wilcoxon(a, b).pvalue)


def _bootstrap_speedup(mine: list[tuple[np.ndarray, np.ndarray]], base: list[tuple[np.ndarray, np.ndarray]],
                       target: float, n_boot: int, rng: np.random.Generator) -> tuple[float | None, float | None]:
    """2.5 and 97.5 percentiles of random's labels / the strategy's labels to `target`, resampling seeds
    with replacement (the same seeds for both: the comparison stays paired). A resample where a curve never
    reaches the target counts as no speed-up measurable and is left out; None when most are."""
    steps, stacked_mine = _aligned(mine)
    base_steps, stacked_base = _aligned(base)
    picks = rng.integers(0, len(mine), (n_boot, len(mine)))
    labels = _first_reaching(steps, stacked_mine[picks].mean(axis=1), target)
    base_labels = _first_reaching(base_steps, stacked_base[picks].mean(axis=1), target)
    with np.errstate(invalid="ignore"):  # inf / inf where neither curve reaches the target: left out below
        ratios = (base_labels / labels)[np.isfinite(labels) & np.isfinite(base_labels)]
    if len(ratios) < n_boot / 2:
        return None, None
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def _aligned(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves as one (seeds x steps) array on the steps they all have."""
    steps, _, _ = mean_curve(curves)
    return steps, np.array([[dict(zip(x.tolist(), y.tolist(), strict=True))[s] for s in steps] for x, y in curves])


def _first_reaching(steps: np.ndarray, means: np.ndarray, target: float) -> np.ndarray:
    """Per row of mean curves, the first step reaching the target (inf if none): labels_to_target, vectorized."""
    reached = means >= target
    first = reached.argmax(axis=1)
    return np.where(reached.any(axis=1), steps[first], np.inf)


# -- outputs ------------------------------------------------------------------------------------------


def plot_dataset(runs: Sequence[SeedRun], dataset: str, path: Path) -> Path:
    """Mean test accuracy per strategy with a 95% band (normal interval of the mean over seeds)."""
    curves = {}
    mine = [r for r in runs if r.dataset == dataset]
    for strategy in _ordered({r.strategy for r in mine}):
        chosen = [(r.steps, r.accuracy) for r in mine if r.strategy == strategy]
        steps, mean, std = mean_curve(chosen)
        curves[strategy] = (steps, mean, 1.96 * std / np.sqrt(max(len(chosen), 1)))
    full = float(np.mean([r.full_accuracy for r in mine]))
    seeds = len({r.seed for r in mine})
    return plot_mean_curves(curves, path, f"{dataset}: mean test accuracy over {seeds} seeds (band: 95% CI)",
                            reference=full)


def results_markdown(table: pd.DataFrame) -> str:
    """The headline table: AUBC, speed-up to 95% with its interval, the paired test, time per round."""
    shown = pd.DataFrame({
        "dataset": table["dataset"], "strategy": table["strategy"], "seeds": table["seeds"],
        "AUBC": [f"{a:.3f} ± {s:.3f}" for a, s in zip(table["aubc"], table["aubc_sd"], strict=True)],
        "ΔAUBC vs random": [f"{d:+.3f}" for d in table["aubc_vs_random"]],
        "wins": [f"{w}/{n}" for w, n in zip(table["wins_vs_random"], table["seeds"], strict=True)],
        "Wilcoxon p": [_fmt(p, "{:.3f}") for p in table["wilcoxon_p"]],
        "final acc": [f"{a:.3f}" for a in table["final_accuracy"]],
    })
    for column in [c for c in table.columns if c.startswith("labels_to_")]:
        shown[f"labels→{column[10:-3]}%"] = [_fmt(v, "{:.0f}") for v in table[column]]
    for column in [c for c in table.columns if c.startswith("speedup_") and c.endswith("pct")]:
        shown[f"speed-up {column[8:-3]}% [95% CI]"] = [
            f"{_fmt(v, '{:.2f}x')} [{_fmt(lo, '{:.2f}')}, {_fmt(hi, '{:.2f}')}]"
            for v, lo, hi in zip(table[column], table[f"{column}_low"], table[f"{column}_high"], strict=True)]
    shown["s/round"] = [f"{s:.3f}" for s in table["seconds_per_round"]]
    return to_markdown(shown)


def _fmt(value: Any, pattern: str) -> str:
    if is_missing(value):
        return "—"
    return pattern.format(value)


def _parent_run(tracker: Tracker, folder: Path, suite: BenchmarkConfig) -> str:
    digest = hashlib.sha256(json.dumps(suite.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:10]
    return tracker.parent_run(
        folder / "parent_run_id", f"benchmark-{suite.id}",
        tags={"al_loop.kind": "benchmark", "benchmark_id": suite.id, "al_loop.version": __version__,
              "datasets": ",".join(d.name for d in suite.datasets), "strategies": ",".join(suite.strategies)},
        params={"seeds": str(suite.seeds), "targets": json.dumps(suite.targets), "bootstrap": str(suite.bootstrap),
                "suite_hash": digest})


def _log_parent(tracker: Tracker, run_id: str, folder: Path, table: pd.DataFrame, plots: dict[str, Path],
                runs: Sequence[SeedRun]) -> None:
    csv, markdown = folder / "results.csv", folder / "results.md"
    table.to_csv(csv, index=False)
    markdown.write_text(results_markdown(table))
    metrics = {}
    for row in table.to_dict("records"):
        for key in ("aubc", "aubc_vs_random", "final_accuracy", "speedup_95pct"):
            value = row.get(key)
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                metrics[f"{key}.{row['dataset']}.{row['strategy']}"] = float(value)
    tracker.log_metrics(run_id, metrics)
    for path in (csv, markdown, *plots.values()):
        tracker.log_artifact(run_id, path)
    tracker.set_tags(run_id, {"runs": str(len(runs))})
    tracker.end_run(run_id)
