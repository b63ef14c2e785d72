"""The strategy registry: every way of picking examples is one small class behind one protocol.

A strategy declares what it needs (a fitted model, the features, the labeled rows, the largest pool it can
handle) and returns ranked pool rows for a `SelectionContext`. The loop builds the context, asks the registry
for the strategy by name and never branches on that name. Adding a strategy is one class and one registry
line; config validates names against `QUERY_STRATEGIES` and `INITIAL_STRATEGIES`, and the benchmark reads each
strategy's limits from here.

Scoring stays a pure function over probabilities (`al_loop.strategies`); chunked scoring of a large pool,
locally or on Dask, is one helper (`PoolScorer`) that any strategy can use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from al_loop.scoring import Ranked, farthest_first
from al_loop.strategies import MEASURES, margin_ambiguity, ranked_batch_rows


@dataclass(frozen=True)
class Needs:
    """What a strategy needs to pick: a fitted model, the features, the labeled rows, and the largest pool
    (candidates) it can handle (None: any size)."""

    model: bool = True
    features: bool = False
    labeled: bool = False
    max_pool: int | None = None


class PoolScorer(Protocol):
    """Chunked scoring of the available pool rows: the k highest under an ambiguity measure, ranked."""

    def __call__(self, model: Any, available: np.ndarray, measure: str, k: int) -> Ranked: ...


@dataclass
class SelectionContext:
    """Everything a strategy may read to pick `k` rows of the pool for round `round`.

    `available` are the pool rows not yet used (ascending); `labeled` the rows with a training label and
    `labels` those labels and `label_rounds` the rounds that picked them (same order). `state` is the strategy's
    own durable memory (kept in the ledger), so a resumed run makes the same choices; `cache` is memory for this
    process only; `fit` fits a model of the run's kind on pool rows and labels; `notes` are logged with the round.
    """

    round: int
    k: int
    rng: np.random.Generator
    x_pool: Any
    available: np.ndarray
    model: Any = None
    labeled: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    label_rounds: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    score_pool: PoolScorer | None = None
    fit: Callable[[np.ndarray, np.ndarray], Any] | None = None
    state: Any = field(default_factory=dict)  # a mapping of str -> str (get, [], in), kept in the ledger
    cache: dict[Any, Any] = field(default_factory=dict)  # per-run memory that may be lost (refitted models)
    diversity_factor: int = 10
    notes: dict[str, float] = field(default_factory=dict)  # what the strategy wants logged for this round

    def top(self, measure: str, k: int) -> Ranked:
        """The k most ambiguous available rows under `measure`, scored chunk by chunk (locally or on Dask)."""
        if self.score_pool is None:
            raise ValueError("this context has no pool scorer")
        return self.score_pool(self.model, self.available, measure, k)


class Strategy(Protocol):
    """One way of picking examples: a registry name, what it needs, and the ranked rows it picks."""

    name: str
    needs: Needs

    def select(self, ctx: SelectionContext) -> Ranked:
        """Up to ctx.k available pool rows, most worth a label first, with their scores (NaN: not scored)."""
        ...


class RandomPick:
    """Uniform random rows of the available pool (the baseline, the initial set, the evaluation set)."""

    needs = Needs(model=False)

    def __init__(self, name: str) -> None:
        self.name = name

    def select(self, ctx: SelectionContext) -> Ranked:
        n = len(ctx.available)
        rows = ctx.available[ctx.rng.permutation(n)[: min(ctx.k, n)]]
        return Ranked(rows, np.full(len(rows), np.nan))


class Uncertainty:
    """The k rows the model is least sure about under one ambiguity measure (modAL's scoring functions)."""

    needs = Needs(model=True)

    def __init__(self, measure: str) -> None:
        self.name = self.measure = measure

    def select(self, ctx: SelectionContext) -> Ranked:
        return ctx.top(self.measure, ctx.k)


class MarginDiverse:
    """The diversity_factor x k most ambiguous rows by margin, then k spread out among them (k-center greedy):
    one batch does not spend labels on near-duplicates; no pool x pool distances."""

    name = "margin_diverse"
    needs = Needs(model=True, features=True)

    def select(self, ctx: SelectionContext) -> Ranked:
        return farthest_first(ctx.x_pool, ctx.top("margin", ctx.k * ctx.diversity_factor), ctx.k)


class RankedBatch:
    """modAL's ranked batch (Cardoso et al. 2017): uncertainty traded against distance to labeled and picked
    rows. Costs candidates x labeled distances per pick, so it refuses large pools."""

    name = "ranked_batch"
    needs = Needs(model=True, features=True, labeled=True, max_pool=20000)

    def select(self, ctx: SelectionContext) -> Ranked:
        x_candidates = ctx.x_pool[ctx.available]
        scores = MEASURES["least_confidence"](ctx.model.predict_proba(x_candidates))
        rows = ranked_batch_rows(scores, ctx.k, x_candidates, ctx.x_pool[ctx.labeled])
        return Ranked(ctx.available[rows], scores[rows])


# -- the registry -------------------------------------------------------------------------------------------


def _registry() -> dict[str, Strategy]:
    from al_loop.auto import Auto  # auto composes the other strategies
    from al_loop.typical import Typical

    strategies: list[Strategy] = [
        RandomPick("random"), Uncertainty("least_confidence"), Uncertainty("margin"), Uncertainty("entropy"),
        RankedBatch(), MarginDiverse(), Auto(),
        RandomPick(INITIAL_RANDOM), Typical(INITIAL_TYPICAL), RandomPick(EVALUATION_RANDOM),
    ]
    return {s.name: s for s in strategies}


INITIAL_RANDOM = "initial-random"
INITIAL_TYPICAL = "initial-typical"
EVALUATION_RANDOM = "evaluation-random"
QUERY_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "ranked_batch", "margin_diverse", "auto")
INITIAL_STRATEGIES = {"random": INITIAL_RANDOM, "typical": INITIAL_TYPICAL}  # loop.initial_strategy -> strategy
REGISTRY: dict[str, Strategy] = {}


def get(name: str) -> Strategy:
    """The strategy registered under `name` (query, initial or evaluation strategy)."""
    if not REGISTRY:
        REGISTRY.update(_registry())
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(QUERY_STRATEGIES)}") from None


def check_pool_size(strategy: Strategy, candidates: int, overrides: dict[str, int]) -> str | None:
    """Why the strategy cannot run on this many candidates (None when it can)."""
    limit = overrides.get(strategy.name, strategy.needs.max_pool)
    if limit is None or candidates <= limit:
        return None
    return (f"{strategy.name} cannot run on {candidates} candidates (its limit is {limit}); use margin_diverse "
            "for large pools")


def pick_scores(ranked: Ranked, proba: np.ndarray | None) -> np.ndarray:
    """The scores to record for the picks: the strategy's own, else (random picks) their margin ambiguity so
    picks stay comparable; NaN where nothing could be scored (no model yet)."""
    if proba is None or len(ranked.rows) == 0 or not np.isnan(ranked.scores).all():
        return ranked.scores
    return margin_ambiguity(proba)

