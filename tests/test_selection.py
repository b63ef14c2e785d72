"""The strategy registry, the typical cold start and `auto`'s bandit: pure logic on small synthetic pools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression

from al_loop import selection
from al_loop.auto import Auto
from al_loop.config import LoopConfig
from al_loop.model import fit
from al_loop.scoring import top_candidates
from al_loop.selection import INITIAL_STRATEGIES, QUERY_STRATEGIES, Needs, SelectionContext, check_pool_size

# -- the registry ------------------------------------------------------------------------------------------


def test_every_name_config_accepts_is_a_registered_strategy_with_its_needs() -> None:
    for name in (*QUERY_STRATEGIES, *INITIAL_STRATEGIES.values(), selection.EVALUATION_RANDOM):
        strategy = selection.get(name)
        assert strategy.name == name
        assert isinstance(strategy.needs, Needs)
    assert not selection.get("random").needs.model and selection.get("margin").needs.model
    assert selection.get("ranked_batch").needs.max_pool == 20000
    assert selection.get("margin_diverse").needs.max_pool is None


def test_config_validates_strategy_names_against_the_registry() -> None:
    assert LoopConfig().strategy == "auto", "auto is the default strategy"
    assert LoopConfig().initial_strategy == "random"
    with pytest.raises(ValueError, match="unknown strategy 'bald'; choose one of random, least_confidence"):
        LoopConfig(strategy="bald")
    with pytest.raises(ValueError, match="unknown initial strategy 'kmeans'; choose one of random, typical"):
        LoopConfig(initial_strategy="kmeans")
    with pytest.raises(ValueError, match="unknown strategy 'bald'"):
        selection.get("bald")


def test_the_pool_size_limit_comes_from_the_strategy_and_can_be_overridden() -> None:
    ranked_batch = selection.get("ranked_batch")
    assert check_pool_size(ranked_batch, 20000, {}) is None
    assert "cannot run on 20001 candidates (its limit is 20000)" in check_pool_size(ranked_batch, 20001, {})
    assert "limit is 100" in check_pool_size(ranked_batch, 101, {"ranked_batch": 100})
    assert check_pool_size(selection.get("margin"), 10**9, {"ranked_batch": 100}) is None


# -- typical: the cold start -------------------------------------------------------------------------------


def _context(x, k: int, seed: int = 0, available: np.ndarray | None = None, **extra) -> SelectionContext:
    n = x.shape[0]
    return SelectionContext(round=0, k=k, rng=np.random.default_rng([seed, 0]), x_pool=x,
                            available=np.arange(n) if available is None else available, **extra)


def test_typical_picks_one_central_row_of_each_cluster() -> None:
    x, blob = make_blobs(n_samples=900, centers=6, cluster_std=0.4, random_state=3)
    picked = selection.get("initial-typical").select(_context(x, 6))
    assert sorted(blob[picked.rows]) == list(range(6)), "one pick per blob"
    for row in picked.rows:  # each pick lies near its blob's centre
        members = x[blob == blob[row]]
        assert np.linalg.norm(x[row] - members.mean(axis=0)) < 0.5


def test_typical_is_reproducible_avoids_used_rows_and_handles_sparse_text_features() -> None:
    x, _ = make_blobs(n_samples=500, centers=4, random_state=0)
    available = np.arange(100, 500)
    first = selection.get("initial-typical").select(_context(x, 8, available=available))
    again = selection.get("initial-typical").select(_context(x, 8, available=available))
    assert first.rows.tolist() == again.rows.tolist()
    assert len(set(first.rows.tolist())) == 8 and first.rows.min() >= 100
    text = sparse.random(300, 2000, density=0.01, random_state=1, format="csr")
    picked = selection.get("initial-typical").select(_context(text, 10))
    assert len(set(picked.rows.tolist())) == 10


def test_typical_asked_for_more_rows_than_available_returns_them_all() -> None:
    x, _ = make_blobs(n_samples=30, centers=3, random_state=0)
    picked = selection.get("initial-typical").select(_context(x, 50, available=np.arange(5)))
    assert sorted(picked.rows.tolist()) == [0, 1, 2, 3, 4]


# -- auto -----------------------------------------------------------------------------------------------


def _auto_context(x, y, labeled: np.ndarray, label_rounds: np.ndarray, round_index: int, k: int,
                  state: dict, cache: dict) -> SelectionContext:
    classes = sorted(set(y.tolist()))
    template = LogisticRegression(max_iter=200)
    model = fit(template, x[labeled], y[labeled], classes)
    available = np.setdiff1d(np.arange(len(y)), labeled)
    return SelectionContext(
        round=round_index, k=k, rng=np.random.default_rng([0, round_index]), x_pool=x, available=available,
        model=model, labeled=labeled, labels=y[labeled].astype(object), label_rounds=label_rounds,
        score_pool=lambda m, avail, measure, kk: top_candidates(m, x, avail, measure, kk, 1000),
        fit=lambda rows, labels: fit(template, x[rows], labels, classes), state=state, cache=cache)


def _simulate_auto(rounds: int, k: int = 10, seed: int = 0) -> tuple[dict, list[np.ndarray]]:
    x, y = make_blobs(n_samples=600, centers=3, cluster_std=2.5, random_state=seed)
    y = y.astype(str)
    labeled = np.random.default_rng(seed).permutation(len(y))[:20]
    label_rounds = np.zeros(20, dtype=np.int64)
    state: dict[str, str] = {}
    batches = []
    for r in range(1, rounds + 1):
        ctx = _auto_context(x, y, labeled, label_rounds, r, k, state, {})
        picked = Auto().select(ctx)
        batches.append(picked.rows)
        labeled = np.concatenate([labeled, picked.rows])
        label_rounds = np.concatenate([label_rounds, np.full(len(picked.rows), r)])
    return state, batches


def test_auto_spends_a_random_share_and_the_rest_on_one_arm_without_repeats() -> None:
    state, batches = _simulate_auto(rounds=6)
    seen: set[int] = set()
    for r, rows in enumerate(batches, start=1):
        assert len(rows) == 10 and len(set(rows.tolist())) == 10
        assert not seen & set(rows.tolist()), "no example is picked twice"
        seen |= set(rows.tolist())
        record = json.loads(state[f"round/{r}"])
        assert record["arm"] in ("margin", "margin_diverse", "random")
        assert len(record["probes"]) == 1 and record["probes"][0] == rows[-1], "the probe comes last"


def test_auto_makes_the_same_choices_when_resumed_from_its_recorded_state() -> None:
    state, batches = _simulate_auto(rounds=5)
    again, batches_again = _simulate_auto(rounds=5)
    assert [b.tolist() for b in batches] == [b.tolist() for b in batches_again]
    assert state == again


def test_auto_rewards_judge_a_round_only_on_probes_labeled_after_it() -> None:
    state, _ = _simulate_auto(rounds=4)
    history = {r: json.loads(state[f"round/{r}"]) for r in range(1, 5)}
    x, y = make_blobs(n_samples=600, centers=3, cluster_std=2.5, random_state=0)
    # rebuild the final context and count the probes behind each reward
    labeled = np.random.default_rng(0).permutation(600)[:20]
    rounds = [np.zeros(20, dtype=np.int64)]
    for r in range(1, 5):
        picked = [*(_picks_of(state, r, labeled, x, y))]
        labeled = np.concatenate([labeled, picked])
        rounds.append(np.full(len(picked), r))
    ctx = _auto_context(x, y.astype(str), labeled, np.concatenate(rounds), 5, 10, state, {})
    rewards = Auto().rewards(ctx, history)
    assert [r[3] for r in rewards] == [3, 2, 1], "round s is judged on the probes of rounds s+1.. only"


def _picks_of(state: dict, r: int, labeled: np.ndarray, x, y) -> list[int]:
    """The rows round r picked, replayed from the recorded choices (the same draws as _simulate_auto)."""
    ctx = _auto_context(x, y.astype(str), labeled, np.zeros(len(labeled), dtype=np.int64), r, 10, {}, {})
    record = json.loads(state[f"round/{r}"])
    arm_ctx = SelectionContext(**{**ctx.__dict__, "available": np.setdiff1d(ctx.available, record["probes"]),
                                  "k": 10 - len(record["probes"])})
    return [*selection.get(record["arm"]).select(arm_ctx).rows.tolist(), *record["probes"]]


@pytest.mark.parametrize("better", ["random", "margin"])
def test_auto_favours_the_arm_whose_rounds_improved_the_model_more(better: str) -> None:
    rng = np.random.default_rng(0)
    rewards = []
    for r in range(30):
        arm = ("margin", "margin_diverse", "random")[r % 3]
        n = 20 + 10 * r
        base = 0.02 / n  # every arm's gain shrinks with the labels
        bonus = 0.01 / n if arm == better else 0.0
        rewards.append((arm, float(np.log(n)), base + bonus + rng.normal(0, 0.0005 / n), 30 - r))
    chance = Auto().chance_best(rewards, np.random.default_rng(1))
    assert chance[("margin", "margin_diverse", "random").index(better)] > 0.9


def test_auto_without_evidence_follows_its_prior_towards_margin_but_keeps_exploring() -> None:
    chance = Auto().chance_best([], np.random.default_rng(0))
    assert chance.sum() == pytest.approx(1.0)
    assert chance[0] == chance.max() and all(c > 0.05 for c in chance)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(0, 60), share=st.floats(0.01, 0.5), seed=st.integers(0, 2**31))
def test_auto_probe_count_is_a_share_of_the_batch_and_at_least_one(k: int, share: float, seed: int) -> None:
    n = Auto(probe_share=share).n_probes(k, np.random.default_rng(seed))
    if k >= 2:
        assert n == max(1, round(share * k)) and n < k
    else:
        assert n in (0, k)


def test_the_benchmark_counts_the_arms_auto_drew_per_dataset() -> None:
    from al_loop.benchmark import SeedRun, arms_drawn, arms_table
    from al_loop.ledger import RoundRecord

    def record(metrics: dict) -> RoundRecord:
        return RoundRecord(round=1, strategy="auto", status="logged", batch_size=10, model_version=None,
                           n_labels=30, metrics=metrics)

    rounds = [record({"accuracy": 0.5}), record({"auto/arm": 0.0}), record({"auto/arm": 2.0}),
              record({"auto/arm": 0.0})]
    assert arms_drawn(rounds) == {"margin": 2, "random": 1}
    assert arms_drawn([record({"accuracy": 0.9})]) == {}
    runs = [SeedRun("d", "auto", s, np.array([1.0]), np.array([1.0]), 1.0, 0.0, "r", arms=arms) for s, arms in
            enumerate([{"margin": 2, "random": 1}, {"margin_diverse": 1}])]
    table = arms_table(runs).set_index("dataset")
    assert table.loc["d", "rounds"] == 4
    assert table.loc["d", "margin"] == pytest.approx(0.5) and table.loc["d", "random"] == pytest.approx(0.25)
