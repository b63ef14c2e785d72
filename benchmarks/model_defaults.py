"""The default model's regularization, measured: LogisticRegression's C on text and on numeric data.

For each dataset (features as in configs/benchmark.yaml: TF-IDF for the text pools shipped in data/, standard
scaling for scikit-learn's digits and breast_cancer, 30% held out as there), each seed and each size n, n labels
are drawn at random from the pool (the first n of one seeded permutation per seed, so the sizes of a seed are
nested) and LogisticRegression(C, max_iter=1000) is fitted through al_loop.model.fit; it is measured on the
held-out test rows: accuracy, log loss and the mean max-probability (how confident the model says it is; compare
it with the accuracy).

With --loops, also margin and random loops on newsgroups6 (simulation, 3 seeds), per C: accuracy and log loss
at some label counts.

Run: .venv/bin/python benchmarks/model_defaults.py [--seeds 5] [--sizes 50 100 200 300 600] [--cs 1 3 10 30 100]
         [--datasets newsgroups6 ng20 rotten_tomatoes digits breast_cancer] [--loops]
A text pool whose files are absent is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from al_loop.compare import to_markdown
from al_loop.config import config_from_dict
from al_loop.loop import run_loop
from al_loop.model import evaluate, fit
from al_loop.workspace import prepare

REPO = Path(__file__).resolve().parents[1]


def _text(name: str, **features: object) -> dict:
    return {"dataset": {"path": f"data/{name}-pool.csv.gz", "test_path": f"data/{name}-test.csv.gz",
                        "text_column": "text"}, "features": features}


DATASETS = {
    "newsgroups6": _text("newsgroups6", max_features=8000, min_df=3, stop_words="english"),
    "ng20": _text("ng20", max_features=10000, min_df=2, stop_words="english"),
    "rotten_tomatoes": _text("rotten_tomatoes", max_features=20000, min_df=2, ngram_max=2),
    "digits": {"dataset": {"name": "digits", "test_size": 0.3}},
    "breast_cancer": {"dataset": {"name": "breast_cancer", "test_size": 0.3}},
}


def measure(datasets: list[str], seeds: int, sizes: list[int], cs: list[float]) -> pd.DataFrame:
    rows = []
    for name in datasets:
        path = DATASETS[name]["dataset"].get("path")
        if path is not None and not (REPO / path).exists():
            print(f"skipped {name}: {path} not found", flush=True)
            continue
        config = config_from_dict({**DATASETS[name], "compute": {"store_features": False}}, REPO, name)
        workspace = prepare(config)  # the split of a bundled dataset uses config.seed (0), as in the benchmark
        pool_labels = np.asarray(workspace.splits.pool.labels, dtype=object)
        test_labels = np.asarray(workspace.splits.test.labels, dtype=object)
        for seed in range(seeds):
            order = np.random.default_rng([seed, 2026]).permutation(len(pool_labels))
            for n in (s for s in sizes if s <= len(pool_labels)):
                picked = order[:n]
                for c in cs:
                    estimator = LogisticRegression(C=c, max_iter=1000, random_state=seed)
                    model = fit(estimator, workspace.x_pool[picked], pool_labels[picked], workspace.classes)
                    metrics = evaluate(model, workspace.x_test, test_labels)
                    confidence = model.predict_proba(workspace.x_test).max(axis=1).mean()
                    rows.append({"dataset": name, "C": c, "labels": n, "seed": seed, **metrics,
                                 "mean_max_proba": float(confidence)})
        print(f"done {name}", flush=True)
    return pd.DataFrame(rows)


def loops(seeds: int, cs: list[float]) -> pd.DataFrame:
    """Margin and random loops on newsgroups6 (batches of 10 from 20 random labels, to 600; simulation), per C."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        base = config_from_dict({**DATASETS["newsgroups6"], "compute": {"store_features": False},
                                 "loop": {"batch_size": 10, "initial_size": 20, "budget": 600},
                                 "tracking": {"uri": f"sqlite:///{folder}/mlflow.db", "log_model": False}},
                                REPO, "newsgroups6")
        workspace = prepare(base)
        for strategy in ("margin", "random"):
            for c in cs:
                for seed in range(seeds):
                    config = base.with_overrides(strategy=strategy, seed=seed).model_copy(update={
                        "output_dir": Path(folder) / f"C{c:g}",
                        "model": base.model.model_copy(update={"params": {"max_iter": 1000, "C": c}})})
                    for record in run_loop(config, workspace=workspace).rounds:
                        if "accuracy" in record.metrics:
                            rows.append({"strategy": strategy, "C": c, "seed": seed, "labels": record.n_labels,
                                         "accuracy": record.metrics["accuracy"],
                                         "log_loss": record.metrics["log_loss"]})
                print(f"done {strategy} C={c:g}", flush=True)
    return pd.DataFrame(rows)


def _cells(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per `keys`, one column per C, each cell the seed means of `metrics` joined by ' / '."""
    means = frame.groupby([*keys, "C"], sort=False)[metrics].mean().reset_index()
    means["cell"] = means[metrics].apply(lambda row: " / ".join(f"{v:.3f}" for v in row), axis=1)
    table = means.pivot(index=keys, columns="C", values="cell")
    table.columns = [f"C={c:g}" for c in table.columns]
    return table.reindex(frame[keys].drop_duplicates().itertuples(index=False, name=None) if len(keys) > 1
                         else frame[keys[0]].drop_duplicates()).reset_index()


def _print(table: pd.DataFrame) -> None:
    print(to_markdown(table))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 300, 600])
    parser.add_argument("--cs", type=float, nargs="+", default=[1, 3, 10, 30, 100])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--loops", action="store_true", help="also margin and random loops on newsgroups6 "
                        "(3 seeds, C = 1 and 10 unless --cs is given)")
    args = parser.parse_args()
    started = time.perf_counter()
    results = measure(args.datasets, args.seeds, args.sizes, args.cs)
    print(f"\nLogisticRegression(C, max_iter=1000) on n random labels, held-out test rows, mean of {args.seeds} "
          f"seeds: accuracy / log loss / mean max-probability ({time.perf_counter() - started:.0f} s)\n")
    _print(_cells(results, ["dataset", "labels"], ["accuracy", "log_loss", "mean_max_proba"]))
    spread = results.groupby(["dataset", "labels", "C"], sort=False)["accuracy"].std().max()
    print(f"\nlargest standard deviation of an accuracy over the seeds: {spread:.3f}")
    if args.loops:
        started = time.perf_counter()
        cs = args.cs if "--cs" in sys.argv else [1, 10]
        curves = loops(3, cs)
        curves = curves[curves["labels"].isin([50, 100, 150, 200, 300, 400, 600])]
        print(f"\nLoops on newsgroups6, mean of 3 seeds: accuracy / log loss ({time.perf_counter() - started:.0f} s)"
              "\n")
        _print(_cells(curves, ["strategy", "labels"], ["accuracy", "log_loss"]))


if __name__ == "__main__":
    main()
