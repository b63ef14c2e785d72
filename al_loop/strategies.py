"""Ambiguity measures: pure functions from probabilities to scores, and the ranked top-k.

The strategies that use them are classes in the registry (al_loop.selection).

Scores come from modAL's probability-level measures (`_proba_uncertainty`, `_proba_margin`,
`_proba_entropy`, the functions behind `classifier_uncertainty` & co.), applied to probabilities
computed once per round, so the same numbers also give the model's guess for each task and the
scoring can run on a chunk of the pool. modAL's `ActiveLearner` is not used (broken on
scikit-learn >= 1.8, see DESIGN.md); the labeled set lives in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# modAL is imported where it is used, not here: it imports scikit-learn and scipy (about 1.5 s), and the config
# (which imports the strategy names from here) is all that `al-loop labelstudio stop` or `audit` need.


def least_confidence_ambiguity(proba: np.ndarray) -> np.ndarray:
    """1 - p_top1 (modAL's `_proba_uncertainty`)."""
    from modAL.uncertainty import _proba_uncertainty

    return _proba_uncertainty(proba)


def margin_ambiguity(proba: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): 1 when the two best classes tie, 0 when one class is certain."""
    from modAL.uncertainty import _proba_margin

    return 1.0 - _proba_margin(proba)


def entropy_ambiguity(proba: np.ndarray) -> np.ndarray:
    """The entropy of the class probabilities (modAL's `_proba_entropy`)."""
    from modAL.uncertainty import _proba_entropy

    return _proba_entropy(proba)


MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence_ambiguity,
    "margin": margin_ambiguity,
    "entropy": entropy_ambiguity,
}


def ambiguity(measure: str, proba: np.ndarray) -> np.ndarray:
    """Ambiguity of each row under a measure (least_confidence, margin, entropy): higher means more worth a
    human label. `random`, which does not score, gets the margin ambiguity so picks stay comparable."""
    scorer = margin_ambiguity if measure == "random" else MEASURES.get(measure)
    if scorer is None:
        raise ValueError(f"unknown ambiguity measure {measure!r}; choose one of {', '.join(MEASURES)}")
    return scorer(np.asarray(proba, dtype=float))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first; ties go to the earlier position.

    Hand-written rather than modAL's `multi_argmax`, which returns the top k unranked and leaves ties
    to argpartition: the rank is pushed to annotators and must be deterministic.
    """
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # include every row tied with the k-th score, then order by (score desc, position asc)
    threshold = scores[candidates].min()
    candidates = np.flatnonzero(scores >= threshold)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


@dataclass(frozen=True)
class _Labeled:
    """The two attributes modAL's ranked_batch reads from a learner (instead of an ActiveLearner)."""

    X_training: Any
    on_transformed: bool = False


def ranked_batch_rows(uncertainty: np.ndarray, k: int, x_candidates: Any, x_labeled: Any) -> np.ndarray:
    """modAL's ranked batch (Cardoso et al. 2017): uncertainty traded against distance to labeled and
    already-picked rows. Costs candidates x labeled distances per pick: for pools of thousands, not millions."""
    from modAL.batch import ranked_batch

    if x_candidates is None or x_labeled is None:
        raise ValueError("ranked_batch needs the features of the candidates and of the labeled rows")
    k = min(k, len(uncertainty))
    picked, _ = ranked_batch(_Labeled(x_labeled), unlabeled=x_candidates, uncertainty_scores=uncertainty,
                             n_instances=k, metric="euclidean", n_jobs=None)
    return np.asarray(picked, dtype=np.int64).reshape(-1)
