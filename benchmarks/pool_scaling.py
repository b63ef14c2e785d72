"""Benchmark one selection round of al-loop against modAL as the pool grows (time and peak memory).

    .venv/bin/python benchmarks/pool_scaling.py [--sizes 10000,100000,1000000] [--out DIR] [--warm-rounds 5]
                                                [--no-wait]

For each pool size N: a synthetic pool of N rows, 100 dense float64 features, 10 overlapping Gaussian blobs
(about half the rows classified right, so the probabilities are spread out), written once as a .npy file
(in --out, else in a temporary folder removed at the end); a LogisticRegression(max_iter=500) fitted with
al_loop.model.fit on 1,000 random labeled rows; k = 10 picks; `available` = every row but the labeled ones.

Each method runs ONE selection round in a fresh subprocess (peak memory starts clean). The subprocess loads
the model and the features first (untimed), then measures the selection only: seconds with time.perf_counter,
and the peak RSS minus the RSS right before the round. The peak is the process's high-water mark VmHWM, reset
through /proc/self/clear_refs right before the round: resource.getrusage's ru_maxrss is not usable in a child
process on Linux, it starts at the parent's peak (see _peak_kb); it is the fallback when the reset is refused.
The ratio peak/array divides the peak over baseline by the pool's own feature array (N x 100 x 8 bytes).
MB = 10^6 bytes. The pool file is read from the page cache (it was just written). Methods:

  a  al-loop margin, local: np.load(mmap_mode="r"), scoring.top_candidates(chunk_rows=65536)
  b  al-loop margin on a 2-worker Dask LocalCluster (distributed.connect(None, 2), workers read the .npy):
     start-up timed apart; memory = driver's delta + the workers' peak RSS (idle RSS included)
  c  modAL margin_sampling(lr, X, n_instances=10), X fully in memory (np.load)
  d  modAL uncertainty_batch_sampling (ranked batch) with X_training = the 1,000 labeled rows, X in memory;
     stopped after 600 s, and larger sizes skipped once it was stopped
  e  the floor: one bare lr.predict_proba(X), X in memory
  f  al-loop margin_diverse: top_candidates(k=100) then farthest_first(k=10), memory-mapped
  w  warm rounds, what a user of a long-lived loop gets: ONE process runs a first round then --warm-rounds more,
     the used set growing by the k picks of each round; every round times, side by side and round-robin (the
     order alternates), the floor lr.predict_proba(X) (X in memory), (a) on the memory-mapped file and (f).
     Ratios are paired per round (robust to load from other jobs); the table gives the median warm round.

(a)-(f) are cold first rounds. Targets: at 1M rows, a warm margin round within 1.2x of the paired floor and (a)'s
peak within 1.1x of the feature array; at 100k rows, (f) at least 100x faster than (d). Before each measurement
the script waits (at most 15 minutes in all) while `pgrep -f "run_benchmark|al-loop benchmark|pytest"` finds
another heavy job (the machine has 2 cores), unless --no-wait; the load average is printed at each method.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 100
N_CLASSES = 10
N_LABELED = 1_000
K = 10
CHUNK_ROWS = 65_536
DIVERSITY_FACTOR = 10
CENTER_SCALE = 0.2  # blob centers ~ N(0, 0.2^2) per feature, unit noise: overlapping classes
SEED = 0
GEN_ROWS = 200_000  # rows generated per block when writing the pool
D_TIMEOUT_S = 600.0
OTHER_TIMEOUT_S = 3_600.0
BUSY_PATTERN = "run_benchmark|al-loop benchmark|pytest"
BUSY_SLEEP_S = 10.0
BUSY_GIVE_UP_S = 15 * 60.0
DASK_WORKERS = 2

METHODS = {
    "e": "e. floor: lr.predict_proba(X) (in memory)",
    "a": "a. al-loop margin, local (mmap)",
    "b": "b. al-loop margin, Dask 2 workers",
    "c": "c. modAL margin_sampling (in memory)",
    "f": "f. al-loop margin_diverse (mmap)",
    "d": "d. modAL uncertainty_batch_sampling (in memory)",
    "w": "w. warm rounds: al-loop margin (mmap), median",
}
ORDER = ["e", "a", "b", "c", "f", "w", "d"]  # the slow one last
IN_MEMORY = {"c", "d", "e"}


# --------------------------------------------------------------------------------------------------------------
# measurement subprocess


def _status_kb(field_name: str) -> int:
    """A field of /proc/self/status in KB (VmRSS, RssAnon, RssFile, ...), 0 when absent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the peak-RSS high-water mark (VmHWM) to the current RSS (Linux >= 4.0): the peak covers the round."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class _AnonPeak:
    """Samples RssAnon every 10 ms in a thread: the private (non file-backed) part of the peak."""

    def __init__(self) -> None:
        self.peak_kb = _status_kb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))

    def __enter__(self) -> _AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("RssAnon"))


