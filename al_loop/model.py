"""Build the estimator from config, fit it on the labeled rows, predict and evaluate."""

from __future__ import annotations

import copy
import importlib
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
from sklearn.metrics import accuracy_score, f1_score, log_loss

from al_loop.config import ModelConfig

CALIBRATION_FOLDS = 3


def build_estimator(config: ModelConfig, seed: int) -> ClassifierMixin:
    """A fresh estimator; `random_state` is set from the run seed unless the config sets it."""
    module_name, _, class_name = config.estimator.rpartition(".")
    estimator_class = getattr(importlib.import_module(module_name), class_name)
    params: dict[str, Any] = dict(config.params)
    if "random_state" in inspect.signature(estimator_class).parameters and "random_state" not in params:
        params["random_state"] = seed
    estimator = estimator_class(**params)
    if config.calibration != "none":
        return CalibratedClassifierCV(estimator, method=config.calibration, cv=CALIBRATION_FOLDS)
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


def fit(template: ClassifierMixin, x: Any, labels: np.ndarray, classes: list[str],
        previous: FittedModel | None = None) -> FittedModel:
    """Fit a clone of the template; with a single class seen so far, a prior (constant) model stands in.

    With `previous` (warm start), refit that model from where it stopped, if the estimator supports
    `warm_start` and no new class appeared; otherwise start from scratch.
    """
    labels = np.asarray(labels, dtype=object).astype(str)
    if len(set(labels)) < 2:
        estimator = DummyClassifier(strategy="prior").fit(np.zeros((len(labels), 1)), labels)
        return FittedModel(_ConstantInput(estimator), classes)
    estimator = clone(template)
    if isinstance(estimator, CalibratedClassifierCV) and Counter(labels).most_common()[-1][1] < CALIBRATION_FOLDS:
        estimator = clone(template.estimator)  # too few labels of some class to calibrate yet: plain model
    if previous is not None and _can_warm_start(previous.estimator, labels):
        estimator = copy.deepcopy(previous.estimator)
        estimator.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(x, labels)
    return FittedModel(estimator, classes)


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
    """Accuracy, macro-F1 and log loss on held-out rows."""
    proba = model.predict_proba(x)
    predicted = np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)]
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
