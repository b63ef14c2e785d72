"""The model `al-loop serve` predicts with: the loop's model of its last evaluated round, fitted again from the
ledger's labels whenever they change.

Why a refit and not a logged model: al-loop logs only the final model to MLflow (and loads it only through
`Tracker.load_verified_model`); the per-round models live in the loop's process alone. Refitting with the loop's own
estimator, seed and row order (`loop.fit_labeled`) on the labels of the rounds up to the last evaluated one gives the
model that picked the current batch, unpickles nothing, and costs one fit per round (cached by a digest of the
labels). With model.warm_start the loop's model can differ slightly: it continued from the previous round's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from al_loop.annotators.labelstudio import prediction
from al_loop.config import Config
from al_loop.labelstudio.project import TEXT_NAME
from al_loop.ledger import Ledger
from al_loop.loop import fit_labeled
from al_loop.model import FittedModel, build_estimator
from al_loop.threads import blas_limit
from al_loop.workspace import Workspace


@dataclass(frozen=True)
class Served:
    """A model and its version (`<run>/round-<r>`, as the loop names the model that picked round r + 1)."""

    model: FittedModel | None
    version: str


class Predictor:
    """Predictions of the run's current model for Label Studio tasks (thread-safe)."""

    def __init__(self, config: Config, workspace: Workspace) -> None:
        self.config = config
        self.ws = workspace
        self.ledger_path = config.output_dir / config.run_name / "ledger.sqlite"
        self.template = build_estimator(config.model, config.seed)
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, str], Served] | None = None

    def current(self) -> Served:
        """The model of the last evaluated round (None before any round trained one), refitted if labels changed."""
        none = Served(None, f"{self.config.run_name}/no-model")
        if not Path(self.ledger_path).is_file():
            return none
        try:
            with Ledger.read_only(self.ledger_path) as ledger:
                trained = [r for r in ledger.rounds() if r.n_labels and r.status != "queued"]
                if not trained:
                    return none
                last = trained[-1].round
                rounds = ledger.label_rounds()
                labels = {e: label for e, label in ledger.labels().items() if rounds.get(e, last + 1) <= last}
                reviewed = ledger.routed_labels()
        except sqlite3.OperationalError:  # the first sync is creating the ledger's tables right now
            return none
        key = (last, hashlib.sha256(json.dumps([sorted(labels.items()), reviewed]).encode()).hexdigest())
        with self._lock:
            if self._cached is None or self._cached[0] != key:
                with blas_limit(self.config.compute.blas_threads):
                    model = fit_labeled(self.template, self.ws, labels, reviewed)
                self._cached = (key, Served(model, f"{self.config.run_name}/round-{last}"))
            return self._cached[1]

    def predict(self, tasks: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        """One prediction per task, in order, and the model version. A task al-loop pushed (`al_id` in its data)
        is predicted from its pool row; another from its data, featurized like the pool. A task that cannot be
        predicted gets an `error` and no `result` (Label Studio skips it)."""
        served = self.current()
        if served.model is None:
            return [{"error": "no model yet: the first round has not been answered", "model_version": served.version}
                    for _ in tasks], served.version
        pool: dict[int, int] = {}  # task index -> pool row
        frames: dict[int, pd.DataFrame] = {}  # task index -> its input row
        errors: dict[int, str] = {}
        for index, task in enumerate(tasks):
            data = task.get("data")
            found, problem = self._features(data if isinstance(data, Mapping) else None)
            if problem is not None:
                errors[index] = problem
            elif isinstance(found, int):
                pool[index] = found
            else:
                frames[index] = found
        proba = np.zeros((len(tasks), len(self.ws.classes)))
        with blas_limit(self.config.compute.blas_threads):
            if pool:
                proba[list(pool)] = served.model.predict_proba(self.ws.x_pool[np.array(list(pool.values()))])
            if frames:
                x = self.ws.featurizer.transform(pd.concat(list(frames.values()), ignore_index=True))
                proba[list(frames)] = served.model.predict_proba(x)
        results: list[dict[str, Any]] = []
        for index, task in enumerate(tasks):
            if index in errors:
                results.append({"error": errors[index], "model_version": served.version})
                continue
            guess = int(proba[index].argmax())
            data = task.get("data") or {}
            order = data.get("al_order") if index in pool else None  # al-loop's order: the stream order of push
            order = int(order) if isinstance(order, int | float) and not isinstance(order, bool) else None
            results.append(prediction(self.ws.classes[guess], float(proba[index, guess]), order, served.version))
        return results, served.version

    def _features(self, data: Mapping[str, Any] | None) -> tuple[Any, str | None]:
        """(a pool row index, or a one-row input frame), or a problem."""
        if data is None:
            return None, "the task has no data object"
        example_id = data.get("al_id")
        if example_id is not None and str(example_id) in self.ws.row_of:
            return self.ws.row_of[str(example_id)], None
        columns = list(self.ws.splits.pool.inputs.columns)
        text_column = self.config.dataset.text_column
        values: dict[str, Any] = {}
        for column in columns:
            if column in data:
                values[column] = data[column]
            elif column == text_column and isinstance(data.get(TEXT_NAME), str):
                values[column] = data[TEXT_NAME]  # the labeling config's $text
            else:
                return None, f"the task's data has no {column!r} (nor al_id of a pool row) to predict from"
        return pd.DataFrame([values], columns=columns), None