class _Learner:
    """What modAL's uncertainty_batch_sampling reads from a learner: predict_proba, X_training, on_transformed."""

    def __init__(self, estimator: Any, x_training: np.ndarray) -> None:
        self.estimator = estimator
        self.X_training = x_training
        self.on_transformed = False

    def predict_proba(self, x: Any, **kwargs: Any) -> np.ndarray:
        return self.estimator.predict_proba(x, **kwargs)


def _peak_kb(reset: bool) -> int:
    """The process's peak RSS in KB since the last reset.

    resource.getrusage(RUSAGE_SELF).ru_maxrss is max(VmHWM, the signal-level maxrss), and Linux seeds the latter
    at execve with the peak of the pre-exec memory, i.e. of the PARENT (checked: a child of a 1 GB parent reports
    ru_maxrss 1 GB with VmHWM 13 MB); clear_refs does not reset it. So the process's own high-water mark VmHWM is
    read when the reset worked, ru_maxrss otherwise.
    """
    return _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _worker_rss() -> dict[str, int]:
    """Run on each Dask worker: its peak RSS since the reset (KB) and its current RSS parts."""
    return {"peak": _status_kb("VmHWM"), "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "rss": _status_kb("VmRSS"), "anon": _status_kb("RssAnon"), "file": _status_kb("RssFile")}


def _worker_reset() -> dict[str, int]:
    if not _reset_peak():
        raise OSError("cannot reset the peak RSS (/proc/self/clear_refs) on a Dask worker")
    return _worker_rss()


def measure_warm(folder: Path, warm_rounds: int) -> dict[str, Any]:
    """A first round then `warm_rounds` more in this one process, each timing the floor, (a) and (f) side by side;
    the used rows grow by (a)'s k picks per round. The peak over each (a) call is the private memory it adds."""
    from al_loop import scoring

    with open(folder / "model.pkl", "rb") as handle:
        model = pickle.load(handle)
    lr = model.estimator
    used = np.load(folder / "labeled.npy")
    x_map = np.load(folder / "features.npy", mmap_mode="r")
    x_mem = np.load(folder / "features.npy")
    n_rows = x_map.shape[0]

    def floor() -> np.ndarray:
        lr.predict_proba(x_mem)
        return np.empty(0, dtype=np.int64)

    def margin() -> np.ndarray:
        return scoring.top_candidates(model, x_map, available, "margin", K, chunk_rows=CHUNK_ROWS).rows

    def diverse() -> np.ndarray:
        top = scoring.top_candidates(model, x_map, available, "margin", DIVERSITY_FACTOR * K, chunk_rows=CHUNK_ROWS)
        return scoring.farthest_first(x_map, top, K).rows

    rounds: list[dict[str, Any]] = []
    for number in range(1 + warm_rounds):
        available = np.setdiff1d(np.arange(n_rows), used, assume_unique=True)
        calls = [("floor", floor), ("margin", margin), ("diverse", diverse)]
        if number % 2:
            calls.reverse()  # round-robin: neither side always runs first
        record: dict[str, Any] = {"used": len(used)}
        for name, call in calls:
            gc.collect()
            reset = _reset_peak()
            before_kb = _status_kb("VmRSS")
            start = time.perf_counter()
            rows = call()
            record[f"{name}_s"] = time.perf_counter() - start
            record[f"{name}_peak_kb"] = max(0, _peak_kb(reset) - before_kb)
            if name == "margin":
                record["rows"] = [int(r) for r in rows]
        rounds.append(record)
        used = np.union1d(used, record["rows"])
    return {"method": "w", "n_rows": n_rows, "rounds": rounds}


def measure(method: str, folder: Path) -> dict[str, Any]:
    """One selection round of `method` on the pool stored in `folder` (runs in a fresh subprocess)."""
    from al_loop import scoring

    with open(folder / "model.pkl", "rb") as handle:
        model = pickle.load(handle)  # al_loop.model.FittedModel
    lr = model.estimator
    labeled = np.load(folder / "labeled.npy")
    features = folder / "features.npy"
    x = np.load(features, mmap_mode=None if method in IN_MEMORY else "r")
    n_rows = x.shape[0]
    available = np.setdiff1d(np.arange(n_rows), labeled, assume_unique=True)
    out: dict[str, Any] = {"method": method, "n_rows": n_rows}

    client = None
    if method == "b":
        from al_loop import distributed

        start = time.perf_counter()
        client = distributed.connect(None, DASK_WORKERS)
        client.wait_for_workers(DASK_WORKERS)
        out["startup_s"] = time.perf_counter() - start
        out["workers_idle_kb"] = sum(w["rss"] for w in client.run(_worker_reset).values())
    learner = _Learner(lr, np.ascontiguousarray(x[labeled])) if method == "d" else None

    gc.collect()
    out["peak_reset"] = _reset_peak()
    baseline_kb = _status_kb("VmRSS")
    with _AnonPeak() as anon:
        anon_baseline_kb = anon.peak_kb
        start = time.perf_counter()
        if method == "a":
            rows = scoring.top_candidates(model, x, available, "margin", K, chunk_rows=CHUNK_ROWS).rows
        elif method == "b":
            rows = distributed.top_candidates(client, features, n_rows, available, model, "margin", K,
                                              CHUNK_ROWS).rows
        elif method == "c":
            from modAL.uncertainty import margin_sampling

            rows, _ = margin_sampling(lr, x, n_instances=K)
        elif method == "d":
            from modAL.batch import uncertainty_batch_sampling

            rows, _ = uncertainty_batch_sampling(learner, x, n_instances=K)
        elif method == "e":
            proba = lr.predict_proba(x)
            rows = np.empty(0, dtype=np.int64)
            del proba
        elif method == "f":
            top = scoring.top_candidates(model, x, available, "margin", DIVERSITY_FACTOR * K, chunk_rows=CHUNK_ROWS)
            rows = scoring.farthest_first(x, top, K).rows
        else:
            raise ValueError(f"unknown method {method!r}")
        seconds = time.perf_counter() - start
    peak_kb = _peak_kb(out["peak_reset"])
    out["ru_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # for the record, see _peak_kb
    out.update(seconds=seconds, rows=[int(r) for r in rows], driver_delta_kb=max(0, peak_kb - baseline_kb),
               baseline_kb=baseline_kb, anon_delta_kb=max(0, anon.peak_kb - anon_baseline_kb),
               file_end_kb=_status_kb("RssFile"))
    if client is not None:
        workers = list(client.run(_worker_rss).values())
        out["workers_peak_kb"] = sum(w["peak"] for w in workers)
        out["workers_file_kb"] = sum(w["file"] for w in workers)
        start = time.perf_counter()  # a second, warm round: the model is shipped again, imports are done
        distributed.top_candidates(client, features, n_rows, available, model, "margin", K, CHUNK_ROWS)
        out["second_round_s"] = time.perf_counter() - start
        cluster = client.cluster
        client.close()
        cluster.close()
    return out


# --------------------------------------------------------------------------------------------------------------
# driver


@dataclass
class Row:
    size: int
    method: str
    seconds: float | None = None  # None: stopped or failed
    delta_bytes: float | None = None
    note: str = ""
    rows: list[int] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def array_bytes(self) -> int:
        return self.size * N_FEATURES * 8

    @property
    def ratio(self) -> float | None:
        return None if self.delta_bytes is None else self.delta_bytes / self.array_bytes


class Quiet:
    """Waits while another heavy job runs; gives up after 15 minutes of waiting in all."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.waited_s = 0.0
        self.gave_up = False
        self.busy_at_start: list[str] = []
        self.loads: list[float] = []

    def _busy(self) -> list[str]:
        found = subprocess.run(["pgrep", "-af", BUSY_PATTERN], capture_output=True, text=True, check=False)
        own = {str(os.getpid())}
        return [line for line in found.stdout.splitlines() if line.split(" ", 1)[0] not in own]

    def wait(self) -> list[str]:
        """Returns the jobs still running when the measurement starts (empty when quiet)."""
        self.loads.append(os.getloadavg()[0])
        if not self.enabled:
            return self._busy()
        while True:
            busy = self._busy()
            if not busy or self.gave_up:
                return busy
            if self.waited_s >= BUSY_GIVE_UP_S:
                self.gave_up = True
                print(f"[wait] gave up waiting after {self.waited_s / 60:.0f} min; measuring while busy: "
                      + "; ".join(b[:80] for b in busy), flush=True)
                return busy
            if self.waited_s == 0:
                print("[wait] another heavy job runs: " + "; ".join(b[:80] for b in busy), flush=True)
            time.sleep(BUSY_SLEEP_S)
            self.waited_s += BUSY_SLEEP_S


def make_pool(size: int, folder: Path) -> None:
    """features.npy (written block by block), labeled.npy and model.pkl (fitted on the labeled rows)."""
    from sklearn.linear_model import LogisticRegression

    from al_loop.model import fit

    rng = np.random.default_rng(SEED)
    centers = rng.standard_normal((N_CLASSES, N_FEATURES)) * CENTER_SCALE
    labels = np.empty(size, dtype=np.int64)
    x = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=np.float64,
                                  shape=(size, N_FEATURES))
    for start in range(0, size, GEN_ROWS):
        stop = min(start + GEN_ROWS, size)
        block_rng = np.random.default_rng([SEED, start])
        y = block_rng.integers(0, N_CLASSES, stop - start)
        x[start:stop] = centers[y] + block_rng.standard_normal((stop - start, N_FEATURES))
        labels[start:stop] = y
    x.flush()
    labeled = np.sort(rng.choice(size, N_LABELED, replace=False))
    classes = [str(c) for c in range(N_CLASSES)]
    model = fit(LogisticRegression(max_iter=500), np.asarray(x[labeled]), labels[labeled], classes)
    del x
    np.save(folder / "labeled.npy", labeled)
    with open(folder / "model.pkl", "wb") as handle:
        pickle.dump(model, handle)


def run_method(method: str, size: int, folder: Path, quiet: Quiet, warm_rounds: int = 5) -> Row:
    busy = quiet.wait()
    timeout = D_TIMEOUT_S if method == "d" else OTHER_TIMEOUT_S
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", method, "--out", str(folder),
               "--warm-rounds", str(warm_rounds)]
    print(f"[{size:,}] {METHODS[method]} (load {quiet.loads[-1]:.2f}) ...", end=" ", flush=True)
    row = Row(size, method)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        row.note = f"> {timeout:.0f} s (stopped)"
        print(row.note, flush=True)
        return row
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        row.note = f"failed (exit {done.returncode}): {tail[:100]}"
        print(row.note, flush=True)
        return row
    raw = json.loads(lines[-1][len("RESULT "):])
    if method == "w":
        return _warm_row(row, raw, busy)
    row.raw, row.seconds, row.rows = raw, raw["seconds"], raw["rows"]
    delta_kb = raw["driver_delta_kb"] + raw.get("workers_peak_kb", 0)
    row.delta_bytes = delta_kb * 1024.0
    notes = []
    if method in IN_MEMORY:
        notes.append(f"array loaded before, not counted; anon +{_mb(raw['anon_delta_kb'] * 1024.0)}")
    elif method == "b":
        notes.append(f"start-up {raw['startup_s']:.1f} s; driver +{_mb(raw['driver_delta_kb'] * 1024.0)}, "
                     f"workers' peak {_mb(raw['workers_peak_kb'] * 1024.0)} (idle "
                     f"{_mb(raw['workers_idle_kb'] * 1024.0)}, file-backed "
                     f"{_mb(raw['workers_file_kb'] * 1024.0)}); warm 2nd round {raw['second_round_s']:.2f} s")
    else:
        notes.append(f"anon +{_mb(raw['anon_delta_kb'] * 1024.0)}, file-backed {_mb(raw['file_end_kb'] * 1024.0)}")
    if not raw.get("peak_reset", True):
        notes.append("peak = ru_maxrss, not reset (clear_refs refused): may include the parent's peak")
    if busy:
        notes.append("measured while another job ran")
    row.note = "; ".join(notes)
    print(f"{row.seconds:.3f} s", flush=True)
    return row


def _warm_row(row: Row, raw: dict[str, Any], busy: list[str]) -> Row:
    """The median warm round (rounds after the first) with its paired ratios to the floor."""
    rounds = raw["rounds"]
    warm = rounds[1:] or rounds
    row.raw, row.rows = raw, rounds[-1]["rows"]
    row.seconds = float(np.median([r["margin_s"] for r in warm]))
    row.delta_bytes = float(max(r["margin_peak_kb"] for r in warm)) * 1024.0
    margin = [r["margin_s"] / r["floor_s"] for r in warm]
    diverse = [r["diverse_s"] / r["floor_s"] for r in warm]
    first = rounds[0]
    raw["warm_margin_ratio"] = float(np.median(margin))
    raw["warm_diverse_s"] = float(np.median([r["diverse_s"] for r in warm]))
    row.note = (f"{len(warm)} warm rounds: floor {np.median([r['floor_s'] for r in warm]):.3f} s, paired margin/floor "
                f"median {np.median(margin):.2f}x ({min(margin):.2f}-{max(margin):.2f}), margin_diverse "
                f"{raw['warm_diverse_s']:.3f} s = {np.median(diverse):.2f}x; first round in this process "
                f"{first['margin_s'] / first['floor_s']:.2f}x; peak = private memory added by a warm round")
    if busy:
        row.note += "; measured while another job ran"
    print(f"{row.seconds:.3f} s ({raw['warm_margin_ratio']:.2f}x the floor)", flush=True)
    return row


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def _seconds(row: Row) -> str:
    return f"{row.seconds:.3f}" if row.seconds is not None else "—"


def _cells(row: Row) -> list[str]:
    delta = f"{row.delta_bytes / 1e6:,.1f}" if row.delta_bytes is not None else "—"
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
    return [f"{row.size:,}", METHODS[row.method], _seconds(row), delta, ratio, row.note]


HEADERS = ["size", "method", "seconds", "peak MB over baseline", "peak/array", "note"]


def targets(results: list[Row]) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/MISS/n/a)."""
    by = {(r.size, r.method): r for r in results}
    checks: list[tuple[str, str, str]] = []
    a, w = by.get((1_000_000, "a")), by.get((1_000_000, "w"))
    name = "1M rows: warm margin round (w) within 1.2x of the paired bare predict_proba"
    if w and w.seconds is not None:
        ratio = w.raw["warm_margin_ratio"]
        checks.append((name, f"median of paired ratios {ratio:.2f}x ({w.seconds:.2f} s)",
                       "PASS" if ratio <= 1.2 else "MISS"))
    else:
        checks.append((name, "not measured", "n/a"))
    name = "1M rows: (a) peak memory within 1.1x of the feature array"
    if a and a.ratio is not None:
        checks.append((name, f"{a.delta_bytes / 1e6:,.0f} MB vs {a.array_bytes / 1e6:,.0f} MB = {a.ratio:.2f}x",
                       "PASS" if a.ratio <= 1.1 else "MISS"))
    else:
        checks.append((name, "not measured", "n/a"))
    d, f = by.get((100_000, "d")), by.get((100_000, "f"))
    name = "100k rows: margin_diverse (f) at least 100x faster than modAL ranked batch (d)"
    if f and f.seconds is not None and d:
        if d.seconds is not None:
            speedup = d.seconds / f.seconds
            checks.append((name, f"{d.seconds:.2f} s / {f.seconds:.3f} s = {speedup:,.0f}x",
                           "PASS" if speedup >= 100 else "MISS"))
        elif d.note.startswith(">"):
            speedup = D_TIMEOUT_S / f.seconds
            checks.append((name, f"> {D_TIMEOUT_S:.0f} s / {f.seconds:.3f} s = > {speedup:,.0f}x",
                           "PASS" if speedup >= 100 else "MISS"))
        else:
            checks.append((name, "(d) failed", "n/a"))
    else:
        checks.append((name, "not measured", "n/a"))
    w = by.get((100_000, "w"))
    name = "100k rows: warm margin_diverse (w) at least 100x faster than modAL ranked batch (d)"
    if w and w.seconds is not None and d and d.seconds is not None:
        speedup = d.seconds / w.raw["warm_diverse_s"]
        checks.append((name, f"{d.seconds:.2f} s / {w.raw['warm_diverse_s']:.3f} s = {speedup:,.0f}x",
                       "PASS" if speedup >= 100 else "MISS"))
    return checks


def machine() -> str:
    from importlib.metadata import version

    import dask
    import sklearn

    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return (f"{os.cpu_count()} cores, {total_kb / 1024**2:.1f} GiB RAM (MemTotal), {platform.platform()}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
            f"dask {dask.__version__}, modAL-python {version('modAL-python')}")


def report(results: list[Row], same_rows: dict[int, str], quiet: Quiet) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(title="One selection round (k = 10), 100 float64 features, 10 classes")
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for row in results:
        table.add_row(*_cells(row))
    console.print(table)
    checks = targets(results)
    for name, measured, verdict in checks:
        console.print(f"{verdict:5} {name}: {measured}")
    for size, text in same_rows.items():
        console.print(f"{size:,} rows: (a) and (b) {text}")
    if quiet.loads:
        console.print(f"1-min load average before the methods: {min(quiet.loads):.2f}-{max(quiet.loads):.2f}"
                      + ("" if quiet.enabled else " (--no-wait)"))
    if quiet.waited_s or quiet.gave_up:
        console.print(f"waited {quiet.waited_s / 60:.1f} min for other jobs" + (" then gave up" if quiet.gave_up
                                                                                 else ""))

    print("\n## Markdown\n")
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "|".join(["---:", "---", "---:", "---:", "---:", "---"]) + "|")
    for row in results:
        print("| " + " | ".join(_cells(row)) + " |")
    print("\n| target | measured | result |\n|---|---|---|")
    for name, measured, verdict in checks:
        print(f"| {name} | {measured} | **{verdict}** |")
    print()
    for size, text in same_rows.items():
        print(f"- {size:,} rows: (a) and (b) {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="pool sizes, comma-separated")
    parser.add_argument("--out", type=Path, default=None, help="folder for the pools (kept); default: temporary")
    parser.add_argument("--warm-rounds", type=int, default=5,
                        help="warm rounds after the first in one process (method w); default 5")
    parser.add_argument("--no-wait", action="store_true", help="measure even while other heavy jobs run")
    parser.add_argument("--measure", choices=sorted(METHODS), help=argparse.SUPPRESS)  # subprocess modes
    parser.add_argument("--make-pool", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_pool:
        make_pool(args.make_pool, args.out)
        return
    if args.measure:
        result = measure_warm(args.out, args.warm_rounds) if args.measure == "w" else measure(args.measure, args.out)
        print("RESULT " + json.dumps(result), flush=True)
        return

    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    root = args.out or Path(tempfile.mkdtemp(prefix="al-loop-pool-scaling-"))
    root.mkdir(parents=True, exist_ok=True)
    print(machine(), flush=True)
    print(f"pools in {root}; sizes {', '.join(f'{s:,}' for s in sizes)}", flush=True)
    quiet = Quiet(enabled=not args.no_wait)
    results: list[Row] = []
    same_rows: dict[int, str] = {}
    d_stopped = False
    try:
        for size in sizes:
            folder = root / f"pool_{size}"
            folder.mkdir(exist_ok=True)
            start = time.perf_counter()
            # in a subprocess: this process stays small (its peak would leak into the children's ru_maxrss)
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--make-pool", str(size), "--out",
                            str(folder)], check=True)
            print(f"[{size:,}] pool written ({size * N_FEATURES * 8 / 1e6:,.0f} MB) and model fitted in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
            for method in ORDER:
                if method == "d" and d_stopped:
                    results.append(Row(size, "d", note=f"skipped (stopped at a smaller size after "
                                                        f"{D_TIMEOUT_S:.0f} s)"))
                    continue
                row = run_method(method, size, folder, quiet, args.warm_rounds)
                results.append(row)
                if method == "d" and row.note.startswith(">"):
                    d_stopped = True
            by = {r.method: r for r in results if r.size == size}
            a, b = by["a"], by["b"]
            if a.seconds is None or b.seconds is None:
                same_rows[size] = "could not be compared (a run failed)"
            elif a.rows == b.rows:
                same_rows[size] = f"return the same rows, in the same order: {a.rows}"
            else:
                same_rows[size] = f"DIFFER: a {a.rows} vs b {b.rows}"
            if args.out is None:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    report(results, same_rows, quiet)


if __name__ == "__main__":
    main()
