"""Build the estimator from config, fit it on the labeled rows, predict and evaluate."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, f1_score, log_loss

from al_loop.config import ModelConfig, check_estimator

CALIBRATION_FOLDS = 3


def build_estimator(config: ModelConfig, seed: int) -> ClassifierMixin:
    """A fresh estimator; `random_state` is set from the run seed unless the config sets it.

    With `calibration`, the estimator is wrapped in `CalibratedClassifierCV(ensemble=False)`: the calibrator is
    fitted on out-of-fold decisions and the estimator itself on all the labels (what scikit-learn 1.9 recommends
    instead of `SVC(probability=True)`), so an estimator without `predict_proba` (SVC, LinearSVC) works too.
    """
    estimator_class = check_estimator(config)  # a scikit-learn classifier class, checked before it is called
    params: dict[str, Any] = dict(config.params)
    if "random_state" in inspect.signature(estimator_class).parameters and "random_state" not in params:
        params["random_state"] = seed
    estimator = estimator_class(**params)
    if config.calibration != "none":
        return CalibratedClassifierCV(estimator, method=config.calibration, cv=CALIBRATION_FOLDS, ensemble=False)
    return estimator


@dataclass
class FittedModel:
    """A fitted estimator with probabilities aligned to the full class list of the run."""

    estimator: ClassifierMixin
    classes: list[str]

    def predict_proba(self, x: Any) -> np.ndarray:
        """Probabilities with one column per run class (zeros for classes not seen in training)."""
        raw = self.estimator.predict_proba(x)
        columns = [self.classes.index(str(c)) for c in self.estimator.classes_]
        proba = np.zeros((raw.shape[0], len(self.classes)), dtype=float)
        proba[:, columns] = raw
        return proba

    def predict(self, x: Any) -> np.ndarray:
        """The predicted class names: the estimator's own decision.

        For a model calibrated with `ensemble=False`, that is the estimator fitted on all the labels, not the
        argmax of the calibrated probabilities (one-vs-rest calibration can move the argmax).
        """
        estimator = self.estimator
        if isinstance(estimator, CalibratedClassifierCV) and len(estimator.calibrated_classifiers_) == 1:
            estimator = estimator.calibrated_classifiers_[0].estimator  # fitted on all the labels
        return np.asarray(estimator.predict(x), dtype=object).astype(str)


def fit(template: ClassifierMixin, x: Any, labels: np.ndarray, classes: list[str],
        previous: FittedModel | None = None) -> FittedModel:
    """Fit a clone of the template; with a single class seen so far, a prior (constant) model stands in.

    A calibrated template always gives a model with calibrated probabilities, however few the labels: with fewer
    labels of some class than folds, the folds are cut to that count; with a single label of some class, see
    `_calibrate_in_sample`.

    With `previous` (warm start), refit that model from where it stopped, if the estimator supports
    `warm_start` and no new class appeared; otherwise start from scratch.
    """
    labels = np.asarray(labels, dtype=object).astype(str)
    if len(set(labels)) < 2:
        estimator = DummyClassifier(strategy="prior").fit(np.zeros((len(labels), 1)), labels)
        return FittedModel(_ConstantInput(estimator), classes)
    estimator = clone(template)
    if isinstance(estimator, CalibratedClassifierCV):
        fewest = Counter(labels).most_common()[-1][1]
        folds = estimator.cv if isinstance(estimator.cv, int) else CALIBRATION_FOLDS
        if fewest == 1:
            return FittedModel(_calibrate_in_sample(estimator, x, labels), classes)
        if fewest < folds:
            estimator.set_params(cv=fewest)
    if previous is not None and _can_warm_start(previous.estimator, labels):
        estimator = copy.deepcopy(previous.estimator)
        estimator.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(x, labels)
    return FittedModel(estimator, classes)


def _calibrate_in_sample(template: CalibratedClassifierCV, x: Any, labels: np.ndarray) -> CalibratedClassifierCV:
    """Some class has a single label, so no fold split keeps it on both sides: fit the estimator on all the
    labels, then a sigmoid (Platt) on its decisions on those same labels.

    In-sample decisions are optimistic, but Platt's targets are smoothed by the class counts ((n+ + 1) / (n+ + 2)
    for a positive, 1 / (n- + 2) for a negative), so with one label of a class its probability stays near 2/3
    instead of reaching 1; isotonic regression in-sample would give 0/1 probabilities, hence sigmoid whatever
    `calibration` says. The estimator's own predictions are unchanged (FittedModel.predict).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = clone(template.estimator).fit(x, labels)
    everything = np.arange(len(labels))
    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted), method="sigmoid", cv=[(everything, everything)])
    return calibrated.fit(x, labels)


def _can_warm_start(estimator: Any, labels: np.ndarray) -> bool:
    """The estimator has a warm_start parameter and was fitted on exactly these classes."""
    if not hasattr(estimator, "get_params") or "warm_start" not in estimator.get_params():
        return False
    return set(map(str, estimator.classes_)) == set(labels)


class _ConstantInput:
    """Adapter so a DummyClassifier accepts the real feature matrix (it ignores the features)."""

    def __init__(self, dummy: DummyClassifier) -> None:
        self._dummy = dummy
        self.classes_ = dummy.classes_

    def predict_proba(self, x: Any) -> np.ndarray:
        return self._dummy.predict_proba(np.zeros((x.shape[0], 1)))

    def predict(self, x: Any) -> np.ndarray:
        return self._dummy.predict(np.zeros((x.shape[0], 1)))


def evaluate(model: FittedModel, x: Any, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of the model's predictions, log loss of its probabilities, on held-out rows."""
    predicted = model.predict(x)
    proba = model.predict_proba(x)
    labels = np.asarray(labels, dtype=object).astype(str)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=model.classes, zero_division=0)),
        # log_loss reads the columns in sorted label order, whatever order `labels=` lists
        "log_loss": float(log_loss(labels, _clip_rows(proba)[:, np.argsort(model.classes)],
                                   labels=sorted(model.classes))),
    }


def _clip_rows(proba: np.ndarray, eps: float = 1e-15) -> np.ndarray:
    """Keep log loss finite when a class had zero probability (e.g. not yet seen in training)."""
    clipped = np.clip(proba, eps, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)
