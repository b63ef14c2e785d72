"""Bounded-memory selection over a large pool: score the candidates chunk by chunk, keep a running top-k.

Peak memory is one chunk of probabilities (chunk_rows x classes) plus the k best, whatever the pool size;
the feature matrix may be a memory-mapped file. The same chunk function runs locally and on Dask workers
(al_loop.distributed), and both merge with one total order (score descending, pool row ascending), so the
picks are identical for the same model and chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from al_loop.strategies import ambiguity, top_k


@dataclass(frozen=True)
class Ranked:
    """Pool rows, most ambiguous first, with their scores."""

    rows: np.ndarray
    scores: np.ndarray

    @staticmethod
    def empty() -> Ranked:
        return Ranked(np.empty(0, dtype=np.int64), np.empty(0, dtype=float))


def merge(first: Ranked, second: Ranked, k: int) -> Ranked:
    """The k best of two ranked sets: score descending, ties to the lower pool row."""
    rows = np.concatenate([first.rows, second.rows])
    scores = np.concatenate([first.scores, second.scores])
    order = np.lexsort((rows, -scores))[:k]
    return Ranked(rows[order], scores[order])


def chunk_top(model: Any, x_chunk: Any, rows: np.ndarray, measure: str, k: int,
              positions: np.ndarray | None = None) -> Ranked:
    """Score one chunk (rows = their pool positions) under an ambiguity measure and keep its k best.

    With `positions` (ascending), x_chunk is the whole contiguous chunk, used rows included, and only its
    rows at those positions compete: scoring a view and masking costs less than gathering a copy.
    """
    if len(rows) == 0:
        return Ranked.empty()
    scores = ambiguity(measure, model.predict_proba(x_chunk))
    if positions is not None:
        scores = scores[positions]
    keep = top_k(scores, k)  # rows ascend, so its tie-break by position is the tie-break by pool row
    return Ranked(rows[keep], scores[keep])


def chunks(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Fixed chunk boundaries over the pool (the same locally and on Dask: scores stay bit-identical)."""
    return [(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows)]


def top_candidates(model: Any, x: Any, available: np.ndarray, measure: str, k: int, chunk_rows: int) -> Ranked:
    """The k most ambiguous of the available pool rows (sorted ascending), scored chunk by chunk.

    Each chunk is scored whole as a slice (a view when x is dense or memory-mapped) and the used rows are
    dropped from its scores: the picks are those of scoring only the available rows."""
    best = Ranked.empty()
    for start, stop in chunks(x.shape[0], chunk_rows):
        low, high = np.searchsorted(available, [start, stop])
        rows = available[low:high]
        if len(rows) == 0:
            continue
        # a view of the contiguous chunk (no copy of dense or memory-mapped features), used rows masked after
        best = merge(best, chunk_top(model, x[start:stop], rows, measure, k, rows - start), k)
    return best


def farthest_first(x: Any, ranked: Ranked, k: int) -> Ranked:
    """k spread-out rows among ranked candidates: k-center greedy (farthest-first traversal) in feature space,
    starting from the most ambiguous; distance ties go to the more ambiguous. O(M k) distances for M candidates,
    never M x M or pool x labeled."""
    m = len(ranked.rows)
    if m <= k:
        return ranked
    points = _dense(x[ranked.rows])
    chosen = [0]
    nearest = _distances(points, points[0])
    for _ in range(1, k):
        nearest[chosen] = -np.inf
        best = int(np.argmax(nearest))  # argmax takes the first maximum: the more ambiguous candidate
        chosen.append(best)
        nearest = np.minimum(nearest, _distances(points, points[best]))
    picked = np.array(chosen)
    return Ranked(ranked.rows[picked], ranked.scores[picked])


def _dense(block: Any) -> np.ndarray:
    return np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=float)


def _distances(points: np.ndarray, center: np.ndarray) -> np.ndarray:
    return np.sqrt(((points - center) ** 2).sum(axis=1))
