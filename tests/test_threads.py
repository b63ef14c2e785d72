"""compute.blas_threads: validated, outside the run's identity, really applied around a round's fits and predictions,
and without effect on the picks and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

from al_loop.config import config_from_dict, load_config
from al_loop.errors import ConfigError
from al_loop.ledger import Ledger
from al_loop.loop import run_loop
from al_loop.threads import DEFAULT_BLAS_THREADS, blas_limit, resolved_threads

from .conftest import REPO

SEEN: list[tuple[str, frozenset[int]]] = []  # (call, BLAS thread counts during it), by RecordingLogisticRegression


def _blas_threads() -> frozenset[int]:
    counts = frozenset(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
    assert counts, "no BLAS library loaded: nothing to limit"
    return counts


class RecordingLogisticRegression(LogisticRegression):
    """The default model, noting the BLAS thread counts inside each fit and predict_proba."""

    def fit(self, x: Any, y: Any, sample_weight: Any = None) -> RecordingLogisticRegression:
        SEEN.append(("fit", _blas_threads()))
        return super().fit(x, y, sample_weight)

    def predict_proba(self, x: Any) -> np.ndarray:
        SEEN.append(("predict_proba", _blas_threads()))
        return super().predict_proba(x)


@pytest.mark.parametrize("value", [0, -2, 1.5, "two", "", True, [1]])
def test_bad_blas_threads_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"compute\.blas_threads") as error:
        config_from_dict({"dataset": {"name": "digits"}, "compute": {"blas_threads": value}}, REPO, "test")
    assert "whole number >= 1, or auto" in str(error.value)


@pytest.mark.parametrize(("value", "threads"), [(None, DEFAULT_BLAS_THREADS), ("auto", DEFAULT_BLAS_THREADS),
                                                (1, 1), (2, 2), (8, 8)])
def test_good_blas_threads_load(value: object, threads: int) -> None:
    config = config_from_dict({"dataset": {"name": "digits"}, "compute": {"blas_threads": value}}, REPO, "test")
    assert config.compute.blas_threads == (None if value in (None, "auto") else value)
    assert resolved_threads(config.compute.blas_threads) == threads


def test_blas_threads_leave_the_identity_unchanged() -> None:
    base = {"dataset": {"name": "digits"}, "loop": {"strategy": "margin"}}
    plain = config_from_dict(base, REPO, "test").identity()
    assert plain == "aeb30f3bb3b46b80", "the identity of earlier versions (tests/test_config.py)"
    for value in (1, 2, 7, "auto"):
        identity = config_from_dict({**base, "compute": {"blas_threads": value}}, REPO, "test").identity()
        assert identity == plain and "compute.blas_threads" not in identity.settings


@pytest.mark.parametrize("setting", [1, 3])  # both differ from OpenBLAS's default (one thread per core) on 2 cores
def test_the_limit_holds_in_every_fit_and_prediction_of_a_run(write_config, setting: int) -> None:
    outside = _blas_threads()
    SEEN.clear()
    config = load_config(write_config(model={"estimator": "tests.test_threads.RecordingLogisticRegression"},
                                      compute={"blas_threads": setting}, loop={"budget": 40}))
    assert run_loop(config).finished
    calls = {call for call, _ in SEEN}
    assert calls == {"fit", "predict_proba"}, calls
    assert all(counts == {setting} for _, counts in SEEN), sorted(set(SEEN))
    assert _blas_threads() == outside, "the limit is lifted after the run"


def test_blas_limit_restores_the_library_setting() -> None:
    outside = _blas_threads()
    with blas_limit(1):
        assert _blas_threads() == {1}
        with blas_limit(2):
            assert _blas_threads() == {2}
        assert _blas_threads() == {1}
    assert _blas_threads() == outside


def _rounds(config_path: Path) -> list[tuple[Any, ...]]:
    """Each round's picks (example, rank, ambiguity, guess, confidence) and metrics, without the timings."""
    config = load_config(config_path)
    run_loop(config)
    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        out = []
        for record in ledger.rounds():
            picks = ledger._db.execute("SELECT id, rank, ambiguity, predicted_label, confidence FROM examples "
                                       "WHERE round = ? ORDER BY rank", (record.round,)).fetchall()
            metrics = {k: v for k, v in record.metrics.items() if not k.endswith("_seconds")}
            out.append((record.round, record.n_labels, picks, metrics))
        return out


def test_picks_and_metrics_are_identical_with_one_and_two_threads(write_config, tmp_path: Path) -> None:
    runs = []
    for threads in (1, 2):
        path = write_config(compute={"blas_threads": threads}, loop={"budget": 80},
                            output_dir=str(tmp_path / f"runs{threads}"))
        runs.append(_rounds(path))
    assert len(runs[0]) >= 7 and all(r[2] for r in runs[0][1:])
    assert runs[0] == runs[1], "the BLAS thread count changed a pick or a metric"
