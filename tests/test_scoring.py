"""The chunked scorer scores each contiguous chunk as a view and masks the used rows: its picks must be exactly
those of a straightforward reference (score every available row, rank by score then pool row, take k)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from al_loop.model import FittedModel, fit
from al_loop.scoring import top_candidates
from al_loop.strategies import ambiguity

CLASSES = [str(c) for c in range(3)]
N_ROWS = 400


@pytest.fixture(scope="module")
def model() -> FittedModel:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(120, 5)).astype(float)
    y = (x[:, 0] + x[:, 1] > 2).astype(int) + (x[:, 2] > 1).astype(int)
    return fit(LogisticRegression(max_iter=500), x, y.astype(str), CLASSES)


def _reference(model: FittedModel, x: np.ndarray, available: np.ndarray, measure: str, k: int) -> np.ndarray:
    """Score all available rows at once; order by (score descending, pool row ascending); first k."""
    if len(available) == 0:
        return available
    scores = ambiguity(measure, model.predict_proba(x[available]))
    return available[np.lexsort((available, -scores))[:k]]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), used_share=st.floats(0.0, 1.0), chunk=st.integers(1, N_ROWS + 10),
       k=st.integers(1, N_ROWS + 10), measure=st.sampled_from(["margin", "entropy", "least_confidence"]),
       as_sparse=st.booleans(), as_view=st.booleans())
def test_view_and_mask_scorer_gives_exactly_the_reference_picks(
        model: FittedModel, seed: int, used_share: float, chunk: int, k: int, measure: str, as_sparse: bool,
        as_view: bool) -> None:
    rng = np.random.default_rng(seed)
    # few distinct values: many duplicate rows, so many tied scores exercise the tie-break by pool row
    dense = rng.integers(0, 3, size=(N_ROWS, 5)).astype(float)
    used = rng.random(N_ROWS) < used_share
    available = np.flatnonzero(~used)
    strided = np.repeat(dense, 2, axis=1)[:, ::2]  # the same values in a non-contiguous view
    x = sparse.csr_matrix(dense) if as_sparse else (strided if as_view else dense)
    ranked = top_candidates(model, x, available, measure, k, chunk)
    expected = _reference(model, dense, available, measure, k)
    np.testing.assert_array_equal(ranked.rows, expected)  # same rows, same order
    assert not np.isin(ranked.rows, np.flatnonzero(used)).any(), "a used row is never picked"
    assert len(ranked.rows) == min(k, len(available))


def test_chunk_boundaries_and_k_beyond_a_chunks_available_rows(model: FittedModel) -> None:
    dense = np.tile(np.array([[0.0, 1, 2, 1, 0], [2.0, 2, 0, 1, 1], [1.0, 1, 1, 1, 1]]), (40, 1))  # 120 rows
    available = np.setdiff1d(np.arange(120), [0, 15, 16, 31, 32, 47, 63, 64, 119])  # used rows at the edges
    for chunk in (1, 16, 17, 64, 119, 120):
        for k in (1, 5, 16, 40, 200):
            for x in (dense, sparse.csr_matrix(dense)):
                ranked = top_candidates(model, x, available, "margin", k, chunk)
                np.testing.assert_array_equal(ranked.rows, _reference(model, dense, available, "margin", k))


def test_the_chunk_is_scored_as_a_view_not_a_gathered_copy(model: FittedModel) -> None:
    seen: list[bool] = []

    class Spy:
        def predict_proba(self, x_chunk: np.ndarray) -> np.ndarray:
            seen.append(np.shares_memory(x_chunk, dense))
            return model.predict_proba(x_chunk)

    dense = np.random.default_rng(2).integers(0, 3, size=(100, 5)).astype(float)
    available = np.setdiff1d(np.arange(100), np.arange(0, 100, 7))  # a used row in every chunk
    top_candidates(Spy(), dense, available, "margin", 5, 32)
    assert seen == [True] * 4
