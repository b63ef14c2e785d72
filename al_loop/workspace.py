"""The prepared inputs of a run: validated splits and features, computed once and shared."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer

from al_loop.config import Config
from al_loop.data import Splits, featurize, load_splits
from al_loop.errors import DataError


@dataclass
class Workspace:
    """Splits, fitted featurizer, feature matrices, and the id -> row map of the pool."""

    splits: Splits
    featurizer: ColumnTransformer
    x_pool: Any
    x_test: Any | None
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


def prepare(config: Config) -> Workspace:
    """Load, validate and featurize the data of a config."""
    splits = load_splits(config.dataset, config.seed)
    try:
        featurizer, x_pool, x_test = featurize(splits, config.dataset, config.features)
    except ValueError as error:  # e.g. TF-IDF "empty vocabulary" after min_df / stop words
        raise DataError(f"cannot featurize the pool: {error}; check the text column and features.min_df / "
                        "features.stop_words") from None
    return Workspace(splits=splits, featurizer=featurizer, x_pool=x_pool, x_test=x_test)
