"""Model helpers: probabilities aligned to the run's classes, metrics independent of class order."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import SVC

from al_loop.config import ModelConfig, check_estimator, config_from_dict
from al_loop.errors import ConfigError
from al_loop.model import build_estimator, evaluate, fit

from .conftest import REPO


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
    template = build_estimator(ModelConfig(calibration="sigmoid"), seed=0)
    assert isinstance(template, CalibratedClassifierCV)
    x, y = _data()
    few = fit(template, x[[0, 1, 30, 31]], y[[0, 1, 30, 31]], ["small", "big"])
    assert isinstance(few.estimator, CalibratedClassifierCV) and few.estimator.cv == 2, \
        "two labels per class: calibrated on two folds, never a plain model"
    many = fit(template, x, y, ["small", "big"])
    assert isinstance(many.estimator, CalibratedClassifierCV) and many.estimator.cv == 3
    assert np.allclose(many.predict_proba(x).sum(axis=1), 1.0)


# --- estimators without predict_proba: calibration is the wrapper --------------------------------------------

def _svc(calibration: str = "sigmoid", **params: object) -> ModelConfig:
    return ModelConfig(estimator="sklearn.svm.SVC", params=params, calibration=calibration)


def test_calibration_wraps_with_one_estimator_fitted_on_all_labels() -> None:
    template = build_estimator(_svc("isotonic"), seed=0)
    assert isinstance(template, CalibratedClassifierCV) and isinstance(template.estimator, SVC)
    assert (template.method, template.cv, template.ensemble) == ("isotonic", 3, False)
    x, y = _data()
    model = fit(template, x, y, ["small", "big"])
    assert len(model.estimator.calibrated_classifiers_) == 1, "ensemble=False: one SVC, fitted on every label"


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
def test_an_estimator_without_predict_proba_is_accepted_with_calibration(calibration: str) -> None:
    assert check_estimator(_svc(calibration)) is SVC
    assert check_estimator(ModelConfig(estimator="sklearn.svm.LinearSVC", params={}, calibration=calibration))


def test_an_estimator_without_predict_proba_and_no_calibration_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"SVC has no predict_proba.*set model.calibration: sigmoid"):
        check_estimator(_svc("none"))


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LinearRegression", "sklearn.cluster.KMeans",
                                       "sklearn.preprocessing.StandardScaler"])
def test_only_classifier_classes_are_accepted(estimator: str) -> None:
    with pytest.raises(ConfigError, match="is not a scikit-learn classifier class"):
        check_estimator(ModelConfig(estimator=estimator, params={}, calibration="sigmoid"))


def test_something_that_is_not_a_class_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def factory(**params: object) -> object:
        calls.append(params)
        return types.SimpleNamespace(predict_proba=None)

    module = types.ModuleType("al_loop_fake_models")
    module.factory = factory  # type: ignore[attr-defined]
    module.not_a_class = SVC()  # type: ignore[attr-defined]  # an instance is not a class either
    monkeypatch.setitem(sys.modules, "al_loop_fake_models", module)
    for name in ("factory", "not_a_class"):
        with pytest.raises(ConfigError, match="is not a scikit-learn classifier class"):
            check_estimator(ModelConfig(estimator=f"al_loop_fake_models.{name}", params={}))
    assert calls == []


# --- a calibrated model always gives probabilities, however few the labels -----------------------------------

def _blobs(counts: dict[str, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated clusters, one per class, `counts[c]` points each."""
    rng = np.random.default_rng(seed)
    centers = {name: np.array([4.0 * i, 4.0 * (i % 2)]) for i, name in enumerate(counts)}
    x = np.vstack([centers[c] + rng.normal(0, 0.5, (n, 2)) for c, n in counts.items()])
    y = np.array([c for c, n in counts.items() for _ in range(n)], dtype=object)
    return x, y


