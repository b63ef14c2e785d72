"""`al-loop route`: score new traffic with the loop's latest model, auto-accept the confident predictions,
send the rest to Label Studio as review tasks with the model's guess pre-filled, and record every decision.

The people's answers come back with the loop's next pull and train the next model.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from al_loop.annotators.base import TaskRequest
from al_loop.annotators.factory import build_annotator
from al_loop.clock import utc_now
from al_loop.config import Config, LabelStudioAnnotatorConfig, RoutingConfig
from al_loop.data import _table, read_frame
from al_loop.decisions import certified, choose_threshold, within_epsilon
from al_loop.errors import AlLoopError
from al_loop.ledger import Ledger
from al_loop.loop import FINAL_MODEL
from al_loop.redact import redact
from al_loop.routing import Threshold, share_interval, tradeoff
from al_loop.tracking import ModelRefused, Tracker
from al_loop.workspace import Workspace, prepare

REVIEW_ROUND = -1  # the round number of review tasks in Label Studio (al_round)


@dataclass(frozen=True)
class Calibration:
    """The held-out labeled rows a threshold was measured on, by source, and the rows left out because the model
    trained on them."""

    ids: tuple[str, ...]
    eval_rows: int
    routed_rows: int
    test_rows: int
    excluded: int

    @property
    def sources(self) -> str:
        """The rows by source, in words."""
        return (f"{self.eval_rows} evaluation labels, {self.routed_rows} reviewed routed items, {self.test_rows} test "
                "rows" + (f"; {self.excluded} rows left out: the model trained on them" if self.excluded else ""))


@dataclass(frozen=True)
class RouteResult:
    """What routing did: the threshold, what it was measured on, how many were auto-accepted or sent for review, and
    the decisions file."""

    threshold: Threshold
    calibration: Calibration
    routing: RoutingConfig
    auto: int
    review: int
    pushed: int
    decisions: Path
    model_run_id: str

    @property
    def within_epsilon(self) -> bool:
        """Whether what is automated keeps its error's upper bound within routing.epsilon (or nothing is)."""
        return within_epsilon(self.threshold, self.routing.epsilon)


@dataclass(frozen=True)
class RecordedModel:
    """The final model a loop recorded in its ledger (run_id, model_id, sha256, what it trained on), and that
    ledger."""

    record: dict[str, Any]
    ledger: Path

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def load(self, tracker: Tracker) -> Any:
        """The model, loaded only if its files still have the recorded hash."""
        return tracker.load_verified_model(self.record["model_id"], self.record["sha256"])


def load_model(tracker: Tracker, run_id: str, output_dir: Path) -> Any:
    """The final model a loop of this output folder logged to `run_id` and recorded in its ledger (a Pipeline of
    featurizer and estimator), loaded only if its files still have the recorded hash."""
    return find_run_model(tracker, run_id, output_dir).load(tracker)


def find_run_model(tracker: Tracker, run_id: str, output_dir: Path) -> RecordedModel:
    """The final model of MLflow run `run_id` that a ledger of this output folder recorded."""
    try:
        tracker.client.get_run(run_id)
    except MlflowException:
        raise AlLoopError(f"there is no MLflow run {run_id!r} in {redact(tracker.tracking_uri)}; give --run-id of a "
                          "loop run (printed by `al-loop run`), or leave it out to use this config's run") from None
    recorded = _recorded_model(output_dir, run_id=run_id)
    if recorded is None:
        raise AlLoopError(f"no ledger under {output_dir} records a model of MLflow run {run_id}: a loop records its "
                          "model when it finishes (budget, max_rounds or a stop rule), and al-loop loads only a model "
                          "it recorded (a run finished by an older al-loop did not: extend loop.budget and run again)")
    return recorded


def load_registered_model(tracker: Tracker, reference: str, output_dir: Path) -> tuple[Any, str]:
    """The model that a registered model's alias or version names (`NAME@ALIAS`, `NAME/VERSION`, `models:/...`), and
    its run: loaded only if it is the final model a ledger of this output folder recorded, with its hash checked."""
    recorded = find_registered_model(tracker, reference, output_dir)
    return recorded.load(tracker), recorded.run_id


