"""The feature store: the pool's (and test rows') features are computed once and kept on disk under the
output folder, dense as .npy (opened memory-mapped) and sparse as .npz, next to the fitted featurizer.

A later round, a resumed run, `al-loop sync` or a Dask worker reads them instead of featurizing again.
The store is keyed by everything that decides the features (the dataset and features config, the input
files' size and modification time, and the seed when it decides the split).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from scipy import sparse

Computed = tuple[Any, Any, Any | None]  # featurizer, x_pool, x_test


def store_key(parts: dict[str, Any], files: list[Path | None]) -> str:
    """A hash of the config parts and the input files' identity (path, size, modification time)."""
    stats = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f is not None]
    blob = json.dumps({"parts": parts, "files": stats}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(folder: Path, compute: Callable[[], Computed]) -> tuple[Computed, Path]:
    """Load the features stored in `folder`, or compute and store them (atomically) first.

    Returns the features and the path of the pool's feature file (for Dask workers).
    """
    if not (folder / "done").exists():
        featurizer, x_pool, x_test = compute()
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".features-", dir=folder.parent))
        _save(staging / "pool", x_pool)
        if x_test is not None:
            _save(staging / "test", x_test)
        joblib.dump(featurizer, staging / "featurizer.joblib")
        (staging / "done").write_text("ok")
        try:
            os.replace(staging, folder)  # another process may have stored the same features meanwhile
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    pool_path = _path(folder / "pool")
    test_path = _path(folder / "test", required=False)
    featurizer = joblib.load(folder / "featurizer.joblib")  # our own file, written above: trusted
    return (featurizer, _load(pool_path), None if test_path is None else _load(test_path)), pool_path


def _save(stem: Path, matrix: Any) -> None:
    if sparse.issparse(matrix):
        sparse.save_npz(stem.with_suffix(".npz"), sparse.csr_matrix(matrix), compressed=False)
    else:
        np.save(stem.with_suffix(".npy"), np.ascontiguousarray(matrix))


def _path(stem: Path, required: bool = True) -> Path | None:
    for suffix in (".npy", ".npz"):
        if stem.with_suffix(suffix).exists():
            return stem.with_suffix(suffix)
    if required:
        raise FileNotFoundError(f"feature store incomplete: {stem}.npy/.npz missing")
    return None


def _load(path: Path) -> Any:
    if path.suffix == ".npz":
        return sparse.load_npz(path).tocsr()
    return np.load(path, mmap_mode="r")
