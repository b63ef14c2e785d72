"""Scale: chunked scoring with a running top-k, the diversity-aware batch, the feature store, warm start,
and the Dask path giving the same picks as the local one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from al_loop import data as data_module
from al_loop.api import load_config, prepare, run_loop
from al_loop.ledger import Ledger
from al_loop.model import FittedModel, fit
from al_loop.scoring import Ranked, farthest_first, top_candidates
from al_loop.strategies import ambiguity, top_k

CLASSES = [str(c) for c in range(4)]


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, FittedModel]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 8))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0).astype(int)
    model = fit(LogisticRegression(max_iter=500), x[:200], y[:200].astype(str), CLASSES)
    return x, model


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(1, 3500), k=st.integers(1, 60), strategy=st.sampled_from(["margin", "entropy",
                                                                                  "least_confidence"]),
       drop=st.integers(0, 500))
def test_chunked_top_k_equals_scoring_the_whole_pool(pool, chunk: int, k: int, strategy: str, drop: int) -> None:
    x, model = pool
    available = np.setdiff1d(np.arange(len(x)), np.arange(0, 3000, 6)[:drop])
    chunked = top_candidates(model, x, available, strategy, k, chunk)
    scores = ambiguity(strategy, model.predict_proba(x[available]))
    expected = available[top_k(scores, k)]
    np.testing.assert_array_equal(np.sort(chunked.rows), np.sort(expected))
    assert np.all(np.diff(chunked.scores) <= 0), "ranked, most ambiguous first"
    assert not set(chunked.rows) & set(np.arange(0, 3000, 6)[:drop]), "used rows are never candidates"


def test_farthest_first_spreads_the_batch_among_the_most_ambiguous() -> None:
    x = np.vstack([np.zeros((6, 2)), np.full((6, 2), 10.0), [[0.0, 10.0]]])
    ranked = Ranked(rows=np.arange(13), scores=np.linspace(1.0, 0.5, 13))
    picked = farthest_first(x, ranked, 3)
    assert picked.rows[0] == 0, "starts from the most ambiguous candidate"
    assert {int(r) // 6 for r in picked.rows} == {0, 1, 2}, "one pick per cluster, no near-duplicates"
    assert farthest_first(x, Ranked(np.arange(2), np.ones(2)), 3).rows.tolist() == [0, 1]


def _digits_config(write_config, **compute):
    return load_config(write_config(loop={"strategy": "margin_diverse", "budget": 50},
                                    compute={"chunk_rows": 300, **compute}))


def test_the_feature_store_is_read_back_instead_of_featurizing_again(write_config,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = _digits_config(write_config)
    first = prepare(config)
    assert first.features_path is not None and first.features_path.suffix == ".npy"

    def no_featurizing(*_args: object) -> None:
        raise AssertionError("featurized again")

    monkeypatch.setattr("al_loop.workspace.featurize", no_featurizing)
    again = prepare(config)
    assert isinstance(again.x_pool, np.memmap), "dense features are memory-mapped from the store"
    np.testing.assert_array_equal(np.asarray(again.x_pool), np.asarray(first.x_pool))
    other = config.model_copy(update={"features": config.features.model_copy(update={"min_df": 2})})
    monkeypatch.setattr("al_loop.workspace.featurize", data_module.featurize)
    assert prepare(other).features_path != first.features_path, "another features config, another store"


def test_margin_diverse_and_warm_start_run_the_loop(write_config) -> None:
    config = _digits_config(write_config)
    config.model.warm_start = True
    result = run_loop(config)
    assert [r.n_labels for r in result.rounds] == [20, 30, 40, 50]
    assert result.rounds[-1].metrics["accuracy"] > 0.6


@pytest.mark.e2e
def test_dask_local_cluster_gives_the_same_picks_as_the_local_path(write_config, tmp_path: Path) -> None:
    local = _digits_config(write_config)
    on_dask = local.model_copy(update={"output_dir": tmp_path / "dask",
                                       "compute": local.compute.model_copy(update={"engine": "dask",
                                                                                   "n_workers": 2})})
    results = [run_loop(c) for c in (local, on_dask)]
    picks = []
    for result in results:
        with Ledger.open(result.run_dir / "ledger.sqlite") as ledger:
            picks.append(ledger._db.execute("SELECT round, rank, id FROM examples ORDER BY round, rank").fetchall())
    assert len(picks[0]) == 50 and picks[0] == picks[1]
    assert [r.metrics["accuracy"] for r in results[0].rounds] == [r.metrics["accuracy"] for r in results[1].rounds]


def test_an_unreachable_scheduler_is_a_clear_error(write_config) -> None:
    from al_loop.distributed import DaskError, connect

    with pytest.raises(DaskError, match=r"cannot reach the Dask scheduler tcp://127\.0\.0\.1:9"):
        connect("tcp://127.0.0.1:9", 1, timeout="2s")
