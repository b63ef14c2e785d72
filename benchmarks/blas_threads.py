"""BLAS threads (compute.blas_threads), measured quiet and under load: a simulated al-loop run and a single fit.

Workloads (the model work of al-loop rounds, through al_loop.model.fit, al_loop.scoring.top_candidates and
al_loop.threads.blas_limit, without the ledger and MLflow):
- `loop`: a margin loop on a synthetic pool (make_classification, 20 features, 5 classes, --pool rows): 20 random
  labels, then batches of 10 up to --labels labels; each round fits the default LogisticRegression(max_iter=1000)
  and scores the unlabeled pool in chunks.
- `fit`: one fit of that model on 1,500 rows of digits (64 features, 10 classes).

Settings: blas_threads 1, 2, and `library` (no limit: OpenBLAS's own default, one thread per core). Load: `quiet`
(nothing started by the benchmark; other jobs on the machine are reported as the load average) and `loaded`
(--busy busy-loop processes running during the measurement). Paired round-robin: every repeat measures every
setting under both loads, the order of the settings rotating from repeat to repeat. Medians over the repeats.

Run: .venv/bin/python benchmarks/blas_threads.py [--repeats 3] [--labels 2000] [--pool 6000] [--busy 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

from al_loop.model import fit
from al_loop.scoring import top_candidates
from al_loop.threads import blas_limit

SETTINGS: tuple[str, ...] = ("1", "2", "library")
SEED = 0


def limit(setting: str) -> Any:
    """The context of a setting: blas_limit(n), or nothing for the library's default."""
    return nullcontext() if setting == "library" else blas_limit(int(setting))


def simulated_loop(x: np.ndarray, y: np.ndarray, labels: int, setting: str) -> float:
    """Seconds of a margin loop's model work up to `labels` labels (20 random, then batches of 10)."""
    classes = sorted(map(str, set(y)))
    rng = np.random.default_rng(SEED)
    labeled = list(rng.choice(len(x), 20, replace=False))
    template = LogisticRegression(max_iter=1000, random_state=SEED)
    started = time.perf_counter()
    while len(labeled) < labels:
        with limit(setting):
            rows = np.sort(np.array(labeled))
            model = fit(template, x[rows], y[rows].astype(str), classes)
            available = np.setdiff1d(np.arange(len(x)), rows)
            picked = top_candidates(model, x, available, "margin", 10, 65536).rows
        labeled += [int(r) for r in picked]
    return time.perf_counter() - started


def single_fit(x: np.ndarray, y: np.ndarray, setting: str) -> float:
    """Seconds of one fit of the default model."""
    template = LogisticRegression(max_iter=1000, random_state=SEED)
    started = time.perf_counter()
    with limit(setting):
        fit(template, x, y.astype(str), sorted(map(str, set(y))))
    return time.perf_counter() - started


@contextmanager
def busy(processes: int) -> Any:
    """`processes` busy-loop Python processes for the duration (none for 0)."""
    started = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5 if started else 0)
        yield
    finally:
        for process in started:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labels", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=6000)
    parser.add_argument("--busy", type=int, default=2)
    args = parser.parse_args()
    x_pool, y_pool = make_classification(n_samples=args.pool, n_features=20, n_informative=12, n_classes=5,
                                         random_state=SEED)
    digits = load_digits()
    pick = np.random.default_rng(SEED).choice(len(digits.target), 1500, replace=False)
    x_fit, y_fit = digits.data[pick] / 16.0, digits.target[pick]
    blas = [f"{lib['internal_api']} {lib.get('version')} ({lib['num_threads']} threads)"
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    print(f"cores: {os.cpu_count()}; BLAS: {'; '.join(blas)}; load average before: {os.getloadavg()}")
    workloads: dict[str, Callable[[str], float]] = {
        "loop": lambda s: simulated_loop(x_pool, y_pool, args.labels, s),
        "fit": lambda s: single_fit(x_fit, y_fit, s),
    }
    times: dict[tuple[str, str, str], list[float]] = {}
    loads: dict[str, list[float]] = {"quiet": [], "loaded": []}
    for repeat in range(args.repeats):
        order = SETTINGS[repeat % len(SETTINGS):] + SETTINGS[:repeat % len(SETTINGS)]
        for load, processes in (("quiet", 0), ("loaded", args.busy)):
            with busy(processes):
                for setting in order:
                    for name, run in workloads.items():
                        times.setdefault((name, load, setting), []).append(run(setting))
                loads[load].append(os.getloadavg()[0])
        print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    print(f"\nload average (1 min) at the end of each measurement: quiet {loads['quiet']}, "
          f"loaded {loads['loaded']}\n")
    print("| workload | load | blas_threads 1 (s) | 2 (s) | library default (s) | 2 / 1 | default / 1 |")
    print("|---|---|---|---|---|---|---|")
    for name in workloads:
        for load in loads:
            med = {s: statistics.median(times[(name, load, s)]) for s in SETTINGS}
            print(f"| {name} | {load} | {med['1']:.2f} | {med['2']:.2f} | {med['library']:.2f} "
                  f"| {med['2'] / med['1']:.1f}x | {med['library'] / med['1']:.1f}x |")


if __name__ == "__main__":
    main()
