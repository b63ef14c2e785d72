"""Fixed costs of al-loop: what a short run and every `al-loop sync` pay besides the rounds themselves.

Measured, each in a fresh subprocess (so imports and caches are cold for Python, warm for the page cache):
- import: `import al_loop.cli` (what `al-loop --help` and every command pay first), `al_loop.config` (what commands
  that only read a config pay: `labelstudio stop`, `audit`), `al_loop.loop` (what `run`/`sync` add);
- MLflow store: `Tracker(...)` on a fresh local store (schema migrations) and again on the existing one;
- final model: the quickstart pipeline (TF-IDF fitted on the pool as the loop does, 8,000 terms; LogisticRegression
  on 600 labeled newsgroups6 rows) logged with
  `Tracker.log_model`, its parts timed: the skops type probe, MLflow's save and upload, the digest;
- `sync` of a finished run: `al-loop sync` on the simulated quickstart run made by `--run` (skipped without it).

Medians over --repeats fresh processes. Run: .venv/bin/python benchmarks/fixed_costs.py [--repeats 3] [--run]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

IMPORTS = {
    "import al_loop.cli": "import al_loop.cli",
    "import al_loop.config": "import al_loop.config",
    "import al_loop.loop (+ config)": "import al_loop.config, al_loop.loop",
}

STORE = """
import time, sys
from al_loop.tracking import Tracker
uri = "sqlite:///" + sys.argv[1]
started = time.perf_counter()
Tracker(uri, "fixed-costs")
print(time.perf_counter() - started)
"""

MODEL = """
import json, sys, time, tempfile
from pathlib import Path
import pandas as pd
import skops.io
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from al_loop import tracking
from al_loop.tracking import Tracker

pool = pd.read_csv(Path(sys.argv[2]) / "data" / "newsgroups6-raw-pool.csv.gz")
features = TfidfVectorizer(max_features=8000, min_df=3, stop_words="english").fit(pool["text"])  # as the loop
labeled = pool.head(600)
model = LogisticRegression(max_iter=1000, C=10).fit(features.transform(labeled["text"]), labeled["label"])
pipeline = Pipeline([("features", features), ("model", model)])
tracker = Tracker("sqlite:///" + sys.argv[1], "fixed-costs")
run_id = tracker.start_run("model", {}, {})
times = {}
real_dumps = skops.io.dumps
def timed_dumps(*args, **kwargs):
    started = time.perf_counter()
    try:
        return real_dumps(*args, **kwargs)
    finally:
        times["type probe (skops dumps)"] = times.get("type probe (skops dumps)", 0.0) + time.perf_counter() - started
skops.io.dumps = timed_dumps
started = time.perf_counter()
model_id = tracker.log_model(run_id, pipeline, key="k", input_example=pool[["text"]].head(5))
times["log_model, all"] = time.perf_counter() - started
started = time.perf_counter()
tracker.model_digest(model_id)
times["digest (download + sha256)"] = time.perf_counter() - started
print(json.dumps(times))
"""


def seconds(code: str, *args: str) -> str:
    """The stdout of `code` run in a fresh interpreter."""
    done = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def import_time(statement: str) -> float:
    """Wall seconds of a fresh interpreter running `statement`, minus a bare interpreter's."""
    def wall(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([PYTHON, "-c", code], check=True, cwd=ROOT)
        return time.perf_counter() - started
    return wall(statement) - wall("pass")


def run_quickstart_simulated(folder: Path) -> tuple[Path, float]:
    """The quickstart config with simulated annotators (no Label Studio) in `folder`; seconds of its run."""
    text = (ROOT / "configs" / "quickstart.yaml").read_text()
    text = text.replace("../data/", f"{ROOT}/data/").replace("output_dir: ../runs/quickstart",
                                                             f"output_dir: {folder}/run")
    text = text.split("annotator:")[0] + "annotator:\n  kind: simulated\n" + "tracking:" + text.split("tracking:")[1]
    config = folder / "quickstart-simulated.yaml"
    config.write_text(text)
    started = time.perf_counter()
    subprocess.run([str(Path(PYTHON).parent / "al-loop"), "run", str(config)], check=True, capture_output=True)
    return config, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", action="store_true", help="also run the simulated quickstart and time its sync")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    for name, statement in IMPORTS.items():
        rows.append((name, statistics.median(import_time(statement) for _ in range(args.repeats)), ""))
    fresh, again, model = [], [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            db = str(Path(folder) / "mlflow.db")
            fresh.append(float(seconds(STORE, db)))
            again.append(float(seconds(STORE, db)))
            model.append(json.loads(seconds(MODEL, str(Path(folder) / "model.db"), str(ROOT))))
    rows.append(("MLflow store: Tracker() on a fresh store", statistics.median(fresh), "creates the schema"))
    rows.append(("MLflow store: Tracker() on an existing store", statistics.median(again), ""))
    for part in model[0]:
        rows.append((f"final model: {part}", statistics.median(m.get(part, 0.0) for m in model),
                     "quickstart pipeline: 8,000 terms, 600 labels" if part == "log_model, all" else ""))
    if args.run:
        with tempfile.TemporaryDirectory() as folder:
            config, run_seconds = run_quickstart_simulated(Path(folder))
            rows.append(("simulated quickstart run, 600 labels", run_seconds, "one run, for scale"))
            syncs = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                subprocess.run([str(Path(PYTHON).parent / "al-loop"), "sync", str(config)], check=True,
                               capture_output=True)
                syncs.append(time.perf_counter() - started)
            rows.append(("`al-loop sync` of the finished run", statistics.median(syncs), "whole command"))
    print(f"load average before/after: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"| what | seconds (median of {args.repeats}) | note |\n|---|---:|---|")
    for name, value, note in rows:
        print(f"| {name} | {value:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
