"""Benchmark: datasets x strategies x seeds in simulation, measured against random.

Protocol (docs/benchmark.md): a held-out test split never queried; for one seed, the same initial labeled
set for every strategy (the loop's round-0 draw depends only on the seed); batch size, budget, model and
features stated per dataset; paired comparisons over seeds. Each (dataset, strategy, seed) is an ordinary
loop run with its own ledger, so an interrupted benchmark resumes where it stopped.

Targets are shares of the full-pool accuracy of the same seed (test splits differ by seed). Random may run
past the common budget (`random_budget`) so that its labels-to-target is measured instead of bounded; every
comparison of curves (AUBC, wins, Wilcoxon, identical curves) uses the common budget span only.

`al-loop compare` is a one-dataset suite (al_loop.compare): the same runner (`run_suite`), parent run, summary
and Markdown. `suite_from_mlflow` recomputes a suite's table from what its MLflow runs hold (the notebook).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from pydantic import Field, ValidationError, field_validator
from scipy.stats import wilcoxon
from sklearn import datasets as sk_datasets

from al_loop import __version__, selection
from al_loop.auto import ARMS as AUTO_ARMS
from al_loop.config import (
    STRATEGIES,
    Config,
    ConfigError,
    TrackingConfig,
    _format_validation_error,
    _resolve,
    _Strict,
    config_from_dict,
    known_names,
    load_config,
    read_yaml,
)
from al_loop.curves import aubc, is_missing, labels_to_target, mean_curve, target_key
from al_loop.errors import AlLoopError
from al_loop.ledger import RoundRecord
from al_loop.loop import Reference, full_pool_accuracy, run_loop
from al_loop.plots import plot_mean_curves
from al_loop.selection import check_pool_size
from al_loop.tracking import Tracker, check_store
from al_loop.workspace import prepare

OnRound = Callable[[str, int, RoundRecord], None]  # (strategy, seed, round) of a suite run in this process


# scikit-learn generators a suite may name; nothing else is ever imported from a config value
def checkerboard_blobs(n_samples: int = 4000, grid: int = 3, cluster_std: float = 0.25,
                       random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A grid x grid checkerboard of Gaussian blobs in 2-D, neighbours of opposite class: the kind of data where
    uncertainty sampling keeps refining the boundaries it knows and never finds a blob it has not seen."""
    rng = np.random.default_rng(random_state)
    cell = rng.integers(0, grid * grid, n_samples)
    x = np.c_[cell % grid, cell // grid] + rng.normal(0, cluster_std, (n_samples, 2))
    return x, (cell % grid + cell // grid) % 2


GENERATORS = {"make_moons": sk_datasets.make_moons, "make_circles": sk_datasets.make_circles,
              "make_classification": sk_datasets.make_classification, "make_blobs": sk_datasets.make_blobs,
              "checkerboard_blobs": checkerboard_blobs}
_RESERVED_PARAMS = {"random_state": "set generator.random_state instead",
                    "return_centers": "the generator must return (X, y) only",
                    "return_X_y": "the generator must return (X, y) only"}
# what a generator decides itself; a dataset entry with a generator may set test_size and classes only
_GENERATED_KEYS = ("path", "name", "text_column", "feature_columns", "id_column", "label_column", "test_path")
HEADLINE_TARGET = 0.95  # the target of the median speed-up over datasets
# the parent run's metrics (the table, per dataset and strategy) form their own section of MLflow's chart view,
# below the children's curves
TABLE = "table/"


class GeneratorConfig(_Strict):
    """Synthetic data from one of scikit-learn's generators (an allow-list), written once to Parquet."""

    kind: Literal["make_moons", "make_circles", "make_classification", "make_blobs", "checkerboard_blobs"]
    params: dict[str, Any] = Field(default_factory=dict)
    random_state: int = Field(0, ge=0)


class BenchmarkDataset(_Strict):
    """One dataset of the suite: the config sections of its loop (dataset, features, model, loop)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: dict[str, Any] = Field(default_factory=dict)
    generator: GeneratorConfig | None = None
    features: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    loop: dict[str, Any] = Field(default_factory=dict)
    random_budget: int | None = Field(None, gt=0, description="labels random runs to (at least loop.budget)")


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
    random_budget_factor: float = Field(1.0, ge=1.0, description="random runs to this multiple of loop.budget "
                                                                 "where a dataset sets no random_budget")
    output_dir: Path = Path("runs/benchmark")
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="al-loop-benchmark"))

    @field_validator("strategies")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        known_names(value, STRATEGIES, "strategy")
        if "random" not in value:
            raise ValueError("the benchmark measures strategies against random: include 'random'")
        return value


@dataclass(frozen=True)
class SeedRun:
    """One (dataset, strategy, seed) run, summarized. `budget` is the dataset's common budget: curves are
    compared up to it (random's may go further); `batch_size` is the step to the next point of a curve."""

    dataset: str
    strategy: str
    seed: int
    steps: np.ndarray
    accuracy: np.ndarray
    full_accuracy: float
    round_seconds: float
    run_id: str
    budget: float | None = None
    batch_size: int | None = None
    arms: dict[str, int] = field(default_factory=dict)  # auto: how many rounds drew each arm


@dataclass(frozen=True)
class BenchmarkResult:
    """The outcome: parent run, folder, per-run summaries, the results table and the plots."""

    parent_run_id: str
    folder: Path
    runs: list[SeedRun]
    table: pd.DataFrame
    plots: dict[str, Path]
    experiment_id: str = ""


def load_benchmark(path: str | Path, output_dir: str | Path | None = None
                   ) -> tuple[BenchmarkConfig, dict[str, Config]]:
    """Read a benchmark YAML; returns the suite and one loop config per dataset (seed set per run).

    Generated datasets are written once to `<output_dir>/<id>/data/<name>.parquet`. `output_dir` overrides
    the suite's (relative to the working directory)."""
    data, base = read_yaml(path)
    if "dataset" in data and "datasets" not in data:
        raise ConfigError(f"{path} is a loop config (it has `dataset`); al-loop benchmark expects a suite with a "
                          "`datasets` list, like configs/benchmark.yaml. For one config use al-loop compare")
    try:
        suite = BenchmarkConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, str(path))) from None
    if output_dir is not None:
        suite.output_dir = Path(output_dir).resolve()
    else:
        suite.output_dir = _resolve(base, suite.output_dir, "output_dir", must_exist=False)
    if suite.tracking.uri is None:
        suite.tracking.uri = f"sqlite:///{suite.output_dir / 'mlflow.db'}"
    names = [d.name for d in suite.datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: dataset names must be unique (twice: "
                          f"{sorted({n for n in names if names.count(n) > 1})})")
    configs = {}
    for entry in suite.datasets:
        where = f"{path}: datasets[{entry.name}]"
        dataset = dict(entry.dataset)
        if entry.generator is not None:
            clash = [f"dataset.{k}" for k in _GENERATED_KEYS if k in dataset]
            if clash:
                raise ConfigError(f"{where}: `generator` makes the data, so {', '.join(clash)} cannot be set "
                                  "(the generated file has columns id, f0, f1, ..., label); remove them")
            file, columns = materialize(entry.name, entry.generator, suite.output_dir / suite.id / "data", where)
            dataset |= {"path": str(file), "feature_columns": columns}
        elif not dataset:
            raise ConfigError(f"{where}: set `dataset` (a file or a bundled dataset) or `generator`")
        sections = {"dataset": dataset, "features": entry.features, "model": entry.model, "loop": entry.loop,
                    "tracking": {**suite.tracking.model_dump(mode="json"), "log_model": False},
                    "output_dir": str(suite.output_dir / suite.id / entry.name)}
        configs[entry.name] = config_from_dict(sections, base, source=where)
        _random_budget(suite, entry, configs[entry.name], where)
    return suite, configs


def random_budgets(suite: BenchmarkConfig, configs: dict[str, Config]) -> dict[str, int | None]:
    """Per dataset, the labels random runs to when that is beyond the common budget (else None)."""
    return {d.name: _random_budget(suite, d, configs[d.name], f"datasets[{d.name}]") for d in suite.datasets}


def _random_budget(suite: BenchmarkConfig, entry: BenchmarkDataset, config: Config, where: str) -> int | None:
    loop = config.loop
    key = "random_budget" if entry.random_budget is not None else "random_budget_factor (suite)"
    if entry.random_budget is None and suite.random_budget_factor == 1:
        return None
    if loop.budget is None or loop.max_rounds is not None:
        raise ConfigError(f"{where}: {key} extends loop.budget, the common budget of the other strategies; set "
                          "loop.budget and leave loop.max_rounds unset for this dataset")
    wanted = entry.random_budget or math.ceil(loop.budget * suite.random_budget_factor)
    if wanted < loop.budget:
        raise ConfigError(f"{where}.random_budget ({wanted}) is below loop.budget ({loop.budget}); random runs at "
                          "least as far as the others")
    if (loop.budget - loop.initial_size) % loop.batch_size:
        raise ConfigError(f"{where}: with {key}, loop.budget - loop.initial_size ({loop.budget} - "
                          f"{loop.initial_size}) must be a multiple of loop.batch_size ({loop.batch_size}), so "
                          "random's longer curve has a point at the common budget (AUBC is compared there)")
    return wanted if wanted > loop.budget else None


def materialize(name: str, generator: GeneratorConfig, folder: Path, where: str = "") -> tuple[Path, list[str]]:
    """Write a generated dataset once to `<folder>/<name>.parquet` (columns id, f0..fn, label) and return the
    path and the feature columns. An existing file with other data is refused, not overwritten: runs made
    on it would otherwise resume on different data under the same ids."""
    label = f"{where}.generator" if where else f"generator of {name}"
    function = GENERATORS[generator.kind]  # kind is validated as a Literal: nothing a config names is imported
    accepted = sorted(set(inspect.signature(function).parameters) - set(_RESERVED_PARAMS))
    for key in generator.params:
        if key in _RESERVED_PARAMS:
            raise ConfigError(f"{label}.params.{key}: not allowed; {_RESERVED_PARAMS[key]}")
        if key not in accepted:
            raise ConfigError(f"{label}.params.{key}: {generator.kind} has no such parameter; it takes "
                              f"{', '.join(accepted)}")
    try:
        x, y = function(**generator.params, random_state=generator.random_state)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{label}.params: {generator.kind} refused them: {error}") from None
    x = np.asarray(x, dtype=float)
    columns = [f"f{i}" for i in range(x.shape[1])]
    frame = pd.DataFrame(x, columns=columns)
    frame.insert(0, "id", [f"{name}-{i:06d}" for i in range(len(frame))])
    frame["label"] = [str(int(v)) for v in y]
    digest = hashlib.sha256(x.tobytes() + "\n".join(frame["label"]).encode()).hexdigest()
    file, meta = folder / f"{name}.parquet", folder / f"{name}.json"
    spec = {"generator": generator.model_dump(mode="json"), "rows": len(frame), "sha256": digest}
    if file.exists() and meta.exists():
        written = json.loads(meta.read_text())
        if written.get("sha256") == digest:
            return file, columns
        raise ConfigError(f"{label}: {file} holds other data (made from {written.get('generator')}); the runs of "
                          "this suite id were made with it. Use a new suite `id`, or delete "
                          f"{folder.parent} to start over")
    folder.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(f".{os.getpid()}.partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, file)
    meta.write_text(json.dumps(spec, indent=1))
    return file, columns


def run_benchmark(path: str | Path, seeds: int | None = None, n_jobs: int | None = None,
                  on_done: Callable[[SeedRun], None] | None = None,
                  strategies: Sequence[str] | None = None) -> BenchmarkResult:
    """Run (or resume) the suite, seeds in parallel; log a parent MLflow run with the table and plots.

    `strategies` runs a subset of the suite's (random included); runs already finished are reused."""
    suite, configs = load_benchmark(path)
    if seeds is not None:
        suite.seeds = seeds
    if strategies is not None:
        try:
            suite.strategies = list(strategies)
        except ValidationError as error:
            raise ConfigError(_format_validation_error(error, "--strategies")) from None
    digest = hashlib.sha256(json.dumps(suite.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:10]
    plan = SuitePlan(kind="benchmark", folder=suite.output_dir / suite.id, run_name=f"benchmark-{suite.id}",
                     tags={"benchmark_id": suite.id}, params={"suite_hash": digest},
                     child_tags={"benchmark_id": suite.id}, n_jobs=n_jobs or suite.n_jobs)
    return run_suite(suite, configs, plan, on_done=on_done)


@dataclass(frozen=True)
class SuitePlan:
    """How a suite runs and reports: the benchmark, or `al-loop compare` (one dataset, in this process, with its
    own file names and a shorter table)."""

    kind: Literal["benchmark", "compare"]
    folder: Path
    run_name: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    child_tags: dict[str, str] = field(default_factory=dict)
    n_jobs: int = 1
    skip_large: bool = True  # leave out strategies a pool is too large for (the benchmark); compare refuses
    table_file: str = "results.csv"
    markdown_file: str = "results.md"
    plot_file: str = "curves_{dataset}.png"


def run_suite(suite: BenchmarkConfig, configs: dict[str, Config], plan: SuitePlan,
              on_done: Callable[[SeedRun], None] | None = None, on_round: OnRound | None = None) -> BenchmarkResult:
    """Every (dataset, strategy, seed) of a suite as a child of one parent run, then the table, plots and the
    parent's metrics and files. `on_round` is called for every round when the runs are in this process."""
    seed_list = list(range(suite.first_seed, suite.first_seed + suite.seeds))
    plan.folder.mkdir(parents=True, exist_ok=True)
    extended = random_budgets(suite, configs)
    tracker = Tracker(suite.tracking.uri or "", suite.tracking.experiment)
    parent = parent_run(tracker, suite, plan)
    in_process = plan.n_jobs == 1
    jobs = [delayed(_run_dataset_seed)(configs[d.name], d.name, _strategies_for(suite, configs[d.name], plan), seed,
                                       parent, plan.child_tags, tuple(suite.targets), extended[d.name],
                                       on_round if in_process else None)
            for d in suite.datasets for seed in seed_list]
    runs: list[SeedRun] = []
    for batch in Parallel(n_jobs=plan.n_jobs, return_as="generator_unordered")(jobs):
        for run in batch:
            runs.append(run)
            if on_done is not None:
                on_done(run)
    runs.sort(key=lambda r: (r.dataset, r.strategy, r.seed))
    table = summarize(runs, suite.targets, suite.bootstrap, seed=suite.first_seed)
    plots = {name: plot_dataset(runs, name, plan.folder / plan.plot_file.format(dataset=name)) for name in configs}
    _log_parent(tracker, parent, plan, table, plots, runs)
    return BenchmarkResult(parent_run_id=parent, folder=plan.folder, runs=runs, table=table, plots=plots,
                           experiment_id=tracker.experiment_id)


def _strategies_for(suite: BenchmarkConfig, config: Config, plan: SuitePlan) -> list[str]:
    """The suite's strategies, without those whose declared pool limit (the registry's, or the suite's
    ranked_batch_max_pool) this dataset's pool exceeds (compare keeps them: the loop refuses with a message)."""
    if not plan.skip_large or all(selection.get(s).needs.max_pool is None for s in suite.strategies):
        return list(suite.strategies)
    pool_size = len(prepare(config).splits.pool)
    overrides = {"ranked_batch": suite.ranked_batch_max_pool}
    return [s for s in suite.strategies if check_pool_size(selection.get(s), pool_size, overrides) is None]


def _run_dataset_seed(config: Config, dataset: str, strategies: Sequence[str], seed: int, parent: str,
                      child_tags: dict[str, str], targets: tuple[float, ...], random_budget: int | None = None,
                      on_round: OnRound | None = None) -> list[SeedRun]:
    """All strategies for one (dataset, seed), sharing the features (one worker process). Random runs to
    `random_budget` when given; every run records the common budget, and logs its AUBC (up to it), the seed's
    full-pool accuracy and its labels to each target."""
    seeded = config.with_overrides(seed=seed)
    workspace = prepare(seeded)
    full = full_pool_accuracy(seeded, workspace)
    reference = Reference(full_accuracy=full, targets=targets, budget=config.loop.budget)
    tracker = Tracker(seeded.tracking_uri, seeded.tracking.experiment)
    out = []
    for strategy in strategies:
        run_config = seeded.with_overrides(strategy=strategy)
        if strategy == "random" and random_budget is not None:
            run_config = run_config.model_copy(
                update={"loop": run_config.loop.model_copy(update={"budget": random_budget})})
        callback = None if on_round is None else (lambda r, s=strategy: on_round(s, seed, r))
        result = run_loop(run_config, workspace=workspace, parent_run_id=parent, on_round=callback,
                          extra_tags={**child_tags, "dataset": dataset}, reference=reference)
        if config.loop.budget is not None:
            tracker.set_tags(result.run_id, {"common_budget": str(config.loop.budget),
                                             "budget": str(run_config.loop.budget)})
        steps, accuracy = result.curve
        seconds = [r.metrics.get("round_seconds", np.nan) for r in result.rounds[1:]]
        out.append(SeedRun(dataset=dataset, strategy=strategy, seed=seed, steps=steps, accuracy=accuracy,
                           full_accuracy=full, round_seconds=float(np.nanmean(seconds)) if seconds else np.nan,
                           run_id=result.run_id, budget=config.loop.budget, batch_size=config.loop.batch_size,
                           arms=arms_drawn(result.rounds)))
    return out


def arms_drawn(rounds: Sequence[Any]) -> dict[str, int]:
    """How many rounds of an `auto` run drew each arm (from its logged `auto/arm`); empty for other strategies."""
    drawn = Counter(int(r.metrics["auto/arm"]) for r in rounds if "auto/arm" in r.metrics)
    return {AUTO_ARMS[i]: n for i, n in sorted(drawn.items())}


def arms_table(runs: Sequence[SeedRun]) -> pd.DataFrame:
    """Per dataset, the share of `auto`'s rounds that drew each arm, over all seeds."""
    rows = []
    for dataset in sorted({r.dataset for r in runs if r.arms}):
        total: Counter[str] = Counter()
        for run in runs:
            if run.dataset == dataset:
                total.update(run.arms)
        rounds = sum(total.values())
        rows.append({"dataset": dataset, "rounds": rounds,
                     **{arm: total.get(arm, 0) / rounds for arm in AUTO_ARMS}})
    return pd.DataFrame(rows)


# -- statistics ---------------------------------------------------------------------------------------

Curves = list[tuple[np.ndarray, np.ndarray]]
_EXACT, _LOWER, _UPPER = 0, 1, -1
_KIND_NAMES = {_EXACT: "exact", _LOWER: "lower", _UPPER: "upper"}
_PREFIX = {"exact": "", "lower": "≥", "upper": "≤", "unknown": "~"}
_PREFERRED = ("random", "margin", *STRATEGIES)  # which name stands for a group of identical strategies


def summarize(runs: Sequence[SeedRun], targets: Sequence[float], n_boot: int, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, strategy).

    Over the common budget span (random's longer curve cut there): AUBC, its difference to random, wins and
    a Wilcoxon signed-rank test of AUBC against random (paired by seed), final accuracy, and whether the
    curves equal another strategy's for every seed (`identical_to`). Per target share of the full-pool
    accuracy of each seed: labels for the mean normalized curve (accuracy / that seed's full-pool accuracy,
    averaged over seeds) to reach it (random on its whole curve), the seeds whose own curve reaches it, and
    the speed-up random's labels / the strategy's labels with a paired bootstrap 95% interval over seeds.
    Where one curve does not reach the target the speed-up is a bound (`speedup_<t>_bound`: exact, lower,
    upper, initial, none); docs/benchmark.md states the rules. Without random (compare may run without it), the
    columns against random are empty (None)."""
    rows = []
    for dataset in sorted({r.dataset for r in runs}):
        mine = [r for r in runs if r.dataset == dataset]
        baseline = {r.seed: r for r in mine if r.strategy == "random"}
        fulls = {r.seed: r.full_accuracy for r in mine if not baseline or r.seed in baseline}
        full = float(np.mean([fulls[s] for s in sorted(fulls)]))
        strategies = _ordered({r.strategy for r in mine})
        identical = _identical(mine, strategies)
        for strategy in strategies:
            by_seed = {r.seed: r for r in mine if r.strategy == strategy}
            seeds = sorted(set(by_seed) & set(baseline)) if baseline else sorted(by_seed)
            span = [_within_budget(by_seed[s]) for s in seeds]
            aubcs = np.array([aubc(x, y) for x, y in span])
            finals = np.array([y[-1] for _, y in span])
            row: dict[str, Any] = {
                "dataset": dataset, "strategy": strategy, "seeds": len(seeds), "full_pool_accuracy": full,
                "budget": float(np.min([x[-1] for x, _ in span])),
                "aubc": float(aubcs.mean()), "aubc_sd": _sd(aubcs),
                "aubc_vs_random": None, "wins_vs_random": None, "wilcoxon_p": None,
                "final_accuracy": float(finals.mean()), "final_accuracy_sd": _sd(finals),
                "seconds_per_round": float(np.nanmean([by_seed[s].round_seconds for s in seeds])),
                "identical_to": identical.get(strategy),
            }
            if baseline:
                random_aubcs = np.array([aubc(x, y) for x, y in (_within_budget(baseline[s]) for s in seeds)])
                row |= {"aubc_vs_random": float((aubcs - random_aubcs).mean()),
                        "wins_vs_random": int((aubcs > random_aubcs).sum()),
                        "wilcoxon_p": _wilcoxon(aubcs, random_aubcs)}
            # labels-to-target on curves normalized by each seed's full-pool accuracy; random on its whole curve
            curves = _normalized([by_seed[s] for s in seeds], whole=strategy == "random")
            row["labels_span"] = float(mean_curve(curves)[0][-1])
            for index, target in enumerate(targets):
                key = target_key(target)
                steps, mean, _ = mean_curve(curves)
                row[f"labels_to_{key}"] = labels_to_target(steps, mean, target)
                row[f"reached_{key}"] = sum(labels_to_target(x, y, target) is not None for x, y in curves)
                if baseline:
                    # keyed by dataset and target only: every strategy of a dataset sees the same seed resamples
                    rng = np.random.default_rng([seed, _stable_hash(dataset), index])
                    row |= _against_random(curves, [baseline[s] for s in seeds], [by_seed[s] for s in seeds],
                                           list(baseline.values()), target, n_boot, rng, row["labels_span"])
            rows.append(row)
    return pd.DataFrame(rows)


def _sd(values: np.ndarray) -> float:
    """Sample standard deviation over seeds (0 for one seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _against_random(curves: Curves, paired_random: list[SeedRun], mine: list[SeedRun], every_random: list[SeedRun],
                    target: float, n_boot: int, rng: np.random.Generator, span: float) -> dict[str, Any]:
    """The speed-up columns of one target: the estimate, what kind it is, and its bootstrap interval."""
    key = target_key(target)
    base_curves = _normalized(paired_random, whole=True)
    next_labels = span + _batch_of(mine)
    base_next = float(mean_curve(base_curves)[0][-1]) + _batch_of(every_random)
    estimate = _speedup(curves, base_curves, target, next_labels, base_next)
    out = {f"speedup_{key}": estimate["value"], f"speedup_{key}_bound": estimate["kind"]}
    interval = (_bootstrap_speedup(curves, base_curves, target, n_boot, rng, next_labels, base_next)
                if estimate["kind"] not in ("initial", "none") else {})
    for part in ("low", "high", "low_bound", "high_bound", "bound_share"):
        out[f"speedup_{key}_{part}"] = interval.get(part)
    return out


def _ordered(strategies: set[str]) -> list[str]:
    return [s for s in STRATEGIES if s in strategies]


def _stable_hash(text: str) -> int:
    """A hash of a name that is the same in every process and Python version (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _within_budget(run: SeedRun) -> tuple[np.ndarray, np.ndarray]:
    """The curve up to the common budget (random's longer curve cut there; others are unchanged)."""
    if run.budget is None:
        return run.steps, run.accuracy
    keep = run.steps <= run.budget
    return run.steps[keep], run.accuracy[keep]


def _normalized(runs: Sequence[SeedRun], whole: bool) -> Curves:
    """Each seed's curve divided by that seed's full-pool accuracy; cut to the common budget unless `whole`."""
    curves = [(r.steps, r.accuracy) if whole else _within_budget(r) for r in runs]
    return [(x, y / r.full_accuracy) for (x, y), r in zip(curves, runs, strict=True)]


def _batch_of(runs: Sequence[SeedRun]) -> float:
    """The step from a curve's last point to the next one it would have: the batch size."""
    for run in runs:
        if run.batch_size is not None:
            return float(run.batch_size)
    gaps = np.diff(runs[0].steps) if runs else np.array([])
    return float(np.median(gaps)) if gaps.size else 0.0


def _identical(runs: Sequence[SeedRun], strategies: list[str]) -> dict[str, str]:
    """Strategies whose curves (within the common budget) equal another's for every seed, mapped to the one
    that stands for the group (random or margin when in it, else the first in the usual order)."""
    curves = {s: {r.seed: _within_budget(r) for r in runs if r.strategy == s} for s in strategies}

    def same(a: str, b: str) -> bool:
        if set(curves[a]) != set(curves[b]):
            return False
        return all(np.array_equal(curves[a][k][0], curves[b][k][0]) and np.array_equal(curves[a][k][1],
                   curves[b][k][1]) for k in curves[a])

    groups: list[list[str]] = []
    for strategy in strategies:
        group = next((g for g in groups if same(g[0], strategy)), None)
        if group is None:
            groups.append([strategy])
        else:
            group.append(strategy)
    out = {}
    for group in groups:
        if len(group) > 1:
            head = min(group, key=_PREFERRED.index)
            out |= {s: head for s in group if s != head}
    return out


def _wilcoxon(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of paired AUBCs (None when they never differ)."""
    if len(a) < 2 or np.allclose(a, b):
        return None
    return float(wilcoxon(a, b).pvalue)


def _speedup(mine: Curves, base: Curves, target: float, next_labels: float, base_next: float) -> dict[str, Any]:
    """random's labels / the strategy's labels to `target` on the mean normalized curves.

    exact: both reach it. lower: random does not within its curve, so it needs at least its last point plus
    one batch (base_next): the speed-up is at least base_next / the strategy's labels. upper: the strategy
    does not, so it is at most random's labels / next_labels. none: neither reaches it. initial: the first
    point (the initial set, the same for every strategy of a seed) already reaches it: nothing to speed up."""
    steps, mean, _ = mean_curve(mine)
    base_steps, base_mean, _ = mean_curve(base)
    labels = labels_to_target(steps, mean, target) if steps.size else None
    out: dict[str, Any] = {"labels": labels, "value": None, "kind": "none"}
    if not steps.size or not base_steps.size:
        return out
    base_labels = labels_to_target(base_steps, base_mean, target)
    if mean[0] >= target or base_mean[0] >= target:
        return out | {"kind": "initial"}
    if labels is not None and base_labels is not None:
        return out | {"value": base_labels / labels, "kind": "exact"}
    if labels is not None:
        return out | {"value": base_next / labels, "kind": "lower"}
    if base_labels is not None:
        return out | {"value": base_labels / next_labels, "kind": "upper"}
    return out


def _bootstrap_speedup(mine: Curves, base: Curves, target: float, n_boot: int, rng: np.random.Generator,
                       next_labels: float, base_next: float) -> dict[str, Any]:
    """2.5 and 97.5 percentiles of random's labels / the strategy's labels to `target` over resamples of
    the seeds with replacement (the same seeds for both curves: paired).

    In a resample where random's mean curve does not reach the target, random's labels count as base_next
    (its last point plus one batch) and the ratio is a lower bound; where the strategy's does not, its labels
    count as next_labels and the ratio is an upper bound; where neither does, the resample is left out (no
    interval when more than half are). Each end of the interval is then marked: exact if it would be the same
    whatever the bounded resamples truly are, lower / upper if it can only be higher / lower, unknown if both.
    `bound_share` is the share of the resamples used that hold a bound."""
    steps, stacked = _aligned(mine)
    base_steps, stacked_base = _aligned(base)
    picks = rng.integers(0, len(mine), (n_boot, len(mine)))
    labels = _first_reaching(steps, stacked[picks].mean(axis=1), target)
    base_labels = _first_reaching(base_steps, stacked_base[picks].mean(axis=1), target)
    reached, base_reached = np.isfinite(labels), np.isfinite(base_labels)
    numerator = np.where(base_reached, base_labels, base_next)
    denominator = np.where(reached, labels, next_labels)
    keep = reached | base_reached
    if keep.sum() < n_boot / 2:
        return {}
    ratios = numerator[keep] / denominator[keep]
    kinds = np.where(~base_reached, _LOWER, np.where(~reached, _UPPER, _EXACT))[keep]
    low, low_kind = bounded_percentile(ratios, kinds, 2.5)
    high, high_kind = bounded_percentile(ratios, kinds, 97.5)
    return {"low": low, "high": high, "low_bound": low_kind, "high_bound": high_kind,
            "bound_share": float((kinds != _EXACT).mean())}


def bounded_percentile(values: np.ndarray, kinds: np.ndarray, q: float) -> tuple[float, str]:
    """The q-th percentile of values some of which are bounds (kinds: 0 exact, 1 the true value is at least
    this, -1 at most this), and what it is: 'exact' if it is the same wherever the bounded values truly lie,
    'lower' if the true percentile can only be higher, 'upper' if only lower, 'unknown' if either."""
    values = np.asarray(values, dtype=float)
    kinds = np.asarray(kinds)
    value = float(np.percentile(values, q))
    big = 1e9 * max(1.0, float(np.max(np.abs(values))))
    highest = float(np.percentile(np.where(kinds == _LOWER, big, values), q))
    lowest = float(np.percentile(np.where(kinds == _UPPER, 0.0, values), q))
    up, down = not np.isclose(highest, value), not np.isclose(lowest, value)
    return value, "unknown" if up and down else "lower" if up else "upper" if down else "exact"


def _aligned(curves: Curves) -> tuple[np.ndarray, np.ndarray]:
    """Curves as one (seeds x steps) array on the steps they all have."""
    steps, _, _ = mean_curve(curves)
    return steps, np.array([[dict(zip(x.tolist(), y.tolist(), strict=True))[s] for s in steps] for x, y in curves])


def _first_reaching(steps: np.ndarray, means: np.ndarray, target: float) -> np.ndarray:
    """Per row of mean curves, the first step reaching the target (inf if none): labels_to_target, vectorized."""
    reached = means >= target
    first = reached.argmax(axis=1)
    return np.where(reached.any(axis=1), steps[first], np.inf)


def median_speedups(table: pd.DataFrame, target: float = HEADLINE_TARGET) -> pd.DataFrame:
    """Per strategy (random left out), the median over datasets of the speed-up to `target`, bounds counted
    at their value; `median_bound` says whether the median itself is exact or a bound (see
    bounded_percentile). Datasets where the target is reached by the initial set, or by neither curve,
    have no figure and are counted apart."""
    key = target_key(target)
    rows = []
    for strategy in [s for s in _ordered(set(table["strategy"])) if s != "random"]:
        mine = table[table["strategy"] == strategy]
        kinds = mine[f"speedup_{key}_bound"].tolist()
        counted = [k in _KIND_NAMES.values() for k in kinds]
        values = mine[f"speedup_{key}"][counted].astype(float).to_numpy()
        codes = np.array([{v: c for c, v in _KIND_NAMES.items()}[k] for k in kinds if k in _KIND_NAMES.values()])
        median, bound = bounded_percentile(values, codes, 50) if values.size else (None, None)
        rows.append({"strategy": strategy, "target": target, "median_speedup": median, "median_bound": bound,
                     "datasets": len(mine), "with_figure": int(sum(counted)),
                     "lower_bounds": kinds.count("lower"), "upper_bounds": kinds.count("upper"),
                     "initial": kinds.count("initial"), "not_reached": kinds.count("none")})
    return pd.DataFrame(rows)


def median_lines(table: pd.DataFrame, target: float = HEADLINE_TARGET) -> list[str]:
    """The median speed-up over datasets, one line per strategy, e.g. '≥1.42x (2 of 8 are lower bounds)'."""
    if f"speedup_{target_key(target)}_bound" not in table.columns:
        return []
    lines = []
    for row in median_speedups(table, target).to_dict("records"):
        lines.append(f"- {row['strategy']}: {_median_text(row)}")
    return lines


def _median_text(row: dict[str, Any]) -> str:
    if row["median_speedup"] is None:
        return f"— (no dataset with a figure; {_excluded(row)})"
    bounds = [f"{row[k]} of {row['with_figure']} are {k.replace('_', ' ')}"
              for k in ("lower_bounds", "upper_bounds") if row[k]]
    detail = [f"{row['with_figure']} datasets", *bounds]
    if row["with_figure"] < row["datasets"]:
        detail.append(_excluded(row))
    return f"{_PREFIX[row['median_bound']]}{row['median_speedup']:.2f}x ({'; '.join(detail)})"


def _excluded(row: dict[str, Any]) -> str:
    parts = [f"{row['initial']} reached by the initial set"] if row["initial"] else []
    parts += [f"{row['not_reached']} reached by neither"] if row["not_reached"] else []
    return "left out: " + ", ".join(parts)


# -- outputs ------------------------------------------------------------------------------------------


def plot_dataset(runs: Sequence[SeedRun], dataset: str, path: Path) -> Path:
    """Mean test accuracy per strategy with a 95% band (normal interval of the mean over seeds); random's
    whole curve, also past the common budget."""
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


def compare_view(table: pd.DataFrame) -> pd.DataFrame:
    """The table `al-loop compare` prints (one dataset), as text cells: final accuracy and AUBC (mean ± sd over
    seeds), labels to each target and, with random, the speed-up against it."""
    shown = pd.DataFrame({
        "strategy": table["strategy"], "seeds": [str(n) for n in table["seeds"]],
        "final acc": [f"{a:.3f} ± {s:.3f}" for a, s in zip(table["final_accuracy"], table["final_accuracy_sd"],
                                                            strict=True)],
        "AUBC": [f"{a:.3f} ± {s:.3f}" for a, s in zip(table["aubc"], table["aubc_sd"], strict=True)],
    })
    _add_targets(shown, table, interval=False)
    return shown


def _add_targets(shown: pd.DataFrame, table: pd.DataFrame, interval: bool) -> None:
    """Labels to each target (`>N`: not within the N labels of the curve) and the speed-up against random."""
    spans = table["labels_span"] if "labels_span" in table.columns else [None] * len(table)
    for column in [c for c in table.columns if c.startswith("labels_to_")]:
        shown[f"labels→{column[10:-3]}%"] = [_fmt(v, "{:.0f}") if not is_missing(v) or is_missing(span)
                                             else f">{span:.0f}" for v, span in zip(table[column], spans,
                                                                                   strict=True)]
    for column in [c for c in table.columns if c.startswith("speedup_") and c.endswith("pct")]:
        name = f"speed-up {column[8:-3]}%" + (" [95% CI]" if interval else "")
        shown[name] = [_speedup_cell(row, column, interval) for _, row in table.iterrows()]


def results_markdown(table: pd.DataFrame, compact: bool = False) -> str:
    """The headline table (AUBC, labels and speed-up to each target with its interval, the paired test, time
    per round), then notes: identical strategies, what ≥ / ≤ mean, and the median speed-up over datasets.
    `compact`: compare's table (compare_view) and its notes."""
    if compact:
        return _with_notes(to_markdown(compare_view(table)), table)
    shown = pd.DataFrame({
        "dataset": table["dataset"], "strategy": table["strategy"], "seeds": table["seeds"],
        "AUBC": [f"{a:.3f} ± {s:.3f}" for a, s in zip(table["aubc"], table["aubc_sd"], strict=True)],
        "ΔAUBC vs random": [f"{d:+.3f}" for d in table["aubc_vs_random"]],
        "wins": [f"{w}/{n}" for w, n in zip(table["wins_vs_random"], table["seeds"], strict=True)],
        "Wilcoxon p": [_fmt(p, "{:.3f}") for p in table["wilcoxon_p"]],
        "final acc": [f"{a:.3f}" for a in table["final_accuracy"]],
    })
    _add_targets(shown, table, interval=True)
    shown["s/round"] = [f"{s:.3f}" for s in table["seconds_per_round"]]
    text = _with_notes(to_markdown(shown), table)
    lines = median_lines(table)
    if lines:
        text += (f"\nMedian speed-up to {HEADLINE_TARGET:.0%} of the full-pool accuracy over datasets (bounds "
                 "counted at their value):\n\n" + "\n".join(lines) + "\n")
    return text


def _with_notes(text: str, table: pd.DataFrame) -> str:
    """The notes below a table: identical strategies, and what ≥ / ≤ mean."""
    notes = []
    if "identical_to" in table.columns:
        for (dataset, head), group in table[table["identical_to"].notna()].groupby(["dataset", "identical_to"],
                                                                                  sort=True):
            notes.append(f"- {dataset}: {', '.join(group['strategy'])}: identical curves to {head} (every seed)")
    bounded = [c for c in table.columns if c.endswith("_bound") and c.startswith("speedup_")]
    if any(table[c].isin(["lower", "upper"]).any() for c in bounded):
        notes.append("- ≥ / ≤: a bound, where random (≥) or the strategy (≤) does not reach the target within "
                     "its budget; it is counted as needing its last point plus one batch. ~: an interval end "
                     "that bounded resamples could move either way. initial: the initial set already reaches "
                     "the target.")
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def _speedup_cell(row: pd.Series, column: str, interval: bool = True) -> str:
    kind = row.get(f"{column}_bound", "exact" if not is_missing(row[column]) else "none")
    if kind == "initial":
        return "initial"
    if kind == "none" or is_missing(row[column]):
        return "—"
    value = f"{_PREFIX.get(kind, '')}{row[column]:.2f}x"
    if not interval:
        return value
    ends = [_fmt(row[f"{column}_{end}"], _PREFIX.get(row.get(f"{column}_{end}_bound") or "exact", "") + "{:.2f}")
            for end in ("low", "high")]
    return f"{value} [{ends[0]}, {ends[1]}]"


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (hand-written to avoid a `tabulate` dependency); al-loop's one writer."""
    def cell(value: object) -> str:
        if is_missing(value):
            return "not reached"
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _fmt(value: Any, pattern: str) -> str:
    if is_missing(value):
        return "—"
    return pattern.format(value)


def parent_run(tracker: Tracker, suite: BenchmarkConfig, plan: SuitePlan) -> str:
    """The suite's parent run (resumed through `<folder>/parent_run_id`), tagged with what it compares; its params
    say how its table is computed (targets, bootstrap, first seed), so suite_from_mlflow gets the same table."""
    return tracker.parent_run(
        plan.folder / "parent_run_id", plan.run_name,
        tags={"al_loop.kind": plan.kind, "al_loop.version": __version__,
              "datasets": ",".join(d.name for d in suite.datasets), "strategies": ",".join(suite.strategies),
              "seeds": ",".join(str(suite.first_seed + i) for i in range(suite.seeds)), **plan.tags},
        params={**plan.params, "seeds": str(suite.seeds), "first_seed": str(suite.first_seed),
                "targets": json.dumps(suite.targets), "bootstrap": str(suite.bootstrap)})


def _key(name: str) -> str:
    """A dataset name usable in an MLflow metric key (compare's is a file's stem: any character)."""
    return re.sub(r"[^A-Za-z0-9_.\- ]", "_", name)


def _log_parent(tracker: Tracker, run_id: str, plan: SuitePlan, table: pd.DataFrame, plots: dict[str, Path],
                runs: Sequence[SeedRun]) -> None:
    folder = plan.folder
    csv, markdown, medians_csv = folder / plan.table_file, folder / plan.markdown_file, folder / "median_speedups.csv"
    table.to_csv(csv, index=False)
    arms = arms_table(runs)
    markdown.write_text(results_markdown(table, compact=plan.kind == "compare") + (
        "\n\n`auto`: share of its rounds that drew each arm (all seeds)\n\n" + to_markdown(arms.round(3))
        if len(arms) else ""))
    key = target_key(HEADLINE_TARGET)
    metrics, tags = {}, {"runs": str(len(runs))}
    for row in table.to_dict("records"):
        for column in ("aubc", "aubc_vs_random", "final_accuracy", "full_pool_accuracy",
                       *(c for c in table.columns if c.startswith("labels_to_"))):
            if not is_missing(row[column]):
                metrics[f"{TABLE}{column}.{_key(row['dataset'])}.{row['strategy']}"] = float(row[column])
        kind, value = row.get(f"speedup_{key}_bound"), row.get(f"speedup_{key}")
        if kind in ("exact", "lower", "upper") and not is_missing(value):
            name = f"speedup_{key}" if kind == "exact" else f"speedup_{key}_{kind}"
            metrics[f"{TABLE}{name}.{_key(row['dataset'])}.{row['strategy']}"] = float(value)
    if f"speedup_{key}_bound" in table.columns and plan.kind == "benchmark":
        medians = median_speedups(table)
        medians.to_csv(medians_csv, index=False)
        for row in medians.to_dict("records"):
            if row["median_speedup"] is not None:
                metrics[f"{TABLE}median_speedup_{key}.{row['strategy']}"] = float(row["median_speedup"])
            metrics[f"{TABLE}median_speedup_{key}_lower_bounds.{row['strategy']}"] = float(row["lower_bounds"])
            metrics[f"{TABLE}median_speedup_{key}_upper_bounds.{row['strategy']}"] = float(row["upper_bounds"])
            tags[f"median_speedup_{key}.{row['strategy']}"] = _median_text(row)
    tracker.log_metrics(run_id, metrics)
    for path in (csv, markdown, *([medians_csv] if medians_csv.exists() else []), *plots.values()):
        tracker.log_artifact(run_id, path)
    tracker.set_tags(run_id, tags)
    tracker.end_run(run_id)


# -- reading a suite back from MLflow (the notebook) ---------------------------------------------------------


@dataclass(frozen=True)
class StoredSuite:
    """A compare or benchmark parent run read back from MLflow: its runs and the table recomputed from them."""

    parent_run_id: str
    kind: str
    name: str
    runs: list[SeedRun]
    table: pd.DataFrame

    def markdown(self) -> str:
        """The table as the command printed it (compare's short table, or the benchmark's)."""
        return results_markdown(self.table, compact=self.kind == "compare")


def ui_url(experiment_id: str, port: int = 5000) -> str:
    """The runs page of an experiment in `mlflow ui`, in its training view (MLflow 3.17 opens the GenAI view unless
    told: its GenAI / Model training switch, remembered per browser, decides over the experiment's tag)."""
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def store_of(config_path: str | Path) -> tuple[str, str]:
    """The tracking URI and experiment of a loop config or a benchmark suite file (nothing is written)."""
    data, base = read_yaml(config_path)
    if "datasets" in data and "dataset" not in data:
        try:
            suite = BenchmarkConfig.model_validate(data)
        except ValidationError as error:
            raise ConfigError(_format_validation_error(error, str(config_path))) from None
        output = _resolve(base, suite.output_dir, "output_dir", must_exist=False)
        return suite.tracking.uri or f"sqlite:///{output / 'mlflow.db'}", suite.tracking.experiment
    config = load_config(config_path)
    return config.tracking_uri, config.tracking.experiment


def open_store(tracking_uri: str, experiment: str) -> Tracker:
    """A Tracker on an existing store and experiment, for reading; refuses (with the fix) rather than create them."""
    path = tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None
    if path is not None and not Path(path).is_file():
        raise AlLoopError(f"no MLflow store at {path}: run `al-loop run configs/quickstart.yaml` and `al-loop compare "
                          "configs/quickstart.yaml` first, or point AL_LOOP_CONFIG (or AL_LOOP_TRACKING_URI) at the "
                          "config that made the runs")
    check_store(tracking_uri)
    from mlflow.tracking import MlflowClient

    found = MlflowClient(tracking_uri).get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in MlflowClient(tracking_uri).search_experiments()]
        raise AlLoopError(f"no experiment {experiment!r} in {tracking_uri} (it has {', '.join(names) or 'none'}); "
                          "set AL_LOOP_EXPERIMENT or AL_LOOP_CONFIG to the config that made the runs")
    return Tracker(tracking_uri, experiment)


def latest_parent(tracker: Tracker) -> str:
    """The newest finished compare or benchmark parent run of the tracker's experiment."""
    found = [run for kind in ("compare", "benchmark") for run in tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`al_loop.kind` = '{kind}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)]
    found.sort(key=lambda run: run.info.start_time, reverse=True)
    if not found:
        name = tracker.client.get_experiment(tracker.experiment_id).name
        raise AlLoopError(f"no finished comparison in experiment {name!r}: run `al-loop compare CONFIG` (or "
                          "`al-loop benchmark SUITE`) first")
    return found[0].info.run_id


def suite_from_mlflow(tracker: Tracker, parent_run_id: str) -> StoredSuite:
    """Rebuild a suite's runs from its child runs (curves, full-pool accuracy, budget, batch) and summarize them
    with the parent's targets, bootstrap and first seed: the table the command printed."""
    parent = tracker.client.get_run(parent_run_id)
    params = parent.data.params
    runs = sorted((_seed_run(tracker, child) for child in tracker.child_runs(parent_run_id)
                   if child.info.status == "FINISHED"), key=lambda r: (r.dataset, r.strategy, r.seed))
    if not runs:
        raise AlLoopError(f"the parent run {parent_run_id} has no finished child runs")
    targets = json.loads(params.get("targets", "[0.95, 0.98]"))
    table = summarize(runs, targets, int(params.get("bootstrap", "2000")), seed=int(params.get("first_seed", "0")))
    return StoredSuite(parent_run_id=parent_run_id, kind=parent.data.tags.get("al_loop.kind", "benchmark"),
                       name=parent.info.run_name, runs=runs, table=table)


def _seed_run(tracker: Tracker, child: Any) -> SeedRun:
    tags, metrics = child.data.tags, child.data.metrics
    if "full_pool_accuracy" not in metrics:
        raise AlLoopError(f"run {child.info.run_id} ({child.info.run_name}) has no full_pool_accuracy: it was made by "
                          "an earlier al-loop; re-run the comparison in a new output_dir")
    steps, accuracy = tracker.metric_curve(child.info.run_id, "accuracy")
    _, seconds = tracker.metric_curve(child.info.run_id, "round_seconds")
    _, arms = tracker.metric_curve(child.info.run_id, "auto/arm")
    drawn = Counter(int(a) for a in arms)
    return SeedRun(dataset=tags["dataset"], strategy=tags["strategy"], seed=int(tags["seed"]),
                   steps=np.array(steps), accuracy=np.array(accuracy), full_accuracy=metrics["full_pool_accuracy"],
                   round_seconds=float(np.nanmean(seconds[1:])) if seconds[1:] else np.nan, run_id=child.info.run_id,
                   budget=float(tags["common_budget"]) if "common_budget" in tags else None,
                   batch_size=int(child.data.params["loop.batch_size"]),
                   arms={AUTO_ARMS[i]: n for i, n in sorted(drawn.items())})
