"""Pool scoring on a Dask cluster: the pool's stored features are split in the same fixed chunks as the
local path; the fitted model goes to the workers once per round (scattered); each chunk returns its own top
candidates and the driver merges them. Same picks as the local path for the same model and chunking.

The workers read the features from the feature store file (al_loop.features), so on a real cluster the
output folder must be on storage every worker can read (a shared filesystem).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from al_loop.errors import AlLoopError
from al_loop.scoring import Ranked, chunk_top, chunks, merge


class DaskError(AlLoopError):
    """The Dask scheduler could not be reached or a task failed."""

    exit_code = 4


def connect(scheduler: str | None, n_workers: int, timeout: str = "30s") -> Any:
    """A client on the given scheduler address, or on a new LocalCluster of n_workers processes."""
    from dask.distributed import Client, LocalCluster

    try:
        if scheduler:
            return Client(scheduler, timeout=timeout)
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        return Client(cluster)
    except (OSError, TimeoutError) as error:
        raise DaskError(f"cannot reach the Dask scheduler {scheduler or '(local cluster)'}: {error}; check "
                        "compute.scheduler (e.g. tcp://10.0.0.5:8786) or remove it for a local cluster") from None


@functools.lru_cache(maxsize=4)
def _features(path: str) -> Any:
    """The feature matrix in a worker process, opened once (memory-mapped when dense)."""
    if path.endswith(".npz"):
        from scipy import sparse

        return sparse.load_npz(path).tocsr()
    return np.load(path, mmap_mode="r")


def _partition_top(path: str, start: int, stop: int, excluded: np.ndarray, model: Any, measure: str,
                   k: int) -> Ranked:
    rows = np.arange(start, stop)
    rows = rows[~np.isin(rows, excluded, assume_unique=True)]
    if len(rows) == 0:
        return Ranked.empty()
    # the contiguous chunk as a view of the memory-mapped file, used rows masked after scoring (no copy)
    return chunk_top(model, _features(path)[start:stop], rows, measure, k, rows - start)


def top_candidates(client: Any, features_path: Path, n_rows: int, available: np.ndarray, model: Any,
                   measure: str, k: int, chunk_rows: int) -> Ranked:
    """The k most ambiguous available rows, scored on the cluster's workers."""
    excluded = np.setdiff1d(np.arange(n_rows), available, assume_unique=True)  # the few used rows
    [model_future] = client.scatter([model], broadcast=True)
    [excluded_future] = client.scatter([excluded], broadcast=True)
    futures = [client.submit(_partition_top, str(features_path), start, stop, excluded_future, model_future,
                             measure, k, pure=False)
               for start, stop in chunks(n_rows, chunk_rows)]
    best = Ranked.empty()
    for part in client.gather(futures):
        best = merge(best, part, k)
    return best
