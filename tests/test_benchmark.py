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

from al_loop.benchmark import SeedRun, load_benchmark, results_markdown, run_benchmark, summarize
from al_loop.curves import aubc
from al_loop.errors import ConfigError
from al_loop.strategies import select

from .conftest import REPO

STEPS = np.arange(10, 210, 10, dtype=float)


def _run(strategy: str, seed: int, accuracy: np.ndarray, full: float = 1.0) -> SeedRun:
    return SeedRun(dataset="toy", strategy=strategy, seed=seed, steps=STEPS, accuracy=accuracy, full_accuracy=full,
                   round_seconds=0.01, run_id=f"{strategy}-{seed}")


def _saturating(labels_to_full: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A curve that rises linearly to 1.0 at `labels_to_full` labels and stays there."""
    jitter = np.random.default_rng(seed).normal(0, noise, STEPS.size) if noise else 0.0
    return np.clip(STEPS / labels_to_full + jitter, 0, 1)


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


def test_a_curve_that_never_reaches_the_target_has_no_speed_up() -> None:
    runs = [_run("random", s, _saturating(150)) for s in range(4)]
    runs += [_run("margin", s, np.full(STEPS.size, 0.5)) for s in range(4)]
    row = summarize(runs, targets=[0.9], n_boot=100).set_index("strategy").loc["margin"]
    assert pd.isna(row["labels_to_90pct"]) and pd.isna(row["speedup_90pct"]) and pd.isna(row["speedup_90pct_low"])


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
    with pytest.raises(ValueError, match="needs the features"):
        select("ranked_batch", proba, 2, np.random.default_rng(0))


def test_a_suite_must_include_random_and_known_strategies(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump({"datasets": [{"name": "d", "dataset": {"name": "digits"}}],
                                    "strategies": ["margin"]}))
    with pytest.raises(ConfigError, match="include 'random'"):
        load_benchmark(path)
    path.write_text(yaml.safe_dump({"datasets": [{"name": "d", "dataset": {"name": "digits"}}],
                                    "strategies": ["random", "magic"]}))
    with pytest.raises(ConfigError, match="unknown strategies"):
        load_benchmark(path)


def test_a_loop_config_given_to_the_benchmark_gets_a_hint() -> None:
    with pytest.raises(ConfigError, match="is a loop config"):
        load_benchmark(REPO / "configs" / "quickstart.yaml")


def test_the_shipped_suite_loads() -> None:
    suite, configs = load_benchmark(REPO / "configs" / "benchmark.yaml")
    assert suite.seeds >= 10 and set(configs) == {"newsgroups6", "digits", "breast_cancer"}
    assert {"random", "least_confidence", "margin", "entropy", "ranked_batch"} <= set(suite.strategies)


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("bench")
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "id": "ci", "seeds": 2, "strategies": ["random", "margin", "ranked_batch"], "n_jobs": 2, "bootstrap": 100,
        "output_dir": "out", "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "experiment": "bench-ci"},
        "datasets": [{"name": "digits", "dataset": {"name": "digits", "test_size": 0.3},
                      "loop": {"batch_size": 10, "initial_size": 20, "budget": 50}}]}))
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
        assert all([s for s, _ in c] == [20, 30, 40, 50] for c in curves)
        expected = np.mean([aubc([s for s, _ in c], [v for _, v in c]) for c in curves])
        assert table.loc[strategy, "aubc"] == pytest.approx(expected)
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
    _, _, uri = small_suite
    monkeypatch.setenv("AL_LOOP_TRACKING_URI", uri)
    monkeypatch.setenv("AL_LOOP_EXPERIMENT", "bench-ci")
    notebook = nbformat.read(REPO / "notebooks" / "compare_learning_curves.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "6 runs, benchmark ci" in text
    assert all(name in text for name in ("random", "margin", "ranked_batch", "AUBC", "labels→95%"))
    assert any("image/png" in o.get("data", {}) for o in outputs), "the curves were drawn"
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert os.environ["AL_LOOP_EXPERIMENT"] == "bench-ci"
