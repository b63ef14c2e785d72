"""Model helpers: probabilities aligned to the run's classes, metrics independent of class order."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from al_loop.model import evaluate, fit


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (30, 2)), rng.normal(3, 1, (30, 2))])
    y = np.array(["small"] * 30 + ["big"] * 30, dtype=object)
    return x, y


def test_metrics_do_not_depend_on_the_order_of_the_class_list() -> None:
    x, y = _data()
    listed = evaluate(fit(LogisticRegression(), x, y, ["small", "big"]), x, y)
    sorted_ = evaluate(fit(LogisticRegression(), x, y, ["big", "small"]), x, y)
    assert listed == pytest.approx(sorted_)
    column = (y == "small").astype(int)  # LogisticRegression orders its columns big, small
    expected = -np.mean(np.log(LogisticRegression().fit(x, y).predict_proba(x)[np.arange(60), column]))
    assert listed["log_loss"] == pytest.approx(expected)


def test_probabilities_have_a_column_per_run_class_even_if_unseen() -> None:
    x, y = _data()
    model = fit(LogisticRegression(), x, y, ["big", "medium", "small"])
    proba = model.predict_proba(x)
    assert proba.shape == (60, 3)
    assert np.all(proba[:, 1] == 0) and np.allclose(proba.sum(axis=1), 1)


def test_a_single_class_so_far_gives_a_constant_prior_model() -> None:
    x, y = _data()
    model = fit(LogisticRegression(), x[:30], y[:30], ["small", "big"])
    assert np.all(model.predict_proba(x) == [1.0, 0.0])
    assert evaluate(model, x, y)["accuracy"] == 0.5


def test_calibrated_probabilities_once_every_class_has_enough_labels() -> None:
    from sklearn.calibration import CalibratedClassifierCV

    from al_loop.config import ModelConfig
    from al_loop.model import build_estimator

    template = build_estimator(ModelConfig(calibration="sigmoid"), seed=0)
    assert isinstance(template, CalibratedClassifierCV)
    x, y = _data()
    few = fit(template, x[[0, 1, 30, 31]], y[[0, 1, 30, 31]], ["small", "big"])
    assert isinstance(few.estimator, LogisticRegression), "two labels per class: too few to calibrate, plain model"
    many = fit(template, x, y, ["small", "big"])
    assert isinstance(many.estimator, CalibratedClassifierCV)
    assert np.allclose(many.predict_proba(x).sum(axis=1), 1.0)
