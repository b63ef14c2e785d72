"""Is "the best single strategy" of a suite entry a stable fact or seed noise?

Reads the per-seed learning curves of a finished benchmark (its ledgers), computes each seed's AUBC over the
common budget, and, for every way of splitting the seeds into two halves, picks the best single strategy on one
half and scores it on the other: how often it is within 0.01 AUBC of the other half's best, and the median gap.
If the held-out pick is nearly always within 0.01, the bar "auto within 0.01 of the best single strategy"
measures what auto costs, not noise. One command, after `al-loop benchmark configs/benchmark.yaml`:

    .venv/bin/python benchmarks/best_strategy_stability.py [runs/benchmark/v2]
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from al_loop.curves import aubc

TOLERANCE = 0.01


def seed_aubcs(root: Path) -> pd.DataFrame:
    """AUBC of every (dataset, strategy, seed) run under a benchmark folder, up to the entry's budget."""
    budget = pd.read_csv(root / "results.csv").groupby("dataset")["budget"].first().to_dict()
    rows = []
    for path in sorted(root.glob("*/*-seed*/ledger.sqlite")):
        dataset, (strategy, seed) = path.parent.parent.name, path.parent.name.rsplit("-seed", 1)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            stored = db.execute("SELECT n_labels, metrics FROM rounds WHERE n_labels IS NOT NULL AND metrics IS NOT "
                                "NULL ORDER BY round").fetchall()
        points = [(n, m["accuracy"]) for n, text in stored if "accuracy" in (m := json.loads(text))
                  and n <= budget[dataset]]
        if len(points) >= 2:
            rows.append((dataset, strategy, int(seed), aubc(*zip(*points, strict=True))))
    return pd.DataFrame(rows, columns=["dataset", "strategy", "seed", "aubc"])


def stability(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: auto vs random and vs the best single strategy, and the split-half check of that best."""
    out = []
    for dataset, group in table.pivot_table(index=["dataset", "seed"], columns="strategy", values="aubc").groupby(
            level=0):
        group = group.dropna(axis=1, how="all").dropna()
        singles = [c for c in group.columns if c != "auto"]
        means = group.mean()
        best = max(singles, key=means.__getitem__)
        n = len(group)
        gaps = []
        for half in itertools.combinations(range(n), n // 2):
            other = group.iloc[[i for i in range(n) if i not in half]]
            pick = max(singles, key=lambda c, h=group.iloc[list(half)]: h[c].mean())
            gaps.append(other[pick].mean() - max(other[c].mean() for c in singles))
        gaps_array = np.array(gaps)
        out.append({"dataset": dataset, "seeds": n, "best": best,
                    "auto - random": means.get("auto", np.nan) - means["random"],
                    "auto - best": means.get("auto", np.nan) - means[best],
                    "held-out pick within 0.01": float(np.mean(gaps_array >= -TOLERANCE)),
                    "median held-out gap": float(np.median(gaps_array))})
    return pd.DataFrame(out)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmark/v2")
    print(stability(seed_aubcs(root)).to_markdown(index=False, floatfmt=("", "", "", "+.3f", "+.3f", ".2f", "+.3f")))


if __name__ == "__main__":
    main()
