"""Annotator quality in simulation: overlap, consensus (majority, Dawid-Skene) and specialist adjudication.

A simulated crowd labels a margin loop to its budget; one member answers at random (digits) or always wrong
(breast_cancer). For each scenario and seed the benchmark reads the run's ledger and MLflow metrics back and
reports, as mean ± std over seeds:
- label accuracy: share of the training labels equal to the ground truth (the pool's label column);
- model accuracy: the final model on the held-out split;
- answers per label: routine (crowd) answers / training labels; specialist answers (expert lane);
- Krippendorff's alpha over the overlapped examples (n/a without overlap);
- the bad annotator flagged (seeds out of N), good annotators wrongly flagged (seeds with any);
- the best single annotator's measured accuracy, and label accuracy minus it;
- wall time per run.
The first two tables start with a reference row (a perfect oracle, one answer per label: the model's ceiling).
Rows marked (extra) go beyond the planned scenarios: min_agreement 0.6 sends only three-way splits to the
specialist (with three answers, 0.7 demands unanimity, since 2 of 3 is 0.67); and the digits crowd listed
worst first, because a majority tie goes to the answer given first, and the simulated crowd answers in
member order (sim1 first).

Every run writes under a temporary folder (ledgers, features, one MLflow sqlite store per seed); nothing
lands in the repo. Seeds run in parallel (one process per core), the scenarios of a seed in sequence.

Run: .venv/bin/python benchmarks/annotator_quality.py [--seeds 5] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

DIGITS_CROWD = [0.85, 0.8, 0.75, 0.1]  # sim4 answers at random (10 classes)
ADVERSARIAL_CROWD = [0.8, 0.75, 0.0]  # sim3 always answers the other class (2 classes)
EXPERT_ACCURACY = 0.98
LOOP = {"strategy": "margin", "batch_size": 20, "initial_size": 40, "budget": 300}


@dataclass(frozen=True)
class Scenario:
    """One row of a table: a dataset, a crowd and the quality settings."""

    table: str
    name: str
    quality: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    crowd: tuple[float, ...] | None = tuple(DIGITS_CROWD)  # None: one perfect oracle (the reference row)

    @property
    def members(self) -> list[str]:
        return [f"sim{i + 1}" for i in range(len(self.crowd or ()))]

    @property
    def bad(self) -> str | None:
        """The uninformative (or adversarial) crowd member: the least accurate one."""
        return f"sim{int(np.argmin(self.crowd)) + 1}" if self.crowd else None

    def config_data(self, seed: int, folder: Path, mlflow_uri: str) -> dict[str, Any]:
        annotator = {"kind": "simulated"} if self.crowd is None else {
            "kind": "simulated", "accuracy": list(self.crowd), "expert_accuracy": EXPERT_ACCURACY}
        return {"dataset": {"name": self.dataset, "test_size": 0.3}, "loop": dict(LOOP),
                "annotator": annotator, "quality": self.quality, "seed": seed, "output_dir": str(folder / self.slug),
                "tracking": {"uri": mlflow_uri, "experiment": f"quality-{self.slug}", "log_model": False}}

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in f"{self.table}-{self.name}").strip("-")


DIGITS = "digits, crowd [0.85, 0.8, 0.75, 0.1]"
ADVERSARIAL = "breast_cancer, crowd [0.8, 0.75, 0.0]"
REVERSED = "digits, same crowd listed worst first [0.1, 0.75, 0.8, 0.85]"
ADJUDICATE = {"min_agreement": 0.7}
SCENARIOS = [
    Scenario(DIGITS, "0 reference: perfect oracle", crowd=None),
    Scenario(DIGITS, "1 single annotator (overlap 1)", {"overlap": 1}),
    Scenario(DIGITS, "2 overlap 3, majority", {"overlap": 3, "consensus": "majority"}),
    Scenario(DIGITS, "3 overlap 3, dawid_skene", {"overlap": 3, "consensus": "dawid_skene"}),
    Scenario(DIGITS, "4 overlap 4, majority", {"overlap": 4, "consensus": "majority"}),
    Scenario(DIGITS, "5 overlap 4, dawid_skene", {"overlap": 4, "consensus": "dawid_skene"}),
    Scenario(DIGITS, "6 overlap 3, majority + specialist 0.7",
             {"overlap": 3, "consensus": "majority", "adjudication": ADJUDICATE}),
    Scenario(DIGITS, "6b (extra) overlap 3, majority + specialist 0.6",  # 2 of 3 agreeing is enough
             {"overlap": 3, "consensus": "majority", "adjudication": {"min_agreement": 0.6}}),
    Scenario(DIGITS, "7 overlap 3 share 0.3, dawid_skene + specialist 0.7",
             {"overlap": 3, "overlap_share": 0.3, "consensus": "dawid_skene", "adjudication": ADJUDICATE}),
    Scenario(ADVERSARIAL, "reference: perfect oracle", dataset="breast_cancer", crowd=None),
    Scenario(ADVERSARIAL, "overlap 3, majority", {"overlap": 3, "consensus": "majority"},
             dataset="breast_cancer", crowd=tuple(ADVERSARIAL_CROWD)),
    Scenario(ADVERSARIAL, "overlap 3, dawid_skene", {"overlap": 3, "consensus": "dawid_skene"},
             dataset="breast_cancer", crowd=tuple(ADVERSARIAL_CROWD)),
    *(Scenario(REVERSED, f"(extra) overlap {k}, {method}", {"overlap": k, "consensus": method},
               crowd=tuple(reversed(DIGITS_CROWD)))
      for k in (3, 4) for method in ("majority", "dawid_skene")),
]


def run_seed(seed: int, root: Path) -> list[dict[str, Any]]:
    """Every scenario for one seed, in sequence (one MLflow store per seed: its migrations cost seconds)."""
    import logging

    from mlflow import MlflowClient

    from al_loop.config import config_from_dict
    from al_loop.ledger import EXPERT_LANE, ROUTINE, Ledger
    from al_loop.loop import run_loop
    from al_loop.workspace import prepare

    warnings.filterwarnings("ignore")
    for logger in ("al_loop", "mlflow", "alembic"):  # the flag warnings are what is measured here
        logging.getLogger(logger).setLevel(logging.ERROR)

    folder = root / f"seed{seed}"
    mlflow_uri = f"sqlite:///{folder / 'mlflow.db'}"
    folder.mkdir(parents=True, exist_ok=True)
    MlflowClient(mlflow_uri).search_experiments()  # create the store (migrations) before any run is timed
    rows = []
    for scenario in SCENARIOS:
        config = config_from_dict(scenario.config_data(seed, folder, mlflow_uri), base=Path.cwd(),
                                  source="benchmark")
        started = time.perf_counter()
        workspace = prepare(config)
        result = run_loop(config, workspace=workspace)
        seconds = time.perf_counter() - started
        pool = workspace.splits.pool
        truth = dict(zip(pool.ids, pool.labels, strict=True))
        with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
            examples = [r for r in ledger.examples() if r["purpose"] == "train"]
            annotations = ledger.annotations()
        metrics = MlflowClient(mlflow_uri).get_run(result.run_id).data.metrics
        members = scenario.members
        # an annotator can only be flagged once their agreement with the consensus is measured (overlap > 1)
        flagged = {m: metrics[f"annotator/{m}/flagged"] == 1.0 for m in members
                   if f"annotator/{m}/agreement" in metrics and f"annotator/{m}/flagged" in metrics}
        good = [m for m in flagged if m != scenario.bad]
        annotator_accuracy = [metrics[f"annotator/{m}/accuracy"] for m in members
                              if f"annotator/{m}/accuracy" in metrics]
        routine = sum(1 for a in annotations if a["lane"] == ROUTINE and a["superseded_by"] is None)
        rows.append({
            "table": scenario.table, "scenario": scenario.name, "seed": seed, "labels": len(examples),
            "label_accuracy": float(np.mean([truth[r["id"]] == r["label"] for r in examples])),
            "model_accuracy": metrics.get("accuracy", np.nan),
            "answers_per_label": routine / len(examples),
            "specialist_answers": sum(1 for a in annotations if a["lane"] == EXPERT_LANE),
            "alpha": metrics.get("agreement/overall/krippendorff_alpha", np.nan),
            "bad_flagged": flagged.get(scenario.bad),
            "good_flagged": any(flagged[m] for m in good) if good else None,
            "best_annotator": max(annotator_accuracy) if annotator_accuracy else np.nan,
            "seconds": seconds,
        })
        print(f"seed {seed}: {scenario.table} / {scenario.name}: {seconds:.1f} s", flush=True)
    return rows


def _pm(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "n/a"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def summarize(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """One row per scenario of a table: mean ± std over seeds, flag counts, wall time."""
    out = []
    for name, runs in frame[frame["table"] == table].groupby("scenario", sort=False):
        seeds = len(runs)
        bad, good = runs["bad_flagged"].dropna(), runs["good_flagged"].dropna()
        out.append({
            "scenario": name,
            "label acc": _pm(runs["label_accuracy"]),
            "model acc": _pm(runs["model_accuracy"]),
            "best single annotator": _pm(runs["best_annotator"]),
            "label acc − best": _pm(runs["label_accuracy"] - runs["best_annotator"]),
            "answers / label": _pm(runs["answers_per_label"], 2),
            "specialist answers": _pm(runs["specialist_answers"], 1),
            "Krippendorff α": _pm(runs["alpha"]),
            "bad flagged": "n/a" if bad.empty else f"{int(bad.sum())}/{seeds}",
            "good flagged": "n/a" if good.empty else f"{int(good.sum())}/{seeds}",
            "s / run": _pm(runs["seconds"], 1),
        })
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per scenario (0, 1, ...)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="seeds run in parallel (processes)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the runs (ledgers, MLflow store) here and keep them; default: a temp folder")
    parser.add_argument("--csv", type=Path, default=None, help="also write the per-run rows to this CSV")
    args = parser.parse_args()

    started = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="alq-bench-"))
    try:
        batches = Parallel(n_jobs=args.jobs)(delayed(run_seed)(seed, root) for seed in range(args.seeds))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    frame = pd.DataFrame([row for batch in batches for row in batch])
    wall = time.perf_counter() - started
    if args.csv:
        frame.to_csv(args.csv, index=False)

    print(f"\nmargin, batch 20, initial 40, budget 300 labels; expert accuracy {EXPERT_ACCURACY}; "
          f"{args.seeds} seeds (mean ± std); {len(frame)} runs")
    for table in dict.fromkeys(s.table for s in SCENARIOS):
        bad = next(s.bad for s in SCENARIOS if s.table == table and s.bad)
        print(f"\n### {table} (bad annotator: {bad})\n")
        print(summarize(frame, table).to_markdown(index=False))
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min) on {os.cpu_count()} cores, {args.jobs} jobs; "
          f"Python {platform.python_version()}, {platform.machine()}")


if __name__ == "__main__":
    main()
