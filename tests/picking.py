"""Run a registry strategy on given probabilities, as the loop would (tests only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from al_loop.scoring import Ranked, top_candidates
from al_loop.selection import SelectionContext, get, pick_scores


class FixedProba:
    """A 'model' whose probabilities for pool row i are proba[i] (the pool's features are the row numbers)."""

    def __init__(self, proba: np.ndarray) -> None:
        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, x: Any) -> np.ndarray:
        return self.proba[np.asarray(x)[:, 0].astype(int)]


def select(name: str, proba: np.ndarray | None, k: int, rng: np.random.Generator, n_candidates: int | None = None,
           x_candidates: Any = None, x_labeled: Any = None) -> Ranked:
    """The strategy's picks over a pool whose rows have these probabilities (or n_candidates rows without a
    model), scored like the loop records them. ranked_batch takes the candidates' and labeled rows' features."""
    n = len(proba) if proba is not None else n_candidates
    if n is None:
        raise ValueError("random selection without probabilities needs n_candidates")
    strategy = get(name)
    if proba is None and strategy.needs.model:
        raise ValueError(f"strategy {name!r} needs the model's probabilities")
    model = None if proba is None else FixedProba(proba)
    rows = np.arange(n)[:, None]
    x_pool, labeled = rows, np.empty(0, dtype=np.int64)
    if x_candidates is not None:  # ranked_batch: the real features, labeled rows appended after the candidates
        x_pool = np.vstack([x_candidates, x_labeled])
        labeled = np.arange(n, n + len(x_labeled))
        model = _Shifted(proba, x_pool)
    ctx = SelectionContext(round=1, k=k, rng=rng, x_pool=x_pool, available=np.arange(n), model=model,
                           labeled=labeled, score_pool=lambda m, avail, measure, kk: top_candidates(
                               m, x_pool, avail, measure, kk, 7))
    ranked = strategy.select(ctx)
    proba_picks = None if proba is None or len(ranked.rows) == 0 else np.asarray(proba)[ranked.rows]
    return Ranked(ranked.rows, pick_scores(ranked, proba_picks))


class _Shifted:
    """Probabilities looked up by the row of a feature vector in x_pool (for ranked_batch's real features)."""

    def __init__(self, proba: np.ndarray, x_pool: np.ndarray) -> None:
        self.proba, self.x_pool = np.asarray(proba, dtype=float), x_pool

    def predict_proba(self, x: Any) -> np.ndarray:
        index = [int(np.flatnonzero((self.x_pool == row).all(axis=1))[0]) for row in np.asarray(x)]
        return self.proba[index]
