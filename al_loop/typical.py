"""Cold start by typicality: the initial set covers the pool's dense regions instead of a random draw.

TypiClust (Hacohen, Dekel & Weinshall, "Active Learning on a Budget", ICML 2022) shows that with very few
labels, representative ("typical") examples of distinct clusters beat uncertainty and random picks. This is its
simple form: k-means into k clusters, then per cluster the row closest to its centre (a medoid), most populous
cluster first. Memory stays bounded: k-means (scikit-learn's MiniBatchKMeans) is fitted on a sample of at most
`SAMPLE_ROWS` rows, wide or sparse features are first reduced by TruncatedSVD, and the pool is assigned chunk by
chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import TruncatedSVD

from al_loop.scoring import Ranked, chunks
from al_loop.selection import Needs, SelectionContext

SAMPLE_ROWS = 20000  # rows k-means and the SVD are fitted on
REDUCED_DIMENSIONS = 50  # TruncatedSVD target for sparse or wider features (text)
CHUNK_ROWS = 65536


class Typical:
    """The initial set: one typical row (closest to its k-means centre) per cluster, k clusters."""

    needs = Needs(model=False, features=True)

    def __init__(self, name: str) -> None:
        self.name = name

    def select(self, ctx: SelectionContext) -> Ranked:
        available = ctx.available
        k = min(ctx.k, len(available))
        if k == 0:
            return Ranked.empty()
        seed = int(ctx.rng.integers(2**31))
        sample = np.sort(ctx.rng.choice(available, min(SAMPLE_ROWS, len(available)), replace=False))
        reduce = _reducer(ctx.x_pool, sample, seed)
        kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=1024)
        kmeans.fit(reduce(ctx.x_pool[sample]))
        best_distance = np.full(k, np.inf)
        best_row = np.full(k, -1, dtype=np.int64)
        sizes = np.zeros(k, dtype=np.int64)
        for start, stop in chunks(len(available), CHUNK_ROWS):
            rows = available[start:stop]
            distances = kmeans.transform(reduce(ctx.x_pool[rows]))
            cluster = distances.argmin(axis=1)
            nearest = distances[np.arange(len(rows)), cluster]
            sizes += np.bincount(cluster, minlength=k)
            for c in np.unique(cluster):
                members = np.flatnonzero(cluster == c)
                i = members[np.argmin(nearest[members])]  # first minimum: the lower pool row on ties
                if nearest[i] < best_distance[c]:
                    best_distance[c], best_row[c] = nearest[i], rows[i]
        order = np.argsort(-sizes, kind="stable")  # most populous cluster first
        picked = [int(best_row[c]) for c in order if best_row[c] >= 0]
        if len(picked) < k:  # empty clusters: fill at random
            rest = np.setdiff1d(available, picked)
            picked += ctx.rng.choice(rest, k - len(picked), replace=False).tolist()
        rows = np.array(picked, dtype=np.int64)
        return Ranked(rows, np.full(len(rows), np.nan))


def _reducer(x: Any, sample: np.ndarray, seed: int) -> Any:
    """Dense features of at most REDUCED_DIMENSIONS columns (identity when already dense and narrow)."""
    if not sparse.issparse(x) and x.shape[1] <= REDUCED_DIMENSIONS:
        return lambda block: np.asarray(block, dtype=float)
    svd = TruncatedSVD(n_components=min(REDUCED_DIMENSIONS, x.shape[1] - 1), random_state=seed)
    svd.fit(x[sample])
    return lambda block: svd.transform(block)
