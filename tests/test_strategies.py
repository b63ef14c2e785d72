"""Query strategies: ambiguity scores against hand-computed values, ranking, top-k ties, random picks."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from al_loop.strategies import ambiguity, margin_ambiguity, top_k

from .picking import select

# rows: a coin flip, a fairly sure guess, a certain guess
BINARY = np.array([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]])
# rows: a skewed 3-class guess, a uniform 3-class guess
TERNARY = np.array([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]])


# -- scores against hand-computed values ----------------------------------------------------------


def test_least_confidence_is_one_minus_top_probability():
    np.testing.assert_allclose(ambiguity("least_confidence", BINARY), [0.5, 0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(ambiguity("least_confidence", TERNARY), [0.5, 2 / 3], atol=1e-12)


def test_margin_ambiguity_is_one_minus_gap_between_two_best():
    # [0.5, 0.5]: gap 0 -> 1; [0.9, 0.1]: gap 0.8 -> 0.2; [1, 0]: gap 1 -> 0
    np.testing.assert_allclose(ambiguity("margin", BINARY), [1.0, 0.2, 0.0], atol=1e-12)
    # [0.5, 0.3, 0.2]: gap 0.2 -> 0.8 (the third class does not count); uniform: gap 0 -> 1
    np.testing.assert_allclose(ambiguity("margin", TERNARY), [0.8, 1.0], atol=1e-12)
    np.testing.assert_allclose(margin_ambiguity(TERNARY), [0.8, 1.0], atol=1e-12)


def test_margin_ambiguity_does_not_depend_on_column_order():
    proba = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(margin_ambiguity(proba), [0.8, 0.3], atol=1e-12)


def test_entropy_is_shannon_entropy_in_nats():
    h_09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.3250829733914482
    np.testing.assert_allclose(ambiguity("entropy", BINARY), [math.log(2), h_09, 0.0], atol=1e-12)
    assert ambiguity("entropy", BINARY)[0] == pytest.approx(0.6931471805599453)
    h_532 = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))  # 1.0296530140645737
    np.testing.assert_allclose(ambiguity("entropy", TERNARY), [h_532, math.log(3)], atol=1e-12)
    assert h_532 == pytest.approx(1.0296530140645737)


def test_random_strategy_scores_with_margin():
    np.testing.assert_allclose(ambiguity("random", BINARY), [1.0, 0.2, 0.0], atol=1e-12)


def test_ambiguity_accepts_lists():
    np.testing.assert_allclose(ambiguity("least_confidence", [[0.7, 0.3]]), [0.3], atol=1e-12)


# -- select: ranked, most ambiguous first ---------------------------------------------------------

# margins 0.8, 0.0, 0.4, 0.98 -> margin ambiguity 0.2, 1.0, 0.6, 0.02 -> rank 1, 2, 0, 3
POOL = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3], [0.99, 0.01]])


@pytest.mark.parametrize("strategy", ["least_confidence", "margin", "entropy"])
def test_select_ranks_most_ambiguous_first(strategy):
    picked = select(strategy, POOL, 4, np.random.default_rng(0))
    assert picked.rows.tolist() == [1, 2, 0, 3]
    expected = ambiguity(strategy, POOL)[[1, 2, 0, 3]]
    np.testing.assert_allclose(picked.scores, expected)
    assert np.all(np.diff(picked.scores) < 0)


def test_select_returns_the_k_best_with_their_scores():
    picked = select("margin", POOL, 2, np.random.default_rng(0))
    assert picked.rows.tolist() == [1, 2]
    np.testing.assert_allclose(picked.scores, [1.0, 0.6], atol=1e-12)


def test_select_k_larger_than_pool_returns_whole_pool():
    picked = select("entropy", POOL, 10, np.random.default_rng(0))
    assert sorted(picked.rows.tolist()) == [0, 1, 2, 3]
    assert len(picked.scores) == 4


def test_select_scored_ignores_rng():
    a = select("least_confidence", POOL, 3, np.random.default_rng(1))
    b = select("least_confidence", POOL, 3, np.random.default_rng(2))
    assert a.rows.tolist() == b.rows.tolist() == [1, 2, 0]


# -- top_k ------------------------------------------------------------------------------------------


def test_top_k_breaks_ties_by_earlier_position():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    assert top_k(scores, 1).tolist() == [1]
    assert top_k(scores, 2).tolist() == [1, 3]
    assert top_k(scores, 3).tolist() == [1, 3, 0]
    assert top_k(scores, 4).tolist() == [1, 3, 0, 2]
    assert top_k(scores, 5).tolist() == [1, 3, 0, 2, 4]


def test_top_k_tie_across_the_cut_keeps_the_earliest():
    scores = np.array([0.2, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(np.zeros(50), 5).tolist() == [0, 1, 2, 3, 4]
    assert top_k(np.array([0.1, 0.3, 0.3, 0.7]), 2).tolist() == [3, 1]


@pytest.mark.parametrize("k", [0, 1, 3, 5, 6, 100])
def test_top_k_returns_min_k_n_distinct_rows(k):
    scores = np.array([0.3, 0.1, 0.3, 0.8, 0.0])
    rows = top_k(scores, k)
    assert len(rows) == min(k, 5)
    assert len(set(rows.tolist())) == len(rows)
    assert rows.tolist() == [3, 0, 2, 1, 4][: min(k, 5)]


def test_top_k_empty_and_negative():
    assert top_k(np.array([]), 3).tolist() == []
    assert top_k(np.array([0.4, 0.2]), -1).tolist() == []
    assert top_k(np.array([0.4, 0.2]), 0).dtype == np.int64


# -- random -----------------------------------------------------------------------------------------

PROBA_50 = np.random.default_rng(123).dirichlet([1.0, 1.0, 1.0], size=50)


def test_random_selection_is_reproducible_for_the_same_seed_and_round():
    a = select("random", PROBA_50, 10, np.random.default_rng([7, 2]))
    b = select("random", PROBA_50, 10, np.random.default_rng([7, 2]))
    assert a.rows.tolist() == b.rows.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)
    assert len(set(a.rows.tolist())) == 10
    assert all(0 <= r < 50 for r in a.rows)
    # scores are the margin ambiguity of the picked rows
    np.testing.assert_allclose(a.scores, margin_ambiguity(PROBA_50[a.rows]))


def test_random_selection_differs_for_another_seed_or_round():
    base = select("random", PROBA_50, 10, np.random.default_rng([7, 2])).rows.tolist()
    other_seed = select("random", PROBA_50, 10, np.random.default_rng([8, 2])).rows.tolist()
    other_round = select("random", PROBA_50, 10, np.random.default_rng([7, 3])).rows.tolist()
    assert base != other_seed
    assert base != other_round


def test_random_without_probabilities_uses_n_candidates():
    a = select("random", None, 4, np.random.default_rng([1, 0]), n_candidates=9)
    b = select("random", None, 4, np.random.default_rng([1, 0]), n_candidates=9)
    assert a.rows.tolist() == b.rows.tolist()
    assert len(set(a.rows.tolist())) == 4
    assert all(0 <= r < 9 for r in a.rows)
    assert np.isnan(a.scores).all() and len(a.scores) == 4
    small = select("random", None, 10, np.random.default_rng([1, 0]), n_candidates=3)
    assert sorted(small.rows.tolist()) == [0, 1, 2]


def test_random_without_probabilities_or_count_raises():
    with pytest.raises(ValueError, match="n_candidates"):
        select("random", None, 4, np.random.default_rng(0))


# -- unknown strategy -------------------------------------------------------------------------------


def test_unknown_strategy_raises_value_error():
    with pytest.raises(ValueError, match="unknown ambiguity measure 'bald'"):
        ambiguity("bald", BINARY)
    with pytest.raises(ValueError, match="unknown strategy"):
        select("bald", BINARY, 2, np.random.default_rng(0))


def test_unknown_strategy_without_probabilities_raises_value_error():
    with pytest.raises(ValueError):
        select("bald", None, 2, np.random.default_rng(0), n_candidates=5)


# -- properties -------------------------------------------------------------------------------------

# few distinct values so that ties are common
tied_scores = arrays(np.float64, st.integers(0, 40), elements=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
any_scores = arrays(np.float64, st.integers(0, 40),
                    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))


@st.composite
def probabilities(draw, max_rows=30):
    n_classes = draw(st.integers(2, 6))
    n_rows = draw(st.integers(1, max_rows))
    raw = draw(arrays(np.float64, (n_rows, n_classes),
                      elements=st.one_of(st.just(0.0), st.floats(1e-6, 1.0))))
    raw[:, 0] += 1e-9  # no all-zero row
    return raw / raw.sum(axis=1, keepdims=True)


@settings(max_examples=150, deadline=None)
@given(scores=st.one_of(tied_scores, any_scores), k=st.integers(-2, 45))
def test_top_k_returns_the_k_largest_in_non_increasing_order(scores, k):
    rows = top_k(scores, k)
    n = min(max(k, 0), len(scores))
    assert len(rows) == n
    assert len(set(rows.tolist())) == n
    picked = scores[rows]
    assert np.all(np.diff(picked) <= 0)
    np.testing.assert_array_equal(picked, np.sort(scores)[::-1][:n])
    # ties: equal scores in increasing position, and no skipped row beats a picked one with the same score
    for a, b in pairwise(rows.tolist()):
        if scores[a] == scores[b]:
            assert a < b
    if n:
        last = picked[-1]
        last_positions = [r for r in rows.tolist() if scores[r] == last]
        skipped_same = [i for i in range(len(scores)) if scores[i] == last and i not in set(rows.tolist())]
        assert not skipped_same or max(last_positions) < min(skipped_same)


@settings(max_examples=100, deadline=None)
@given(proba=probabilities(), strategy=st.sampled_from(["random", "least_confidence", "margin", "entropy"]),
       k=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_selection_picks_never_repeat(proba, strategy, k, seed):
    picked = select(strategy, proba, k, np.random.default_rng([seed, 0]))
    rows = picked.rows.tolist()
    assert len(rows) == min(k, len(proba))
    assert len(set(rows)) == len(rows)
    assert all(0 <= r < len(proba) for r in rows)
    assert len(picked.scores) == len(rows)


@settings(max_examples=150, deadline=None)
@given(proba=probabilities())
def test_ambiguity_scores_are_within_theoretical_bounds(proba):
    n_classes = proba.shape[1]
    eps = 1e-9
    lc = ambiguity("least_confidence", proba)
    assert np.all(lc >= -eps) and np.all(lc <= 1 - 1 / n_classes + eps)
    margin = ambiguity("margin", proba)
    assert np.all(margin >= -eps) and np.all(margin <= 1 + eps)
    entropy = ambiguity("entropy", proba)
    assert np.all(entropy >= -eps) and np.all(entropy <= math.log(n_classes) + eps)
