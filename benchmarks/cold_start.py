"""Cold start: a typical initial set (loop.initial_strategy: typical) against a random one, same seeds.

Runs ordinary al-loop loops in simulation (the oracle answers) for each dataset x strategy x seed, once with a
random and once with a typical initial set, and prints the mean AUBC and final test accuracy of each, and the
paired difference. One command:

    .venv/bin/python benchmarks/cold_start.py --seeds 4 [--datasets digits,checkerboard] [--strategies random,auto]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from mlflow.tracking import MlflowClient

from al_loop.benchmark import checkerboard_blobs
from al_loop.compare import to_markdown
from al_loop.config import config_from_dict
from al_loop.curves import aubc
from al_loop.loop import run_loop

REPO = Path(__file__).resolve().parents[1]
LOGISTIC = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}}
SETUPS = {
    "checkerboard": {"dataset": {"path": "{work}/checkerboard.csv", "feature_columns": ["f0", "f1"],
                                 "test_size": 0.3},
                     "model": {"estimator": "sklearn.svm.SVC", "params": {}, "calibration": "sigmoid"},
                     "loop": {"batch_size": 10, "initial_size": 20, "budget": 300}},
    "digits": {"dataset": {"name": "digits", "test_size": 0.3}, "model": LOGISTIC,
               "loop": {"batch_size": 10, "initial_size": 20, "budget": 300}},
    "breast_cancer": {"dataset": {"name": "breast_cancer", "test_size": 0.3}, "model": LOGISTIC,
                      "loop": {"batch_size": 5, "initial_size": 10, "budget": 150}},
    "newsgroups6": {"dataset": {"path": str(REPO / "data/newsgroups6-pool.csv.gz"),
                                "test_path": str(REPO / "data/newsgroups6-test.csv.gz"), "text_column": "text"},
                    "features": {"max_features": 8000, "min_df": 3, "stop_words": "english"},
                    "model": {**LOGISTIC, "params": {"max_iter": 1000, "C": 10}},
                    "loop": {"batch_size": 10, "initial_size": 20, "budget": 200}},
}


def _one(work: Path, dataset: str, strategy: str, seed: int, initial: str) -> dict[str, object]:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    setup = SETUPS[dataset]
    sections = {**setup, "dataset": {k: v.format(work=work) if isinstance(v, str) else v
                                     for k, v in setup["dataset"].items()},
                "loop": {**setup["loop"], "strategy": strategy, "initial_strategy": initial}, "seed": seed,
                "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}", "log_model": False},
                "output_dir": str(work / f"{dataset}-{initial}")}
    result = run_loop(config_from_dict(sections, work, f"{dataset}/{strategy}/{initial}"))
    steps, accuracy = result.curve
    return {"dataset": dataset, "strategy": strategy, "seed": seed, "initial": initial,
            "aubc": aubc(steps, accuracy), "final": float(accuracy[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="checkerboard,digits,breast_cancer,newsgroups6")
    parser.add_argument("--strategies", default="random,margin,auto")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        x, y = checkerboard_blobs(n_samples=4000, grid=3, cluster_std=0.25, random_state=0)
        pd.DataFrame({"id": [f"cb-{i}" for i in range(len(y))], "f0": x[:, 0], "f1": x[:, 1], "label": y}).to_csv(
            work / "checkerboard.csv", index=False)
        MlflowClient(f"sqlite:///{work / 'mlflow.db'}").search_experiments()  # create the store before the workers
        rows = Parallel(n_jobs=args.jobs)(
            delayed(_one)(work, d, s, seed, initial) for d in args.datasets.split(",")
            for s in args.strategies.split(",") for seed in range(args.seeds) for initial in ("random", "typical"))
    frame = pd.DataFrame(rows)
    wide = frame.pivot_table(index=["dataset", "strategy", "seed"], columns="initial", values=["aubc", "final"])
    paired = (wide["aubc"]["typical"] - wide["aubc"]["random"]).groupby(["dataset", "strategy"])
    table = frame.groupby(["dataset", "strategy", "initial"])[["aubc", "final"]].mean().unstack("initial")
    table.columns = [f"{metric} ({initial})" for metric, initial in table.columns]
    table["ΔAUBC typical − random"] = paired.mean()
    table["typical wins"] = paired.apply(lambda d: f"{int((d > 0).sum())}/{len(d)}")
    print(to_markdown(table.reset_index().round(4)))
    print(f"\n{args.seeds} seeds, {time.perf_counter() - started:.0f} s")
    return None


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
