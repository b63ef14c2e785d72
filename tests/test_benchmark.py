"""Benchmark: statistics on curves where the truth is known, ranked batch, and an end-to-end suite read
back from MLflow, with the comparison notebook executed against the store it produced."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient

from al_loop.benchmark import (
    SeedRun,
    bounded_percentile,
    load_benchmark,
    median_speedups,
    random_budgets,
    results_markdown,
    run_benchmark,
    summarize,
)
from al_loop.curves import aubc
from al_loop.errors import ConfigError

from .conftest import REPO
from .picking import select

STEPS = np.arange(10, 210, 10, dtype=float)


def _run(strategy: str, seed: int, accuracy: np.ndarray, full: float = 1.0, dataset: str = "toy",
         steps: np.ndarray = STEPS, budget: float | None = None) -> SeedRun:
    return SeedRun(dataset=dataset, strategy=strategy, seed=seed, steps=steps, accuracy=accuracy, full_accuracy=full,
                   round_seconds=0.01, run_id=f"{dataset}-{strategy}-{seed}", budget=budget, batch_size=10)


def _saturating(labels_to_full: float, noise: float = 0.0, seed: int = 0, steps: np.ndarray = STEPS) -> np.ndarray:
    """A curve that rises linearly to 1.0 at `labels_to_full` labels and stays there."""
    jitter = np.random.default_rng(seed).normal(0, noise, steps.size) if noise else 0.0
    return np.clip(steps / labels_to_full + jitter, 0, 1)


def test_a_strategy_twice_as_fast_shows_a_speed_up_of_two_with_a_tight_interval() -> None:
    runs = [_run("random", s, _saturating(200)) for s in range(10)]
    runs += [_run("margin", s, _saturating(100)) for s in range(10)]
    table = summarize(runs, targets=[0.5, 0.95], n_boot=300).set_index("strategy")
    assert table.loc["margin", "labels_to_95pct"] == 100 and table.loc["random", "labels_to_95pct"] == 190
    assert table.loc["margin", "speedup_50pct"] == pytest.approx(2.0)
    assert table.loc["margin", "speedup_50pct_low"] == pytest.approx(2.0)
    assert table.loc["margin", "speedup_50pct_high"] == pytest.approx(2.0)
    assert table.loc["margin", "aubc_vs_random"] == pytest.approx(aubc(STEPS, _saturating(100))
                                                                  - aubc(STEPS, _saturating(200)))
    assert table.loc["margin", "wins_vs_random"] == 10
    assert table.loc["margin", "wilcoxon_p"] < 0.01
    assert table.loc["random", "speedup_95pct"] == pytest.approx(1.0)


def test_the_paired_test_and_interval_reflect_noise_across_seeds() -> None:
    runs = [_run("random", s, _saturating(150, noise=0.05, seed=s)) for s in range(12)]
    runs += [_run("entropy", s, _saturating(100, noise=0.05, seed=100 + s)) for s in range(12)]
    runs += [_run("margin", s, _saturating(150, noise=0.05, seed=200 + s)) for s in range(12)]
    table = summarize(runs, targets=[0.9], n_boot=500).set_index("strategy")
    assert table.loc["entropy", "wilcoxon_p"] < 0.01, "a real gain over 12 paired seeds is significant"
    assert table.loc["margin", "wilcoxon_p"] > 0.05, "the same curve up to noise is not"
    low, high = table.loc["entropy", "speedup_90pct_low"], table.loc["entropy", "speedup_90pct_high"]
    assert low < table.loc["entropy", "speedup_90pct"] < high or low <= 1.5 <= high
    assert "| toy | entropy | 12 |" in results_markdown(summarize(runs, targets=[0.95], n_boot=100))


def test_random_short_of_the_target_gives_a_lower_bound_and_the_strategy_short_an_upper_bound() -> None:
    # random reaches 95% only past its last point (200): margin's 100 labels are at least (200 + 10) / 100 = 2.1x
    runs = [_run("random", s, _saturating(400)) for s in range(6)]
    runs += [_run("margin", s, _saturating(100)) for s in range(6)]
    table = summarize(runs, targets=[0.95], n_boot=200).set_index("strategy")
    margin = table.loc["margin"]
    assert margin["labels_to_95pct"] == 100 and pd.isna(table.loc["random", "labels_to_95pct"])
    assert margin["speedup_95pct"] == pytest.approx(2.1) and margin["speedup_95pct_bound"] == "lower"
    assert (margin["speedup_95pct_low"], margin["speedup_95pct_high"]) == pytest.approx((2.1, 2.1))
    assert margin["speedup_95pct_low_bound"] == margin["speedup_95pct_high_bound"] == "lower"
    assert margin["speedup_95pct_bound_share"] == 1.0
    assert table.loc["random", "speedup_95pct_bound"] == "none" and pd.isna(table.loc["random", "speedup_95pct"])
    markdown = results_markdown(table.reset_index())
    assert "| ≥2.10x [≥2.10, ≥2.10] |" in markdown and "| >200 |" in markdown  # random's labels: beyond 200

    # the other way round: margin never reaches 90%, random at 140 -> margin is at most 140 / 210
    runs = [_run("random", s, _saturating(150)) for s in range(4)]
    runs += [_run("margin", s, np.full(STEPS.size, 0.5)) for s in range(4)]
    row = summarize(runs, targets=[0.9], n_boot=100).set_index("strategy").loc["margin"]
    assert pd.isna(row["labels_to_90pct"]) and row["speedup_90pct_bound"] == "upper"
    assert row["speedup_90pct"] == pytest.approx(140 / 210) and row["speedup_90pct_high_bound"] == "upper"
    assert "≤0.67x [≤0.67, ≤0.67]" in results_markdown(summarize(runs, targets=[0.9], n_boot=100))

    # neither reaches: no figure
    runs = [_run("random", s, np.full(STEPS.size, 0.5)) for s in range(4)]
    runs += [_run("margin", s, np.full(STEPS.size, 0.6)) for s in range(4)]
    row = summarize(runs, targets=[0.9], n_boot=100).set_index("strategy").loc["margin"]
    assert row["speedup_90pct_bound"] == "none" and pd.isna(row["speedup_90pct"]) and pd.isna(row["speedup_90pct_low"])


def test_resamples_where_random_falls_short_count_as_bounds_in_the_interval() -> None:
    # random reaches 90% on 8 of 10 seeds (at 140) and stays at 0.6 on 2: some resamples never reach
    runs = [_run("random", s, _saturating(150) if s < 8 else np.full(STEPS.size, 0.6)) for s in range(10)]
    runs += [_run("margin", s, _saturating(100)) for s in range(10)]
    row = summarize(runs, targets=[0.9], n_boot=1000).set_index("strategy").loc["margin"]
    assert row["speedup_90pct_bound"] == "exact" and row["speedup_90pct"] == pytest.approx(150 / 90)
    assert 0 < row["speedup_90pct_bound_share"] < 1, "some resamples hold a bound, not all"
    # those resamples count random as needing 200 + 10 labels: the top of the interval is a lower bound
    assert row["speedup_90pct_high"] == pytest.approx(210 / 90) and row["speedup_90pct_high_bound"] == "lower"
    assert row["speedup_90pct_low"] == pytest.approx(140 / 90) and row["speedup_90pct_low_bound"] == "exact"
    assert "1.67x [1.56, ≥2.33]" in results_markdown(summarize(runs, targets=[0.9], n_boot=1000))


def test_a_percentile_over_bounds_says_which_way_it_can_move() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert bounded_percentile(values, np.zeros(5), 50) == (3.0, "exact")
    assert bounded_percentile(values, np.array([0, 0, 0, 0, 1]), 50) == (3.0, "exact"), "a bound above the median"
    assert bounded_percentile(values, np.array([0, 0, 1, 1, 1]), 50) == (3.0, "lower")
    assert bounded_percentile(values, np.array([-1, -1, -1, 0, 0]), 50) == (3.0, "upper")
    assert bounded_percentile(values, np.array([-1, -1, 1, 1, 1]), 50) == (3.0, "lower"), "bounds below only"
    assert bounded_percentile(values, np.array([0, 0, 1, 0, -1]), 50) == (3.0, "unknown")


def test_random_runs_further_but_curves_are_compared_on_the_common_budget() -> None:
    long_steps = np.arange(10, 410, 10, dtype=float)
    runs = [_run("random", s, _saturating(300, steps=long_steps), steps=long_steps, budget=200) for s in range(5)]
    runs += [_run("margin", s, _saturating(100), budget=200) for s in range(5)]
    table = summarize(runs, targets=[0.95], n_boot=200).set_index("strategy")
    assert table.loc["random", "labels_to_95pct"] == 290, "random's labels on its long curve"
    assert table.loc["margin", "speedup_95pct"] == pytest.approx(2.9)
    assert table.loc["margin", "speedup_95pct_bound"] == "exact"
    short_random = aubc(STEPS, _saturating(300))
    assert table.loc["random", "aubc"] == pytest.approx(short_random), "AUBC over the common budget"
    assert table.loc["margin", "aubc_vs_random"] == pytest.approx(aubc(STEPS, _saturating(100)) - short_random)
    assert table.loc["random", "final_accuracy"] == pytest.approx(200 / 300)
    assert table.loc["margin", "wins_vs_random"] == 5 and table.loc["random", "budget"] == 200


def test_identical_curves_get_identical_intervals_whatever_the_table_holds() -> None:
    random = [_run("random", s, _saturating(160, noise=0.04, seed=s)) for s in range(10)]
    twin = [_saturating(110, noise=0.04, seed=50 + s) for s in range(10)]
    margin = [_run("margin", s, twin[s]) for s in range(10)]
    entropy = [_run("entropy", s, twin[s]) for s in range(10)]
    other = [_run("least_confidence", s, _saturating(120, noise=0.04, seed=90 + s)) for s in range(10)]
    columns = ["speedup_90pct_low", "speedup_90pct_high", "speedup_95pct_low", "speedup_95pct_high"]

    def intervals(runs: list[SeedRun], strategy: str) -> list[float]:
        return summarize(runs, targets=[0.9, 0.95], n_boot=400).set_index("strategy").loc[strategy, columns].tolist()

    everything = random + other + margin + entropy
    assert intervals(everything, "margin") == intervals(everything, "entropy")
    assert intervals(random + margin, "margin") == intervals(everything, "entropy") == intervals(random + entropy,
                                                                                               "entropy")
    assert intervals(everything, "least_confidence") != intervals(everything, "margin")


def test_targets_are_shares_of_each_seeds_own_full_pool_accuracy() -> None:
    # seed 0: full-pool accuracy 1.0, at 200 / 220 = 0.91 of it at the end; seed 1: full 0.6, at 0.6 at once.
    # Mean normalized curve: (s / 220 + 1) / 2 >= 0.95 at s = 200. On raw accuracy against the mean full
    # accuracy (0.8) it would need (s / 220 + 0.6) / 2 >= 0.76: never within 200.
    curves = {0: (_saturating(220), 1.0), 1: (np.full(STEPS.size, 0.6), 0.6)}
    runs = [_run(strategy, s, curve, full=full) for strategy in ("random", "margin")
            for s, (curve, full) in curves.items()]
    table = summarize(runs, targets=[0.95], n_boot=100).set_index("strategy")
    assert table.loc["margin", "labels_to_95pct"] == 200 and table.loc["random", "labels_to_95pct"] == 200
    assert table.loc["margin", "reached_95pct"] == 1, "seed 0 alone never reaches 95% of its own accuracy"
    assert table.loc["margin", "full_pool_accuracy"] == pytest.approx(0.8)


def test_a_target_the_initial_set_already_reaches_has_no_speed_up() -> None:
    runs = [_run("random", s, np.clip(0.97 + STEPS / 20000, 0, 1)) for s in range(4)]
    runs += [_run("margin", s, np.clip(0.97 + STEPS / 5000, 0, 1)) for s in range(4)]
    table = summarize(runs, targets=[0.95, 0.98], n_boot=100).set_index("strategy")
    margin = table.loc["margin"]
    assert margin["labels_to_95pct"] == 10 and margin["speedup_95pct_bound"] == "initial"
    assert pd.isna(margin["speedup_95pct"]) and pd.isna(margin["speedup_95pct_low"])
    assert margin["speedup_98pct_bound"] == "exact" and margin["speedup_98pct"] == pytest.approx(200 / 50)
    cells = results_markdown(table.reset_index()).splitlines()[2 + 1].split(" | ")  # the margin row
    assert "initial" in cells and not any(c.startswith("1.00x") for c in cells)


def test_strategies_with_identical_curves_are_named_in_a_note() -> None:
    runs = [_run("random", s, _saturating(150, noise=0.03, seed=s)) for s in range(5)]
    same = [_saturating(100, noise=0.03, seed=20 + s) for s in range(5)]
    for strategy in ("least_confidence", "margin", "entropy"):
        runs += [_run(strategy, s, same[s]) for s in range(5)]
    runs += [_run("ranked_batch", s, same[s] if s else same[s] + 0.001) for s in range(5)]  # one seed differs
    table = summarize(runs, targets=[0.95], n_boot=100).set_index("strategy")
    assert table.loc["least_confidence", "identical_to"] == table.loc["entropy", "identical_to"] == "margin"
    assert pd.isna(table.loc["margin", "identical_to"]) and pd.isna(table.loc["ranked_batch", "identical_to"])
    assert "- toy: least_confidence, entropy: identical curves to margin (every seed)" in results_markdown(
        table.reset_index())


def _dataset(name: str, margin: np.ndarray, random: np.ndarray) -> list[SeedRun]:
    return [_run(s, seed, curve, dataset=name) for s, curve in (("random", random), ("margin", margin))
            for seed in range(4)]


def test_the_median_speed_up_over_datasets_counts_bounds_and_says_so() -> None:
    runs = _dataset("a", _saturating(100), _saturating(200))  # 190 / 100 = 1.9x
    runs += _dataset("b", _saturating(100), _saturating(150))  # 150 / 100 = 1.5x
    runs += _dataset("c", _saturating(100), _saturating(400))  # random short: >= 2.1x
    runs += _dataset("d", np.full(STEPS.size, 0.99), np.full(STEPS.size, 0.99))  # initial
    table = summarize(runs, targets=[0.95], n_boot=100)
    medians = median_speedups(table).set_index("strategy")
    assert medians.loc["margin", "median_speedup"] == pytest.approx(1.9)
    assert medians.loc["margin", "median_bound"] == "exact", "raising the bound would not move the median"
    assert (medians.loc["margin", "lower_bounds"], medians.loc["margin", "initial"]) == (1, 1)
    assert ("- margin: 1.90x (3 datasets; 1 of 3 are lower bounds; left out: 1 reached by the initial set)"
            in results_markdown(table))

    runs += _dataset("e", _saturating(100), _saturating(400))  # a second lower bound: now the median is one
    table = summarize(runs, targets=[0.95], n_boot=100)
    assert "- margin: ≥2.00x (4 datasets; 2 of 4 are lower bounds;" in results_markdown(table)


def test_ranked_batch_spreads_its_picks_where_top_k_does_not() -> None:
    # two tight clusters of equally ambiguous rows: top-k takes one cluster, ranked batch both
    x = np.vstack([np.full((5, 2), 0.0), np.full((5, 2), 10.0), [[5.0, 5.0]]])
    x += np.random.default_rng(0).normal(0, 0.01, (11, 2))
    proba = np.array([[0.5, 0.5]] * 5 + [[0.55, 0.45]] * 5 + [[0.9, 0.1]])
    labeled = np.array([[5.0, 5.0]])
    top = select("least_confidence", proba, 2, np.random.default_rng(0)).rows
    spread = select("ranked_batch", proba, 2, np.random.default_rng(0), x_candidates=x, x_labeled=labeled).rows
    assert set(top) <= set(range(5)), "top-k: both from the first cluster"
    assert len(set(spread)) == 2 and {int(r) // 5 for r in spread} == {0, 1}, "ranked batch: one per cluster"


def test_a_suite_must_include_random_and_known_strategies(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"datasets": [{"name": "d", "dataset": {"name": "digits"}}],
                                    "strategies": ["margin"]}))
    with pytest.raises(ConfigError, match="include 'random'"):
        load_benchmark(path)
    path.write_text(yaml.safe_dump({"datasets": [{"name": "d", "dataset": {"name": "digits"}}],
                                    "strategies": ["random", "magic"]}))
    with pytest.raises(ConfigError, match="unknown strategy 'magic'; choose one of random"):
        load_benchmark(path)


@pytest.mark.parametrize(("strategies", "message"), [(["margin", "auto"], "include 'random'"),
                                                     (["random", "bald"], "(?s)--strategies.*unknown strategy 'bald'")])
def test_a_strategy_subset_on_the_command_line_is_checked_like_the_suite(tmp_path: Path, strategies: list[str],
                                                                         message: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"datasets": [{"name": "d", "dataset": {"name": "digits"}}],
                                    "output_dir": str(tmp_path / "out")}))
    with pytest.raises(ConfigError, match=message):
        run_benchmark(path, seeds=2, strategies=strategies)
    assert not (tmp_path / "out" / "default" / "d").exists(), "nothing ran"


def test_a_loop_config_given_to_the_benchmark_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match="is a loop config"):
        load_benchmark(REPO / "configs" / "quickstart.yaml")


def _suite(tmp_path: Path, *datasets: dict, **keys) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"id": "t", "output_dir": str(tmp_path / "out"), "strategies": ["random", "margin"],
                                    "datasets": list(datasets), **keys}))
    return path


def test_random_budget_per_dataset_or_suite_wide_is_checked_against_the_common_budget(tmp_path: Path) -> None:
    loop = {"batch_size": 10, "initial_size": 20, "budget": 100}
    digits = {"name": "d", "dataset": {"name": "digits"}, "loop": loop}
    suite, configs = load_benchmark(_suite(tmp_path, {**digits, "random_budget": 250}))
    assert random_budgets(suite, configs) == {"d": 250} and configs["d"].loop.budget == 100
    suite, configs = load_benchmark(_suite(tmp_path, digits, random_budget_factor=1.5))
    assert random_budgets(suite, configs) == {"d": 150}
    suite, configs = load_benchmark(_suite(tmp_path, digits))
    assert random_budgets(suite, configs) == {"d": None}
    with pytest.raises(ConfigError, match=r"datasets\[d\]\.random_budget \(50\) is below loop.budget \(100\)"):
        load_benchmark(_suite(tmp_path, {**digits, "random_budget": 50}))
    with pytest.raises(ConfigError, match=r"must be a multiple of loop\.batch_size"):
        load_benchmark(_suite(tmp_path, {**digits, "loop": {**loop, "budget": 105}, "random_budget": 300}))
    with pytest.raises(ConfigError, match=r"leave loop\.max_rounds unset"):
        load_benchmark(_suite(tmp_path, {**digits, "loop": {**loop, "max_rounds": 5}}, random_budget_factor=2))


def test_a_generated_dataset_is_written_once_and_read_as_features(tmp_path: Path) -> None:
    moons = {"name": "moons", "dataset": {"test_size": 0.3},
             "generator": {"kind": "make_moons", "params": {"n_samples": 300, "noise": 0.2}, "random_state": 3}}
    _, configs = load_benchmark(_suite(tmp_path, moons))
    file = tmp_path / "out" / "t" / "data" / "moons.parquet"
    assert configs["moons"].dataset.path == file and configs["moons"].dataset.feature_columns == ["f0", "f1"]
    assert configs["moons"].dataset.test_size == 0.3
    frame = pd.read_parquet(file)
    assert list(frame.columns) == ["id", "f0", "f1", "label"] and len(frame) == 300
    assert frame["id"].iloc[0] == "moons-000000" and set(frame["label"]) == {"0", "1"}
    written = file.stat().st_mtime_ns
    load_benchmark(_suite(tmp_path, moons))
    assert file.stat().st_mtime_ns == written, "the same generator: the file is kept"
    changed = {**moons, "generator": {**moons["generator"], "random_state": 4}}
    with pytest.raises(ConfigError, match=r"datasets\[moons\]\.generator: .*holds other data"):
        load_benchmark(_suite(tmp_path, changed))


@pytest.mark.parametrize(("generator", "dataset", "message"), [
    ({"kind": "load_iris"}, {}, r"generator\.kind"),
    ({"kind": "os.system"}, {}, r"generator\.kind"),
    ({"kind": "make_moons", "params": {"bogus": 1}}, {},
     r"datasets\[g\]\.generator\.params\.bogus: make_moons has no such parameter; it takes n_samples, noise"),
    ({"kind": "make_blobs", "params": {"random_state": 1}}, {}, r"params\.random_state: not allowed; set generator"),
    ({"kind": "make_blobs", "params": {"return_centers": True}}, {}, r"params\.return_centers: not allowed"),
    ({"kind": "make_classification", "params": {"n_features": 2}}, {},
     r"datasets\[g\]\.generator\.params: make_classification refused them"),
    ({"kind": "make_circles"}, {"path": "x.csv"}, r"datasets\[g\]: `generator` makes the data, so dataset\.path"),
])
def test_a_bad_generator_is_refused_naming_the_key(tmp_path: Path, generator: dict, dataset: dict,
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_benchmark(_suite(tmp_path, {"name": "g", "dataset": dataset, "generator": generator}))


def test_the_shipped_suite_loads(tmp_path: Path) -> None:
    suite, configs = load_benchmark(REPO / "configs" / "benchmark.yaml", output_dir=tmp_path)
    assert suite.id == "v2" and suite.seeds >= 10 and len(configs) >= 8
    assert {"newsgroups6", "digits", "breast_cancer", "moons", "imbalanced", "ng20", "rotten_tomatoes",
            "large"} <= set(configs)
    assert {"random", "least_confidence", "margin", "entropy", "ranked_batch", "margin_diverse"} <= set(
        suite.strategies)
    batch50 = [n for n, c in configs.items() if c.loop.batch_size == 50]
    assert len(batch50) >= 3 and all(n.endswith("-b50") and configs[n[:-4]].loop.batch_size == 10 for n in batch50)
    assert all(c.loop.batch_size == 10 for n, c in configs.items() if n not in batch50)
    labels = pd.read_parquet(configs["imbalanced"].dataset.path)["label"].value_counts(normalize=True)
    assert labels.min() <= 0.05, "the rarest class is at most 5%"
    assert len(pd.read_parquet(configs["large"].dataset.path)) >= 20000
    assert configs["moons"].model.estimator == "sklearn.svm.SVC"
    test = pd.read_csv(configs["ng20"].dataset.test_path)
    assert test["label"].nunique() == 20 and test["id"].str.startswith("ng20-test-").all()
    assert pd.read_csv(configs["rotten_tomatoes"].dataset.path)["label"].nunique() == 2
    assert all(b is None or b > configs[n].loop.budget for n, b in random_budgets(suite, configs).items())


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bench")
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "id": "ci", "seeds": 2, "strategies": ["random", "margin", "ranked_batch"], "n_jobs": 2, "bootstrap": 100,
        "output_dir": "out", "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "bench-ci"},
        "datasets": [{"name": "digits", "dataset": {"name": "digits", "test_size": 0.3},
                      "loop": {"batch_size": 10, "initial_size": 20, "budget": 50}, "random_budget": 70}]}))
    return path, run_benchmark(path), f"sqlite:///{folder / 'mlflow.db'}"


@pytest.mark.e2e
def test_benchmark_logs_a_parent_and_a_child_per_dataset_strategy_seed(small_suite) -> None:
    _, result, uri = small_suite
    client = MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted((c.data.tags["dataset"], c.data.tags["strategy"], c.data.tags["seed"]) for c in children) == [
        ("digits", s, seed) for s in ("margin", "random", "ranked_batch") for seed in ("0", "1")]
    assert {c.data.tags["benchmark_id"] for c in children} == {"ci"}
    table = result.table.set_index("strategy")
    for strategy in ("margin", "random", "ranked_batch"):
        curves = [sorted((m.step, m.value) for m in client.get_metric_history(c.info.run_id, "accuracy"))
                  for c in children if c.data.tags["strategy"] == strategy]
        steps = [20, 30, 40, 50, 60, 70] if strategy == "random" else [20, 30, 40, 50]  # random_budget: 70
        assert all([s for s, _ in c] == steps for c in curves)
        expected = np.mean([aubc([s for s, _ in c[:4]], [v for _, v in c[:4]]) for c in curves])
        assert table.loc[strategy, "aubc"] == pytest.approx(expected), "AUBC over the common budget (50)"
        logged = [c.data.metrics["aubc"] for c in children if c.data.tags["strategy"] == strategy]
        assert np.mean(logged) == pytest.approx(expected), "each child's own AUBC, also up to the common budget"
    assert table.loc["random", "labels_span"] == 70 and table.loc["margin", "labels_span"] == 50
    assert {c.data.tags["common_budget"] for c in children} == {"50"}
    assert "median_speedup_95pct.margin" in parent.data.tags
    assert {"results.csv", "results.md", "median_speedups.csv"} <= {a.path for a in client.list_artifacts(
        result.parent_run_id)}
    assert {"results.csv", "results.md", "curves_digits.png"} <= {a.path for a in client.list_artifacts(
        result.parent_run_id)}
    assert pd.read_csv(result.folder / "results.csv").shape[0] == 3
    assert all("select_seconds" in c.data.metrics for c in children)


@pytest.mark.e2e
def test_a_rerun_resumes_from_the_ledgers(small_suite) -> None:
    path, first, _ = small_suite
    again = run_benchmark(path)
    assert again.parent_run_id == first.parent_run_id
    assert {r.run_id for r in again.runs} == {r.run_id for r in first.runs}
    pd.testing.assert_frame_equal(again.table, first.table)


@pytest.mark.e2e
def test_the_comparison_notebook_runs_against_the_store(small_suite, monkeypatch: pytest.MonkeyPatch) -> None:
    _, result, uri = small_suite
    monkeypatch.setenv("AL_LOOP_TRACKING_URI", uri)
    monkeypatch.setenv("AL_LOOP_EXPERIMENT", "bench-ci")
    notebook = nbformat.read(REPO / "notebooks" / "compare_learning_curves.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "benchmark benchmark-ci" in text and ": 6 runs" in text
    assert results_markdown(result.table) in text, "the table the command wrote, recomputed from MLflow"
    assert all(name in text for name in ("random", "margin", "ranked_batch", "AUBC", "labels→95%"))
    assert any("image/png" in o.get("data", {}) for o in outputs), "the curves were drawn"
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert os.environ["AL_LOOP_EXPERIMENT"] == "bench-ci"
