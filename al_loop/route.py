"""`al-loop route`: score new traffic with the loop's latest model, auto-accept the confident predictions,
send the rest to Label Studio as review tasks with the model's guess pre-filled, and record every decision.

The people's answers come back with the loop's next pull and train the next model.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from al_loop.annotators.base import TaskRequest
from al_loop.annotators.factory import build_annotator
from al_loop.clock import utc_now
from al_loop.config import Config, LabelStudioAnnotatorConfig
from al_loop.data import _table, read_frame
from al_loop.errors import AlLoopError
from al_loop.ledger import Ledger
from al_loop.loop import FINAL_MODEL
from al_loop.redact import redact
from al_loop.routing import Threshold, apply, calibrate
from al_loop.tracking import ModelRefused, Tracker
from al_loop.workspace import Workspace, prepare

REVIEW_ROUND = -1  # the round number of review tasks in Label Studio (al_round)


@dataclass(frozen=True)
class RouteResult:
    """What routing did: the threshold, how many were auto-accepted or sent for review, and the decisions file."""

    threshold: Threshold
    auto: int
    review: int
    pushed: int
    decisions: Path
    model_run_id: str


def load_model(tracker: Tracker, run_id: str, output_dir: Path) -> Any:
    """The final model a loop of this output folder logged to `run_id` and recorded in its ledger (a Pipeline of
    featurizer and estimator), loaded only if its files still have the recorded hash."""
    try:
        tracker.client.get_run(run_id)
    except MlflowException:
        raise AlLoopError(f"there is no MLflow run {run_id!r} in {redact(tracker.tracking_uri)}; give --run-id of a "
                          "loop run (printed by `al-loop run`), or leave it out to use this config's run") from None
    record = _recorded_model(output_dir, run_id=run_id)
    if record is None:
        raise AlLoopError(f"no ledger under {output_dir} records a model of MLflow run {run_id}: a loop records its "
                          "model when it finishes (budget, max_rounds or a stop rule), and al-loop loads only a model "
                          "it recorded (a run finished by an older al-loop did not: extend loop.budget and run again)")
    return tracker.load_verified_model(record["model_id"], record["sha256"])


def load_registered_model(tracker: Tracker, reference: str, output_dir: Path) -> tuple[Any, str]:
    """The model that a registered model's alias or version names (`NAME@ALIAS`, `NAME/VERSION`, `models:/...`), and
    its run: loaded only if it is the final model a ledger of this output folder recorded, with its hash checked."""
    version = tracker.resolve_registered(reference)
    shown = f"--model {reference} (version {version.version} of {version.name!r})"
    if version.model_id is None:
        raise ModelRefused(f"{shown} was not registered from a model logged to a run (its source is not "
                           "models:/<model id>); al-loop loads only the final model a loop logged and recorded. Name a "
                           "version a loop registered, or use --run-id")
    record = _recorded_model(output_dir, model_id=version.model_id)
    if record is None:
        raise ModelRefused(f"{shown} is the MLflow model {version.model_id}, which no ledger under {output_dir} "
                           "records as its final model; al-loop loads only a model a loop of this output folder logged "
                           "and recorded (with its hash), and was not loaded. Name the alias of a run of this folder "
                           f"(its run name, e.g. {version.name}@margin-seed0), or use --run-id")
    return tracker.load_verified_model(record["model_id"], record["sha256"]), record["run_id"]


def _recorded_model(output_dir: Path, run_id: str | None = None, model_id: str | None = None
                    ) -> dict[str, str] | None:
    """The final model recorded by one of the ledgers of the output folder, for `run_id` or with `model_id`."""
    for path in sorted(output_dir.glob("*/ledger.sqlite")):
        try:
            with Ledger.read_only(path) as ledger:
                ledger_run = ledger.get_meta("mlflow_run_id")
                if run_id is not None and ledger_run != run_id:
                    continue
                record = json.loads(ledger.get_meta(FINAL_MODEL) or "null")
        except (sqlite3.Error, json.JSONDecodeError):  # not a ledger al-loop can read: it records nothing
            continue
        if (isinstance(record, dict) and record.get("run_id") == ledger_run and ledger_run is not None
                and (run_id is None or record["run_id"] == run_id)
                and (model_id is None or record.get("model_id") == model_id)):
            return record
    return None


def aligned_proba(pipeline: Any, inputs: pd.DataFrame, classes: list[str]) -> np.ndarray:
    raw = pipeline.predict_proba(inputs)
    proba = np.zeros((len(inputs), len(classes)))
    proba[:, [classes.index(str(c)) for c in pipeline.classes_]] = raw
    return proba


def threshold_for(config: Config, pipeline: Any, workspace: Workspace, ledger: Ledger) -> Threshold:
    """The fixed threshold, or one calibrated for routing.epsilon on held-out labeled rows (the test split,
    else the annotated evaluation set)."""
    test = workspace.splits.test
    if test is not None:
        inputs, labels = test.inputs, np.asarray(test.labels, dtype=object)
    else:
        eval_labels = ledger.labels(purpose="eval")
        if not eval_labels:
            raise AlLoopError("routing needs held-out labeled rows to measure its error: a test split "
                              "(dataset.test_path or labels in the pool) or an evaluation set (evaluation.size)")
        inputs = workspace.splits.pool.inputs.iloc[workspace.rows(list(eval_labels))].reset_index(drop=True)
        labels = np.array(list(eval_labels.values()), dtype=object)
    proba = aligned_proba(pipeline, inputs, workspace.classes)
    correct = np.asarray(workspace.classes, dtype=object)[proba.argmax(axis=1)] == labels.astype(str)
    routing = config.routing
    if routing.hi is not None:
        return apply(proba.max(axis=1), correct, routing.hi, routing.confidence_level)
    return calibrate(proba.max(axis=1), correct, routing.epsilon, routing.confidence_level)


def route(config: Config, input_path: Path, run_id: str | None = None, model: str | None = None) -> RouteResult:
    """Route the rows of `input_path` (same columns as the pool; labels not needed) with the final model of this
    config's run, of `run_id`, or the registered version `model` names (e.g. `al-loop@latest`)."""
    if run_id is not None and model is not None:
        raise AlLoopError("give --run-id or --model, not both: each names the model to route with")
    workspace = prepare(config)
    ledger_path = config.output_dir / config.run_name / "ledger.sqlite"
    if not ledger_path.exists():
        raise AlLoopError(f"no loop run at {ledger_path.parent}: run `al-loop run` first (routing uses its model)")
    columns = {"label_column": None}
    if config.dataset.name is not None:  # a bundled dataset: its columns are the loaded pool's
        columns |= {"id_column": "id", "text_column": None, "feature_columns": list(workspace.splits.pool.inputs)}
    table = _table(read_frame(input_path), config.dataset.model_copy(update=columns), None, str(input_path))
    clash = set(table.ids) & set(workspace.splits.pool.ids)
    if clash:
        raise AlLoopError(f"{input_path}: {len(clash)} id(s) are pool ids, e.g. {sorted(clash)[:3]}; routed "
                          "traffic needs ids of its own")
    with Ledger.open(ledger_path) as ledger:
        tracker = Tracker(config.tracking_uri, config.tracking.experiment)
        if model is not None:
            pipeline, model_run = load_registered_model(tracker, model, config.output_dir)
        else:
            model_run = run_id or ledger.get_meta("mlflow_run_id") or ""
            pipeline = load_model(tracker, model_run, config.output_dir)
        threshold = threshold_for(config, pipeline, workspace, ledger)
        proba = aligned_proba(pipeline, table.inputs, workspace.classes)
        confidence = proba.max(axis=1)
        predicted = np.asarray(workspace.classes, dtype=object)[proba.argmax(axis=1)]
        auto = confidence >= threshold.hi
        rows = [{"id": str(e), "data": json.dumps(table.inputs.iloc[i].to_dict(), default=float),
                 "predicted": str(predicted[i]), "confidence": float(confidence[i]),
                 "decision": "auto" if auto[i] else "review", "hi": threshold.hi, "model": model_run}
                for i, e in enumerate(table.ids)]
        ledger.record_routed(rows)
        pushed = _push_reviews(config, workspace, ledger, model_run)
        decisions = _write_decisions(config, rows)
        tracker.log_metrics(model_run, {"routed_share_automated": float(auto.mean()),
                                        "routed_items": float(len(rows))})
    return RouteResult(threshold=threshold, auto=int(auto.sum()), review=int((~auto).sum()), pushed=pushed,
                       decisions=decisions, model_run_id=model_run)