@pytest.mark.parametrize("calibration", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("counts", [
    {"ham": 1, "eggs": 1},                      # one label of each class
    {"ham": 3, "eggs": 1},                      # one class has a single label
    {"ham": 2, "eggs": 5},                      # fewer than 3 folds: 2
    {"ham": 1, "eggs": 2, "spam": 4},           # multi-class, a single label
    {"ham": 2, "eggs": 2, "spam": 6},           # multi-class, 2 folds
    {"ham": 3, "eggs": 4, "spam": 3},           # multi-class, 3 folds
])
def test_svc_with_calibration_gives_aligned_probabilities_on_tiny_label_sets(counts: dict[str, int],
                                                                             calibration: str) -> None:
    x, y = _blobs(counts)
    classes = ["unseen", *sorted(counts, reverse=True)]  # not sklearn's (sorted) order, and a class not yet seen
    model = fit(build_estimator(_svc(calibration), seed=0), x, y, classes)
    assert isinstance(model.estimator, CalibratedClassifierCV), "never a model without predict_proba"
    proba = model.predict_proba(x)
    assert proba.shape == (len(y), len(classes))
    assert np.allclose(proba.sum(axis=1), 1.0) and np.all(proba >= 0)
    assert np.all(proba[:, 0] == 0), "a class not yet labeled gets no probability"
    raw = model.estimator.predict_proba(x)
    for column, name in enumerate(model.estimator.classes_):
        assert np.array_equal(proba[:, classes.index(str(name))], raw[:, column]), "columns follow the run's classes"
    assert list(model.predict(x)) == list(y), "separable clusters: the SVC's own predictions are right"
    if min(counts.values()) == 1:  # in-sample Platt: each labeled point's own class is the most probable
        assert np.array_equal(np.asarray(classes, dtype=object)[proba.argmax(axis=1)], y)
        assert proba.max() < 0.99, "one label of a class is no reason to be certain"


# --- accuracy is that of the estimator's predictions ----------------------------------------------------------

def test_accuracy_of_a_calibrated_svc_is_that_of_the_svc_predictions() -> None:
    rng = np.random.default_rng(0)
    positive = np.repeat([0, 1], [50, 15])
    x = np.c_[2.0 * positive, np.zeros(65)] + rng.normal(0, 1, (65, 2))
    y = np.array(["neg", "pos"], dtype=object)[positive]
    x_test = rng.uniform(-3, 5, (400, 2))
    y_test = np.where(x_test[:, 0] > 1.0, "pos", "neg").astype(object)
    model = fit(build_estimator(_svc(kernel="linear"), seed=0), x, y, ["pos", "neg"])
    svc = SVC(kernel="linear").fit(x, y).predict(x_test)
    argmax = np.array(model.classes, dtype=object)[model.predict_proba(x_test).argmax(axis=1)]
    assert accuracy_score(y_test, argmax) != accuracy_score(y_test, svc), "calibration moves the argmax here"
    assert np.array_equal(model.predict(x_test), svc)
    metrics = evaluate(model, x_test, y_test)
    assert metrics["accuracy"] == accuracy_score(y_test, svc)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_test, svc, average="macro"))


def test_predict_gives_class_names_for_plain_and_constant_models() -> None:
    x, y = _data()
    plain = fit(LogisticRegression(), x, y, ["small", "big"])
    assert np.array_equal(plain.predict(x), LogisticRegression().fit(x, y).predict(x))
    constant = fit(LogisticRegression(), x[:30], y[:30], ["small", "big"])
    assert list(constant.predict(x[:3])) == ["small"] * 3


# --- the default text model: C=10 when model.params is not written ---------------------------------------------

def _text_pool(tmp_path: Path) -> dict[str, object]:
    pool = tmp_path / "pool.csv"
    pool.write_text("id,text,label\na,red apples,fruit\nb,green cars,car\n")
    return {"dataset": {"path": str(pool), "text_column": "text"}}


def test_a_text_pool_gets_the_measured_c_when_params_are_not_written(tmp_path: Path) -> None:
    text = _text_pool(tmp_path)
    default = config_from_dict(text, tmp_path, "test")
    assert default.model.params == {"max_iter": 1000, "C": 10}
    assert build_estimator(default.model, seed=0).C == 10
    same_estimator = config_from_dict({**text, "model": {"estimator": "sklearn.linear_model.LogisticRegression"}},
                                      tmp_path, "test")
    assert same_estimator.identity() == default.identity()
    assert default.with_overrides(seed=0).identity() == default.identity(), "the resolved C survives a round trip"
    spelled_out = config_from_dict({**text, "model": {"params": {"max_iter": 1000, "C": 10}}}, tmp_path, "test")
    assert spelled_out.identity() == default.identity(), "writing the default out names the same run"


def test_written_params_other_estimators_and_numeric_pools_keep_their_model(tmp_path: Path) -> None:
    text = _text_pool(tmp_path)
    assert config_from_dict(text, tmp_path, "test").model.params["C"] == 10
    for model in ({"params": {"max_iter": 1000}}, {"params": {}},  # written params: used as written
                  {"estimator": "sklearn.svm.SVC", "calibration": "sigmoid"}):  # another estimator: its own C
        config = config_from_dict({**text, "model": model}, tmp_path, "test")
        assert config.model.model_dump() == ModelConfig(**model).model_dump(), "so the identity is the one it was"
    numeric = config_from_dict({"dataset": {"name": "digits"}}, REPO, "test")
    assert numeric.model.params == {"max_iter": 1000} and build_estimator(numeric.model, seed=0).C == 1.0
