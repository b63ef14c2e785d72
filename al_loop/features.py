"""The feature store: the pool's (and test rows') features are computed once and kept on disk under the
output folder, dense as .npy (opened memory-mapped) and sparse as .npz, next to the fitted featurizer.

A later round, a resumed run, `al-loop sync` or a Dask worker reads them instead of featurizing again.
The store is keyed by everything that decides the features (the dataset and features config, the input
files' size and modification time, and the seed when it decides the split).

The featurizer is a pickle, so it is loaded only if its SHA-256 matches the one al-loop wrote (mode 0600)
beside the store, in `<key>.sha256`: a replaced file is refused, never unpickled. The matrices are a cache
(read without pickle): a truncated or garbage one is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from filelock import FileLock
from scipy import sparse

from al_loop.errors import DataError

Computed = tuple[Any, Any, Any | None]  # featurizer, x_pool, x_test
FEATURIZER = "featurizer.joblib"
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # a truncated or garbage matrix


def store_key(parts: dict[str, Any], files: list[Path | None]) -> str:
    """A hash of the config parts and the input files' identity (path, size, modification time)."""
    stats = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files if f is not None]
    blob = json.dumps({"parts": parts, "files": stats}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(folder: Path, compute: Callable[[], Computed]) -> tuple[Computed, Path]:
    """Load the features stored in `folder`, or compute and store them (atomically) first.

    Returns the features and the path of the pool's feature file (for Dask workers). A store without a
    recorded featurizer hash (made by an older al-loop), or with an unreadable matrix, is rebuilt; a
    featurizer whose hash differs from the recorded one is refused (DataError naming the fix).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    digest_path = folder.with_name(f"{folder.name}.sha256")  # outside the store, written by al-loop only
    with FileLock(str(folder.with_name(f"{folder.name}.lock"))):  # one process builds, the others wait
        for attempt in range(2):
            if attempt or not ((folder / "done").exists() and digest_path.exists()):
                _build(folder, digest_path, compute)
            try:
                pool_path = _path(folder / "pool")
                test_path = _path(folder / "test", required=False)
                x_pool, x_test = _load(pool_path), None if test_path is None else _load(test_path)
                break
            except _UNREADABLE:
                if attempt:
                    raise
        _verify(folder / FEATURIZER, digest_path)
        featurizer = joblib.load(folder / FEATURIZER)  # the bytes al-loop wrote (hash checked above)
    return (featurizer, x_pool, x_test), pool_path


def _build(folder: Path, digest_path: Path, compute: Callable[[], Computed]) -> None:
    """Compute the features into a staging folder, record the featurizer's hash (0600), move the store in."""
    featurizer, x_pool, x_test = compute()
    staging = Path(tempfile.mkdtemp(prefix=".features-", dir=folder.parent))
    _save(staging / "pool", x_pool)
    if x_test is not None:
        _save(staging / "test", x_test)
    joblib.dump(featurizer, staging / FEATURIZER)
    (staging / "done").write_text("ok")
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete or unreadable store: a cache, rebuilt
    _write_private(digest_path, _sha256(staging / FEATURIZER))
    os.replace(staging, folder)


def _verify(path: Path, digest_path: Path) -> None:
    """Refuse a featurizer that is not the one al-loop wrote (it is a pickle: loading it could run code)."""
    if not path.is_file() or _sha256(path) != digest_path.read_text().strip():
        raise DataError(f"the feature store's {path} is not the file al-loop wrote (its SHA-256 differs from "
                        f"{digest_path}); it was not loaded, since a replaced pickle can run code. Delete the "
                        f"folder {path.parent} to rebuild it")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_private(path: Path, text: str) -> None:
    """Write a file readable and writable by its owner only (0600), atomically."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mkstemp: 0600
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


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