def find_registered_model(tracker: Tracker, reference: str, output_dir: Path) -> RecordedModel:
    """The recorded final model a registered version names; refused if no ledger of this output folder recorded it."""
    version = tracker.resolve_registered(reference)
    shown = f"--model {reference} (version {version.version} of {version.name!r})"
    if version.model_id is None:
        raise ModelRefused(f"{shown} was not registered from a model logged to a run (its source is not "
                           "models:/<model id>); al-loop loads only the final model a loop logged and recorded. Name a "
                           "version a loop registered, or use --run-id")
    recorded = _recorded_model(output_dir, model_id=version.model_id)
    if recorded is None:
        raise ModelRefused(f"{shown} is the MLflow model {version.model_id}, which no ledger under {output_dir} "
                           "records as its final model; al-loop loads only a model a loop of this output folder logged "
                           "and recorded (with its hash), and was not loaded. Name the alias of a run of this folder "
                           f"(its run name, e.g. {version.name}@margin-seed0), or use --run-id")
    return recorded


def _recorded_model(output_dir: Path, run_id: str | None = None, model_id: str | None = None
                    ) -> RecordedModel | None:
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
            return RecordedModel(record=record, ledger=path)
    return None


# what decides the pool, the test split and the evaluation set: a model of a run that differs in one of them may
# have trained on this config's held-out rows (config identity settings, by key or key prefix)
SPLIT_SETTINGS = ("seed", "dataset.", "features.")


def check_same_split(config: Config, workspace: Workspace, recorded: RecordedModel, shown: str) -> None:
    """Refuse a model whose run differs from this config in seed, dataset, features or pool: its training rows may
    be this config's held-out rows, which would void the error bound measured on them."""
    with Ledger.read_only(recorded.ledger) as ledger:
        stored = ledger.get_meta("config_identity")
        settings_text = ledger.get_meta("config_identity.settings")
        fingerprint = ledger.get_meta("pool_fingerprint")
    identity = config.identity()
    theirs: dict[str, Any] = json.loads(settings_text) if settings_text else {}
    if settings_text is not None:
        differs = [f"{key}: {_shown(theirs.get(key))} in that run, {_shown(identity.settings.get(key))} here"
                   for key in sorted(set(theirs) | set(identity.settings))
                   if key.startswith(SPLIT_SETTINGS) and theirs.get(key) != identity.settings.get(key)]
    else:  # a ledger of an earlier al-loop: only the whole identity can be compared
        differs = [] if stored in (None, identity, identity.legacy) else [
            "the config identity (that ledger, from an earlier al-loop, does not record its settings)"]
    if fingerprint is not None and fingerprint != workspace.fingerprint():
        differs.append("the pool's ids differ")
    if not differs:
        return
    if recorded.ledger.parent.name == config.run_name:
        raise AlLoopError(
            f"this config differs from the one its run {config.run_name} was started with ({'; '.join(differs)}), "
            "so that run's model may have trained on this config's held-out rows and an error bound measured on "
            "them would not hold. Route with the config (and data) that run was started with")
    name, seed = recorded.ledger.parent.name, theirs.get("seed", "unknown")
    strategy = theirs.get("loop.strategy")
    only_seed = all(d.startswith("seed:") or d == "the pool's ids differ" for d in differs)  # ids follow the seed
    fix = (f"add --seed {seed}" + (f" --strategy {strategy}" if strategy else "") + " to route with that run's own "
           "config" if only_seed else "route with the config file that run was started with")
    raise AlLoopError(
        f"{shown} is the model of run {name} (MLflow run {recorded.run_id}, seed {seed}), not of this config's run "
        f"{config.run_name} (seed {config.seed}): {'; '.join(differs)}. Its training rows may be among this config's "
        "held-out rows (the test split and the evaluation set are drawn with the seed), so an error bound measured "
        f"on them would not hold. To use that model, {fix}; to use this config's model, leave out --run-id/--model")


def _shown(value: Any) -> str:
    return "(not set)" if value is None else str(value)


