"""The prepared inputs of a run: validated splits and features, computed once and shared."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer

from al_loop.config import Config
from al_loop.data import Splits, featurize, load_splits
from al_loop.errors import ConfigError, DataError, StorageError, storage_error
from al_loop.features import cached, store_key


@dataclass
class Workspace:
    """Splits, fitted featurizer, feature matrices, and the id -> row map of the pool."""

    splits: Splits
    featurizer: ColumnTransformer
    x_pool: Any
    x_test: Any | None
    features_path: Path | None = None  # the pool's stored features (for Dask workers)
    row_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.row_of = {example_id: row for row, example_id in enumerate(self.splits.pool.ids)}

    @property
    def classes(self) -> list[str]:
        return self.splits.classes

    def fingerprint(self) -> str:
        """Hash of the pool's ids in order: a resumed run must see the same pool."""
        digest = hashlib.sha256()
        for example_id in self.splits.pool.ids:
            digest.update(str(example_id).encode())
            digest.update(b"\0")
        return digest.hexdigest()[:16]

    def rows(self, example_ids: list[str]) -> np.ndarray:
        try:
            return np.fromiter((self.row_of[e] for e in example_ids), dtype=np.int64, count=len(example_ids))
        except KeyError as error:
            raise DataError(f"example {error.args[0]!r} is in the ledger but not in the pool file; was the "
                            "pool edited? Restore it or start a new output_dir") from None


def check_output_dir(config: Config) -> None:
    """Create the output folder if needed and check a file can be written in it, before anything else: a path
    that is a file is a ConfigError, a folder that cannot be written a StorageError."""
    folder = config.output_dir
    blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        where = f"output_dir {folder}" + ("" if blocking == folder else f": {blocking}")
        raise ConfigError(f"{where} is a file, not a folder. Set output_dir to a folder "
                          "(it holds the ledger, the features and the default MLflow store), or move that file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        raise storage_error(error) or StorageError(
            f"cannot write in output_dir {folder}: {error}. Make it writable, or set output_dir to a folder you "
            "can write") from None


def prepare(config: Config) -> Workspace:
    """Load and validate the data of a config; featurize it, or read the features stored by an earlier run."""
    splits = load_splits(config.dataset, config.seed)

    def compute() -> tuple[Any, Any, Any]:
        try:
            return featurize(splits, config.dataset, config.features)
        except ValueError as error:  # e.g. TF-IDF "empty vocabulary" after min_df / stop words
            raise DataError(f"cannot featurize the pool: {error}; check the text column and features.min_df / "
                            "features.stop_words") from None

    if not config.compute.store_features:
        featurizer, x_pool, x_test = compute()
        return Workspace(splits=splits, featurizer=featurizer, x_pool=x_pool, x_test=x_test)
    dataset = config.dataset.model_dump(mode="json")
    key = store_key({"dataset": dataset, "features": config.features.model_dump(mode="json"),
                     "split_seed": config.seed if config.dataset.test_path is None else None},
                    [config.dataset.path, config.dataset.test_path])
    store = config.output_dir / "features"
    staged = set(store.glob(".features-*"))
    try:
        (featurizer, x_pool, x_test), path = cached(store / key, compute)
    except OSError as error:  # e.g. a full disk: remove what this call staged, so nothing half-written stays
        for folder in set(store.glob(".features-*")) - staged:
            shutil.rmtree(folder, ignore_errors=True)
        raise storage_error(error) or error from None
    return Workspace(splits=splits, featurizer=featurizer, x_pool=x_pool, x_test=x_test, features_path=path)