def _push_reviews(config: Config, workspace: Workspace, ledger: Ledger, model_run: str) -> int:
    waiting = ledger.routed_unpushed()
    if not waiting or not isinstance(config.annotator, LabelStudioAnnotatorConfig):
        return 0  # the simulated annotator has no people to review: decisions are in the file and the ledger
    tasks = [TaskRequest(example_id=str(r["id"]), round=REVIEW_ROUND, rank=rank, data=json.loads(str(r["data"])),
                         predicted_label=str(r["predicted"]), confidence=float(r["confidence"]),  # type: ignore[arg-type]
                         ambiguity=1.0 - float(r["confidence"]), model_version=f"{model_run}/route",  # type: ignore[arg-type]
                         purpose="review")
             for rank, r in enumerate(waiting, start=1)]
    pushed = build_annotator(config, workspace, ledger).push(tasks)
    ledger.mark_routed_pushed(pushed)
    return len(pushed)


def _write_decisions(config: Config, rows: list[dict[str, Any]]) -> Path:
    folder = config.output_dir / config.run_name / "routing"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"decisions-{utc_now().replace(':', '').replace('.', '')}.csv"
    pd.DataFrame([{k: r[k] for k in ("id", "predicted", "confidence", "decision", "hi")} for r in rows]).to_csv(
        path, index=False)
    return path