def trained_ids(recorded: RecordedModel) -> frozenset[str]:
    """Every row the recorded model may have trained on: the training picks of its ledger, and the reviewed routed
    items its record names (all reviewed routed items of that ledger if it names none: an older record)."""
    with Ledger.read_only(recorded.ledger) as ledger:
        picked = {str(e["id"]) for e in ledger.examples(("labeled", "queued", "skipped")) if e["purpose"] == "train"}
        routed = recorded.record.get("routed_trained")
        if routed is None:
            routed = [i for i, _, _ in ledger.routed_labels()]
    return frozenset(picked | {str(i) for i in routed})


def labels_used(recorded: RecordedModel) -> int:
    """The labels the recorded model trained on: its record's count, else the one in its key, else the ledger's
    last round."""
    if isinstance(recorded.record.get("labels"), int):
        return int(recorded.record["labels"])
    match = re.search(r"/(\d+):\d+:[0-9a-f]+$", str(recorded.record.get("key", "")))
    if match:
        return int(match.group(1))
    with Ledger.read_only(recorded.ledger) as ledger:
        return max((r.n_labels or 0 for r in ledger.rounds()), default=0)


def aligned_proba(pipeline: Any, inputs: pd.DataFrame, classes: list[str]) -> np.ndarray:
    raw = pipeline.predict_proba(inputs)
    proba = np.zeros((len(inputs), len(classes)))
    proba[:, [classes.index(str(c)) for c in pipeline.classes_]] = raw
    return proba


def calibration_rows(workspace: Workspace, ledger: Ledger, trained: frozenset[str] = frozenset()
                     ) -> tuple[pd.DataFrame, np.ndarray, Calibration]:
    """Every held-out label the campaign paid for, without a row the model trained on: the evaluation labels,
    the reviewed routed items, the test split (inputs, labels, and what they are)."""
    pool, test = workspace.splits.pool, workspace.splits.test
    all_eval, all_reviewed = ledger.labels(purpose="eval"), ledger.routed_labels()
    eval_labels = {e: v for e, v in all_eval.items() if e not in trained}
    reviewed = [(i, d, v) for i, d, v in all_reviewed if i not in trained]
    test_keep = ([k for k, e in enumerate(test.ids) if str(e) not in trained] if test is not None else [])
    frames = [pool.inputs.iloc[workspace.rows(list(eval_labels))],
              pd.DataFrame([json.loads(d) for _, d, _ in reviewed], columns=list(pool.inputs.columns)),
              test.inputs.iloc[test_keep] if test is not None else pool.inputs.iloc[:0]]
    labels = [*eval_labels.values(), *(v for _, _, v in reviewed),
              *(np.asarray(test.labels, dtype=object)[test_keep] if test is not None else [])]
    ids = (*eval_labels, *(i for i, _, _ in reviewed), *(str(test.ids[k]) for k in test_keep))
    every = len(all_eval) + len(all_reviewed) + (len(test.ids) if test else 0)
    calibration = Calibration(ids=tuple(ids), eval_rows=len(eval_labels), routed_rows=len(reviewed),
                              test_rows=len(test_keep), excluded=every - len(ids))
    inputs = pd.concat([f for f in frames if len(f)], ignore_index=True) if ids else pool.inputs.iloc[:0]
    return inputs, np.array(labels, dtype=object).astype(str), calibration


def threshold_for(config: Config, pipeline: Any, workspace: Workspace, ledger: Ledger,
                  trained: frozenset[str] = frozenset()) -> tuple[Threshold, Calibration]:
    """The fixed threshold, or one calibrated for routing.epsilon, on every held-out labeled row the model did not
    train on (`calibration_rows`)."""
    confidence, correct, calibration = calibration_scores(pipeline, workspace, ledger, trained)
    return choose_threshold(config.routing, confidence, correct), calibration


def calibration_scores(pipeline: Any, workspace: Workspace, ledger: Ledger, trained: frozenset[str] = frozenset()
                       ) -> tuple[np.ndarray, np.ndarray, Calibration]:
    """The model's confidence on each calibration row, whether its guess is right, and where the rows come from."""
    inputs, labels, calibration = calibration_rows(workspace, ledger, trained)
    if not calibration.ids:
        raise AlLoopError("routing needs held-out labeled rows to measure its error, and this run has none the model "
                          f"did not train on ({calibration.sources}): add a test split (dataset.test_path or labels "
                          "in the pool) or an evaluation set (evaluation.size)")
    proba = aligned_proba(pipeline, inputs, workspace.classes)
    correct = np.asarray(workspace.classes, dtype=object)[proba.argmax(axis=1)] == labels
    return proba.max(axis=1), correct, calibration


EXPLAIN_EPSILONS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1)


@dataclass(frozen=True)
class Explanation:
    """What each target error rate would automate with the routed model, on its calibration rows."""

    rows: list[tuple[float, Threshold, tuple[float, float]]]  # epsilon, threshold, band of the automated share
    calibration: Calibration
    routing: RoutingConfig
    model_run_id: str


def explain(config: Config, run_id: str | None = None, model: str | None = None,
            epsilons: Sequence[float] = EXPLAIN_EPSILONS) -> Explanation:
    """The epsilon / automation trade-off of the model `route` would use (same checks), routing nothing."""
    with _routing_model(config, run_id, model) as (workspace, ledger, tracker, recorded):
        confidence, correct, calibration = calibration_scores(recorded.load(tracker), workspace, ledger,
                                                              trained_ids(recorded))
    level = config.routing.confidence_level
    chosen = sorted({*epsilons, config.routing.epsilon})
    rows = [(epsilon, threshold, share_interval(threshold, level))
            for epsilon, threshold in tradeoff(confidence, correct, chosen, level, config.routing.procedure)]
    return Explanation(rows=rows, calibration=calibration, routing=config.routing, model_run_id=recorded.run_id)


def describe(result: RouteResult) -> str:
    """What the threshold certifies, in words: the bound it keeps, or why nothing could be certified and what to
    do, or that a fixed threshold is outside the guarantee."""
    t, c, routing = result.threshold, result.calibration, result.routing
    level, epsilon = f"{routing.confidence_level:.0%}", f"{routing.epsilon:.2%}"
    rows = f"{t.total} held-out rows ({c.sources})"
    realized = f"realized error {t.auto_errors / max(t.auto_count, 1):.2%}: {t.auto_errors} of {t.auto_count}"
    if routing.hi is not None:
        if not t.auto_count:
            return (f"threshold hi = {t.hi:.4f} (fixed routing.hi): none of the {rows} reaches it, so every item "
                    "goes to review")
        head = (f"threshold hi = {t.hi:.4f} (fixed routing.hi): {t.share_automated:.1%} of the {rows} automated, "
                f"{realized}, error upper bound {t.error_upper_bound:.2%} at {level}")
        if result.within_epsilon:
            return f"{head}, within epsilon {epsilon}"
        return (f"{head}: OUTSIDE the guarantee, the auto-accepted items may hold more than epsilon = {epsilon} "
                "errors. Unset routing.hi to calibrate a threshold for epsilon on these rows")
    if certified(t, routing.epsilon):
        return (f"threshold hi = {t.hi:.4f}, calibrated on {rows}: {t.share_automated:.1%} automated, error upper "
                f"bound {t.error_upper_bound:.2%} <= epsilon {epsilon} at {level} ({realized})")
    if t.total < t.needed_rows:
        why = (f"at {level} confidence an error bound of {epsilon} needs at least {t.needed_rows} auto-accepted "
               f"held-out rows, all correct, and there are only {rows}. To automate, label more held-out rows "
               "(a larger evaluation.size, or a test split: dataset.test_path or dataset.test_size)")
    else:
        why = (f"there are {rows}, enough in number ({t.needed_rows} clean rows would do), but the model's most "
               f"confident rows make too many errors for an upper bound of {epsilon} at {level}. To automate, train "
               "on more labels")
    return (f"nothing could be certified, every item goes to review: {why}, raise routing.epsilon, or lower "
            "routing.confidence_level")


def route(config: Config, input_path: Path, run_id: str | None = None, model: str | None = None) -> RouteResult:
    """Route the rows of `input_path` (same columns as the pool; labels not needed) with the final model of this
    config's run, of `run_id`, or the registered version `model` names (e.g. `al-loop@latest`). The model must come
    from a run with this config's seed, dataset, features and pool (`check_same_split`)."""
    with _routing_model(config, run_id, model) as (workspace, ledger, tracker, recorded):
        table = _traffic(config, workspace, input_path)
        pipeline = recorded.load(tracker)
        model_run = recorded.run_id
        threshold, calibration = threshold_for(config, pipeline, workspace, ledger, trained_ids(recorded))
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
        result = RouteResult(threshold=threshold, calibration=calibration, routing=config.routing,
                             auto=int(auto.sum()), review=int((~auto).sum()), pushed=pushed, decisions=decisions,
                             model_run_id=model_run)
        tracker.log_metrics(model_run, routed_metrics(result, ledger.routed_counts(model_run)),
                            step=labels_used(recorded))
    return result


@contextmanager
def _routing_model(config: Config, run_id: str | None, model: str | None
                   ) -> Iterator[tuple[Workspace, Ledger, Tracker, RecordedModel]]:
    """The workspace, the open ledger of this config's run, the tracker, and the recorded model to route with (the
    registered version `model`, run `run_id`, or this config's run), checked to share this config's split."""
    if run_id is not None and model is not None:
        raise AlLoopError("give --run-id or --model, not both: each names the model to route with")
    workspace = prepare(config)
    ledger_path = config.output_dir / config.run_name / "ledger.sqlite"
    if not ledger_path.exists():
        raise AlLoopError(f"no loop run at {ledger_path.parent}: run `al-loop run` first (routing uses its model)")
    with Ledger.open(ledger_path) as ledger:
        tracker = Tracker(config.tracking_uri, config.tracking.experiment)
        recorded, shown = _chosen_model(tracker, config, ledger, run_id, model)
        check_same_split(config, workspace, recorded, shown)
        yield workspace, ledger, tracker, recorded


def _traffic(config: Config, workspace: Workspace, input_path: Path) -> Any:
    """The rows to route, read like the pool (without labels); refused if an id is a pool id."""
    columns = {"label_column": None}
    if config.dataset.name is not None:  # a bundled dataset: its columns are the loaded pool's
        columns |= {"id_column": "id", "text_column": None, "feature_columns": list(workspace.splits.pool.inputs)}
    table = _table(read_frame(input_path), config.dataset.model_copy(update=columns), None, str(input_path))
    clash = set(table.ids) & set(workspace.splits.pool.ids)
    if clash:
        raise AlLoopError(f"{input_path}: {len(clash)} id(s) are pool ids, e.g. {sorted(clash)[:3]}; routed "
                          "traffic needs ids of its own")
    return table


def _chosen_model(tracker: Tracker, config: Config, ledger: Ledger, run_id: str | None, model: str | None
                  ) -> tuple[RecordedModel, str]:
    """The recorded model to route with (the registered version `model`, run `run_id`, or this config's run), and
    how to name it in a message."""
    if model is not None:
        return find_registered_model(tracker, model, config.output_dir), f"--model {model}"
    if run_id is not None:
        return find_run_model(tracker, run_id, config.output_dir), f"--run-id {run_id}"
    own = ledger.get_meta("mlflow_run_id") or ""
    return find_run_model(tracker, own, config.output_dir), f"the model of this config's run (MLflow run {own})"


def routed_metrics(result: RouteResult, counts: dict[str, int]) -> dict[str, float]:
    """`routed_*`, logged to the model's run at the step of its label count: running totals over every item routed
    with that run's model (from the ledger, so a repeated route updates them instead of adding a point of its
    own), and the threshold this route used (its error bound only where it automates)."""
    items = sum(counts.values())
    t = result.threshold
    metrics = {"routed_items": float(items), "routed_auto_items": float(counts.get("auto", 0)),
               "routed_share_automated": counts.get("auto", 0) / max(items, 1), "routed_hi": min(t.hi, 1.0),
               "routed_certified": float(certified(t, result.routing.epsilon)),
               "routed_within_epsilon": float(result.within_epsilon),
               "routed_calibration_rows": float(t.total)}
    if t.auto_count and t.error_upper_bound is not None:
        metrics["routed_error_bound"] = t.error_upper_bound
    return metrics


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
