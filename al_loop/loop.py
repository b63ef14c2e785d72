"""One round, and the loop: select -> push -> pull -> retrain -> evaluate -> log, resumable anywhere.

Each step reads the ledger first and writes it before moving on, so re-running the same command after
a crash continues where it stopped: a round already queued is not picked again, a label already pulled
is not lost, a step already logged is not logged twice.

With `wait=False` the loop does what it can without waiting for people and returns: it finishes the
current round if enough of it is answered, then picks and pushes the next batch (`al-loop sync`).

A finished run still pulls: answers corrected (or deleted) after the last round change the labels; the
run then re-evaluates its last round, re-logs it and finishes again (a new final model), and says which
labels changed. When its annotators work in the local Label Studio server and that server is stopped, a finished
run neither starts it nor pulls (nobody can change answers in a stopped server); it says how to pull.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from scipy import sparse
from sklearn.pipeline import Pipeline

from al_loop import __version__, selection
from al_loop.agreement import agreement_report, as_metrics, metric_names
from al_loop.annotators.base import Annotator, PullResult, TaskRequest
from al_loop.annotators.factory import build_annotator, build_specialists
from al_loop.audit import export_audit
from al_loop.config import (
    Config,
    CostsConfig,
    LabelStudioAnnotatorConfig,
    RoutingConfig,
    SimulatedAnnotatorConfig,
    check_estimator,
)
from al_loop.consensus import DAWID_SKENE, dawid_skene
from al_loop.curves import run_summary
from al_loop.decisions import break_even_metrics, routing_metrics, stop_rule_fired, stop_set, stop_set_kappa
from al_loop.distributed import connect as dask_connect
from al_loop.distributed import top_candidates as dask_top_candidates
from al_loop.errors import AlLoopError, ConfigError, DataError, WaitTimeout
from al_loop.ledger import EXPERT_LANE, ROUTINE, Ledger, Pick, RoundRecord, Settlement
from al_loop.model import FittedModel, build_estimator, evaluate, fit
from al_loop.plots import plot_learning_curve
from al_loop.redact import redact
from al_loop.scoring import Ranked, top_candidates
from al_loop.selection import (
    EVALUATION_RANDOM,
    INITIAL_STRATEGIES,
    SelectionContext,
    Strategy,
    check_pool_size,
    pick_scores,
)
from al_loop.threads import blas_limit
from al_loop.tracking import RunInput, Tracker, model_alias, registered_model_name
from al_loop.workspace import Workspace, prepare

log = logging.getLogger(__name__)
# ledger meta: {"run_id", "model_id", "key", "sha256", "labels", "routed_trained"[, "registered"]} of the final model
FINAL_MODEL = "final_model"
FINAL_MODEL_INTENT = "final_model/intent"  # ledger meta: the key of the model being logged
EXAMPLE_ROWS = 3  # the final model's input example: the first rows of the pool's input columns
AUDIT_ARTIFACT = "audit/labels.csv"  # the run's artifact: the audit table at the last finish
STOPPED_SERVER_NOTE = ("Label Studio is not running, so answers were not pulled: to pull answers changed in it after "
                       "the run finished, start it (`al-loop labelstudio start CONFIG`) and run `al-loop sync CONFIG`")


@dataclass(frozen=True)
class LoopResult:
    """What a loop run produced: its MLflow run, its folder, its rounds and why it stopped."""

    run_id: str
    run_dir: Path
    rounds: list[RoundRecord]
    stopped_because: str
    finished: bool
    labelstudio: dict[str, str]
    # labels changed since the run had finished: (example id, label then, label now; None = waiting again)
    relabeled: tuple[tuple[str, str | None, str | None], ...] = ()
    # submissions without a choice on examples still waiting: example_id, task_id, annotator, round, required
    empty_submissions: tuple[dict[str, object], ...] = ()
    # why a finished run did not pull (the local Label Studio server is stopped), or None if it pulled
    not_pulled: str | None = None

    @property
    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels used, accuracy) per evaluated round."""
        done = [r for r in self.rounds if "accuracy" in r.metrics]
        return (np.array([r.n_labels for r in done], dtype=float),
                np.array([r.metrics["accuracy"] for r in done], dtype=float))


OnRound = Callable[[RoundRecord], None]


@dataclass(frozen=True)
class Reference:
    """What a run's summary metrics (AUBC, labels to each target) are measured against. Compare and benchmark give
    it (one full-pool fit per seed, shared by the strategies; AUBC up to the common budget); a lone run makes its
    own (`reference_for`)."""

    full_accuracy: float | None
    targets: tuple[float, ...]
    budget: float | None = None


def full_pool_accuracy(config: Config, workspace: Workspace) -> float:
    """Test accuracy of the model trained on every pool label: the ceiling the curves are measured against."""
    pool, test = workspace.splits.pool, workspace.splits.test
    if not _fully_labeled(workspace) or test is None:
        raise AlLoopError("compare runs in simulation: it needs a label for every pool row and held-out test rows")
    with blas_limit(config.compute.blas_threads):
        model = fit(build_estimator(config.model, config.seed), workspace.x_pool, pool.labels, workspace.classes)
        return evaluate(model, workspace.x_test, test.labels)["accuracy"]


def _fully_labeled(workspace: Workspace) -> bool:
    """Whether every pool row has a label (a simulation's oracle, and what a full-pool model needs)."""
    labels = workspace.splits.pool.labels
    return labels is not None and all(v is not None for v in labels)


def reference_for(config: Config, workspace: Workspace) -> Reference:
    """A lone run's reference: the full-pool accuracy where the run is a simulation measured on the test split of a
    fully labeled pool (one more fit on every pool label); none for people's runs (Label Studio), whose curve is
    summarized by its AUBC only."""
    simulated = isinstance(config.annotator, SimulatedAnnotatorConfig) and config.evaluation.size == 0
    full = (full_pool_accuracy(config, workspace)
            if simulated and _fully_labeled(workspace) and workspace.splits.test is not None else None)
    return Reference(full_accuracy=full, targets=tuple(config.compare.targets))


def run_loop(config: Config, *, workspace: Workspace | None = None, annotator: Annotator | None = None,
             parent_run_id: str | None = None, on_round: OnRound | None = None, wait: bool = True,
             extra_tags: dict[str, str] | None = None, specialists: Annotator | None = None,
             requeue_empty: bool = False, reference: Reference | None = None) -> LoopResult:
    """Run (or resume) the loop of a config until its budget, max rounds, or the pool runs out.

    With `wait=False`, return as soon as the loop would have to wait for annotators. With `requeue_empty`,
    tasks submitted without a choice are served again to other annotators (where the annotator can). At the
    finish the run logs its summary (AUBC, and labels to each target against `reference`, made for the run
    if not given).
    """
    workspace = workspace or prepare(config)
    check_plan(config, len(workspace.splits.pool))
    check_estimator(config.model)  # before the ledger and the MLflow run exist, for configs built in Python too
    run_dir = config.output_dir / config.run_name
    with Ledger.open(run_dir / "ledger.sqlite") as ledger:
        ledger.bind({"config_identity": config.identity(), "pool_fingerprint": workspace.fingerprint()})
        tracker = Tracker(config.tracking_uri, config.tracking.experiment)
        tags = {"strategy": config.loop.strategy, "dataset": config.dataset_label, "seed": str(config.seed),
                "annotator": config.annotator.kind, "al_loop.version": __version__, "al_loop.run_dir": str(run_dir),
                **(extra_tags or {})}
        run_id = tracker.run_for_ledger(ledger, config.run_name, tags, config.flat_params(), parent_run_id)
        try:
            tracker.log_inputs(run_id, run_inputs(config, workspace))  # once: a resumed run has them already
            loop = _Loop(config, workspace, ledger, tracker, run_id, annotator, on_round, specialists,
                         requeue_empty=requeue_empty, register=parent_run_id is None)
            if annotator is None and ledger.get_meta("finished") is not None and ledger.open_round() is None \
                    and _local_server_stopped(config) and loop.stop_reason():
                loop.offline = STOPPED_SERVER_NOTE  # nothing to pull: do not start the server for nothing
            else:
                loop.annotator = annotator or build_annotator(config, workspace, ledger)
                loop.specialists = specialists or build_specialists(config, workspace, ledger)
            try:
                reason, finished = loop.run(wait)
            finally:
                loop.close()
            relabeled: list[tuple[str, str | None, str | None]] = []
            if finished:
                relabeled = loop.relabel_finished()
                loop.finish(reason, run_dir, reference)
                loop.remember_final_labels()
        except BaseException as error:
            status = "RUNNING" if isinstance(error, WaitTimeout) else (
                "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            if status != "RUNNING":
                tracker.end_run(run_id, status)
            raise
        labelstudio = {k: v for k in ("labelstudio_url", "labelstudio_project", "labelstudio_expert_project")
                       if (v := ledger.get_meta(k))}
        return LoopResult(run_id=run_id, run_dir=run_dir, rounds=ledger.rounds(), stopped_because=reason,
                          finished=finished, labelstudio=labelstudio, relabeled=tuple(relabeled),
                          empty_submissions=tuple(ledger.empty_submissions()), not_pulled=loop.offline)


def _local_server_stopped(config: Config) -> bool:
    """The annotators work in the local Label Studio server al-loop manages, and it is not running."""
    settings = config.annotator
    if not isinstance(settings, LabelStudioAnnotatorConfig) or settings.url is not None:
        return False
    from al_loop.labelstudio.server import LocalServer

    return LocalServer(config.output_dir / "labelstudio", settings.port).pid() is None


def run_inputs(config: Config, workspace: Workspace) -> list[RunInput]:
    """The pool (context "training") and the held-out test split ("test") as MLflow run inputs: ids, input
    columns and labels (where known)."""
    dataset = config.dataset
    source = (f"sklearn.datasets.load_{dataset.name}" if dataset.name is not None
              else str(Path(dataset.path).resolve()) if dataset.path is not None else config.dataset_label)
    test_source = str(Path(dataset.test_path).resolve()) if dataset.test_path is not None else source
    id_column, label_column = dataset.id_column, dataset.label_column or "label"
    inputs = []
    for table, context, where in ((workspace.splits.pool, "training", source),
                                  (workspace.splits.test, "test", test_source)):
        if table is None:
            continue
        frame = table.inputs.reset_index(drop=True)  # a new frame (copy-on-write): the table is not changed
        frame.insert(0, id_column, pd.Series(table.ids, dtype=str))
        if table.labels is not None:
            frame[label_column] = pd.Series(table.labels, dtype=object)
        name = (config.dataset_label if context == "training" else Path(dataset.test_path).name.split(".")[0]
                if dataset.test_path is not None else f"{config.dataset_label}-test")
        inputs.append(RunInput(name=name, context=context, frame=frame, source=where,
                               targets=label_column if table.labels is not None else None))
    return inputs


def check_plan(config: Config, pool_size: int) -> None:
    """Refuse batch sizes the pool cannot supply, before anything is picked."""
    loop = config.loop
    available = pool_size - config.evaluation.size
    if config.evaluation.size >= pool_size:
        raise DataError(f"evaluation.size ({config.evaluation.size}) leaves nothing of the pool ({pool_size} rows) "
                        "to train on; lower it")
    if loop.initial_size > available:
        raise DataError(f"loop.initial_size ({loop.initial_size}) is larger than the pool ({available} rows); "
                        "lower it")
    if loop.initial_size + loop.batch_size > available:
        raise DataError(f"loop.batch_size ({loop.batch_size}) is larger than what is left after the initial set "
                        f"({available - loop.initial_size} of {available} rows); lower loop.batch_size or "
                        "loop.initial_size")


def fit_labeled(template: Any, workspace: Workspace, labels: dict[str, str],
                reviewed: list[tuple[str, str, str]], previous: FittedModel | None = None) -> FittedModel:
    """The loop's model: the template fitted on the labeled pool rows (in pool order) and the reviewed routed
    items (`Ledger.routed_labels`), as each round fits it (`al-loop serve` fits the same way)."""
    rows = workspace.rows(list(labels))
    order = np.argsort(rows)  # the labeled rows in pool order (rows are distinct)
    x = workspace.x_pool[rows[order]]
    values = list(labels.values())
    y = [values[i] for i in order]
    if reviewed:
        x = _stack([x, workspace.featurizer.transform(pd.DataFrame([json.loads(d) for _, d, _ in reviewed]))])
        y += [label for _, _, label in reviewed]
    return fit(template, x, np.array(y), workspace.classes, previous=previous)


class _Loop:
    """The state machine of one run; every transition is read from and written to the ledger."""

    def __init__(self, config: Config, workspace: Workspace, ledger: Ledger, tracker: Tracker, run_id: str,
                 annotator: Annotator | None, on_round: OnRound | None, specialists: Annotator | None = None,
                 requeue_empty: bool = False, register: bool = True) -> None:
        self.config = config
        self.register = register  # register the final model (not for the child runs of compare and benchmark)
        self.ws = workspace
        self.ledger = ledger
        self.tracker = tracker
        self.run_id = run_id
        self.annotator = annotator
        self.specialists = specialists
        self.settlement = Settlement(escalate_below=config.quality.adjudication.min_agreement,
                                     repush_skipped=getattr(config.annotator, "repush_skipped", False))
        self.on_round = on_round
        self.template = build_estimator(config.model, config.seed)
        self.has_eval_round = config.evaluation.size > 0
        self.stop_rows = stop_set(config, len(workspace.splits.pool))
        self._cached: tuple[tuple[int, int, int], FittedModel, frozenset[str]] | None = None
        self._taken: tuple[set[str], np.ndarray] = (set(), np.zeros(len(workspace.splits.pool), dtype=bool))
        self._select_seconds: dict[int, float] = {}  # measured in this process (a resumed round has none)
        self._strategy_cache: dict[Any, Any] = {}  # what strategies keep for this process (e.g. refitted models)
        self._dask: Any = None
        self._flagged: set[str] = set()  # annotators already warned about in this process
        self._truth: dict[str, str] | None = None  # the pool's label column, when it has one
        self.requeue_empty = requeue_empty
        self.offline: str | None = None  # set (and no annotator built) when a finished run has nothing to pull

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, wait: bool) -> tuple[str, bool]:
        """Turn rounds until a stop rule fires (finished) or, without waiting, until people are needed."""
        while True:
            current = self.ledger.open_round()
            if current is None:
                reason = self.stop_reason()
                if reason:
                    if self.offline is None:
                        self.pull_once()  # answers changed after the last round still count
                    return reason, True
                current = self.queue_next_round()
                if not wait:
                    self.push_unpushed()
                    return f"pushed round {current.round} ({current.batch_size} tasks)", False
            started = time.perf_counter()
            if current.status == "queued":
                self.push_unpushed()
                if not self.collect(current.round, wait):
                    answered, total = self.ledger.round_progress(current.round)
                    specialists = self.ledger.adjudication_counts().get("pending", 0)
                    waiting = f" ({specialists} with a specialist)" if specialists else ""
                    return (f"waiting for annotators: {answered} of {total} tasks of round {current.round} done"
                            f"{waiting}{self.empty_note()}", False)
                self.evaluate(current.round, started)
            self.log(current.round)

    def stop_reason(self) -> str | None:
        used = self.ledger.used_count()
        budget = self.config.loop.budget
        rounds = self.ledger.rounds()
        query_rounds = max(0, len(rounds) - 1 - int(self.has_eval_round))
        if budget is not None and used >= budget:
            return f"budget of {budget} labels reached"
        if self.config.loop.max_rounds is not None and query_rounds >= self.config.loop.max_rounds:
            return f"max_rounds ({self.config.loop.max_rounds}) reached"
        if self.ledger.used_count(None) >= len(self.ws.splits.pool):
            return "pool exhausted"
        return stop_rule_fired(self.config, [r.metrics for r in rounds if r.n_labels])

    def queue_next_round(self) -> RoundRecord:
        """Pick the next batch (the evaluation set, then the initial set, then queries) with the registry's
        strategy for that round."""
        started = time.perf_counter()
        round_index = self.ledger.round_count()
        available = np.flatnonzero(~self.taken_rows())
        # SeedSequence([seed, round]) gives each round its own stream: a resumed round draws the same
        # picks, and for one seed every strategy starts from the same initial set (paired comparison).
        rng = np.random.default_rng([self.config.seed, round_index])
        first_train_round = int(self.has_eval_round)
        purpose = "train"
        if round_index < first_train_round:
            name, purpose, size = EVALUATION_RANDOM, "eval", self.config.evaluation.size
        elif round_index == first_train_round:
            name, size = INITIAL_STRATEGIES[self.config.loop.initial_strategy], self.config.loop.initial_size
        else:
            name, size = self.config.loop.strategy, self.config.loop.batch_size
        if purpose == "train" and self.config.loop.budget is not None:
            size = min(size, self.config.loop.budget - self.ledger.used_count())
        size = min(size, len(available))
        strategy = selection.get(name)
        labels = self.ledger.labels()
        with blas_limit(self.config.compute.blas_threads):  # fit, pool scoring and the picks' probabilities
            model = self.model_for(labels) if strategy.needs.model else None
            ctx = self.selection_context(round_index, size, rng, available, model, labels, strategy)
            ranked = strategy.select(ctx)
            rows = ranked.rows
            proba = None if model is None or len(rows) == 0 else model.predict_proba(self.ws.x_pool[rows])
        scores = pick_scores(ranked, proba)
        picks = []
        for rank, (row, score) in enumerate(zip(rows, scores, strict=True), start=1):
            guess = None if proba is None else int(proba[rank - 1].argmax())
            example_id = str(self.ws.splits.pool.ids[row])
            picks.append(Pick(example_id=example_id, rank=rank, ambiguity=None if np.isnan(score) else float(score),
                              predicted_label=None if guess is None else self.ws.classes[guess],
                              confidence=None if guess is None else float(proba[rank - 1, guess]),
                              required=self.config.required_answers(example_id)))
        version = None if model is None else f"{self.config.run_name}/round-{round_index - 1}"
        # before the round is queued: a crash in between re-picks the round with the same draws and notes
        self.ledger.set_meta(f"strategy_notes/{round_index}", json.dumps(ctx.notes))
        self.ledger.queue_round(round_index, strategy.name, version, picks, purpose=purpose)
        self._select_seconds[round_index] = time.perf_counter() - started
        return self.ledger.last_round()

    def taken_rows(self) -> np.ndarray:
        """A mask of the pool rows in use (queued, labeled or skipped), as the ledger says now: the mask of the
        previous call, corrected by the ids that entered or left use since (set differences, not a lookup of every
        id each round)."""
        used = self.ledger.used_ids()
        known, mask = self._taken
        mask = mask.copy()
        mask[self.ws.rows(list(known - used))] = False
        mask[self.ws.rows(list(used - known))] = True
        self._taken = (used, mask)
        return mask.copy()

    def selection_context(self, round_index: int, size: int, rng: np.random.Generator, available: np.ndarray,
                          model: FittedModel | None, labels: dict[str, str], strategy: Strategy
                          ) -> SelectionContext:
        """What a strategy may read: the pool, the model, the labeled rows (for strategies that need them), a
        chunked pool scorer, a way to fit models of the run's kind, and its own durable memory in the ledger."""
        compute = self.config.compute
        problem = check_pool_size(strategy, len(available), {"ranked_batch": compute.ranked_batch_max_pool})
        if problem:
            raise ConfigError(f"{problem} (compute.ranked_batch_max_pool)")
        ctx = SelectionContext(
            round=round_index, k=size, rng=rng, x_pool=self.ws.x_pool, available=available, model=model,
            score_pool=self.top_candidates,
            fit=lambda rows, y: fit(self.template, self.ws.x_pool[rows], y, self.ws.classes),
            state=_LedgerState(self.ledger, f"strategy/{strategy.name}/"), cache=self._strategy_cache,
            diversity_factor=compute.diversity_factor)
        if strategy.needs.labeled:
            rounds = self.ledger.label_rounds()
            ctx.labeled = self.ws.rows(list(labels))
            ctx.labels = np.array(list(labels.values()), dtype=object)
            ctx.label_rounds = np.array([rounds[e] for e in labels], dtype=np.int64)
        return ctx

    def top_candidates(self, model: FittedModel, available: np.ndarray, measure: str, k: int) -> Ranked:
        """The k most ambiguous available rows under a measure, chunk by chunk, locally or on Dask."""
        compute = self.config.compute
        if compute.engine == "dask":
            if self.ws.features_path is None:
                raise ConfigError("compute.engine: dask reads the stored features; set compute.store_features: true")
            if self._dask is None:
                self._dask = dask_connect(compute.scheduler, compute.n_workers)
            return dask_top_candidates(self._dask, self.ws.features_path, self.ws.x_pool.shape[0], available, model,
                                       measure, k, compute.chunk_rows)
        return top_candidates(model, self.ws.x_pool, available, measure, k, compute.chunk_rows)

    def close(self) -> None:
        if self._dask is not None:
            cluster = getattr(self._dask, "cluster", None)
            self._dask.close()
            if cluster is not None and self.config.compute.scheduler is None:
                cluster.close()
            self._dask = None

    def push_unpushed(self) -> None:
        """Push queued examples that have no task yet (all of a new round, or the rest after a crash)."""
        waiting = self.ledger.unpushed()
        if not waiting:
            return
        records = {r.round: r for r in self.ledger.rounds()}
        offsets = np.cumsum([0, *(records[r].batch_size for r in sorted(records))])  # al-loop's order
        first = min(records)
        tasks = []
        for example_id, round_index, rank in waiting:
            pick = self.ledger.pick_of(example_id)
            row = self.ws.row_of[example_id]
            tasks.append(TaskRequest(example_id=example_id, round=round_index, rank=rank,
                                     data=self.ws.splits.pool.inputs.iloc[row].to_dict(),
                                     predicted_label=pick.predicted_label, confidence=pick.confidence,
                                     ambiguity=pick.ambiguity, model_version=records[round_index].model_version,
                                     purpose="eval" if records[round_index].strategy == EVALUATION_RANDOM
                                     else "train", overlap=pick.required,
                                     order=int(offsets[round_index - first]) + rank))
        self.ledger.mark_pushed(self.annotator.push(tasks))

    def adjudicate(self) -> None:
        """Push examples whose annotators disagreed to the specialists, with the earlier answers, and pull
        the specialists' answers (which win)."""
        if self.specialists is None:
            return
        waiting = self.ledger.escalations_unpushed()
        if waiting:
            records = {r.round: r for r in self.ledger.rounds()}
            tasks = []
            for example_id, round_index, rank in waiting:
                pick = self.ledger.pick_of(example_id)
                prior = self.ledger.answers_of(example_id)
                if pick.predicted_label is not None:
                    prior.append(("model", f"{pick.predicted_label} (confidence {pick.confidence:.2f})"))
                tasks.append(TaskRequest(example_id=example_id, round=round_index, rank=rank,
                                         data=self.ws.splits.pool.inputs.iloc[self.ws.row_of[example_id]].to_dict(),
                                         model_version=records[round_index].model_version,
                                         purpose="adjudication", prior_answers=tuple(prior)))
            self.ledger.mark_escalations_pushed(self.specialists.push(tasks))
        pending = self.ledger.escalations_pending()
        if pending:
            result = self.specialists.pull(pending, self.ledger.get_meta("expert_pull_cursor"))
            self.ledger.record_pull(result, cursor_key="expert_pull_cursor", lane=EXPERT_LANE,
                                    settlement=self.settlement)

    def collect(self, round_index: int, wait: bool) -> bool:
        """Pull answers until enough of the round is answered; without `wait`, pull once.

        Returns whether the round may be closed. Raises WaitTimeout after annotator.timeout seconds.
        """
        settings = self.config.annotator
        is_people = isinstance(settings, LabelStudioAnnotatorConfig)
        min_fraction = settings.min_fraction if is_people else 1.0
        deadline = time.monotonic() + (settings.timeout if is_people else 0.0)
        while True:
            if self.ledger.pending() or self.ledger.routed_pending():
                self.pull_once()
            else:
                self.adjudicate()
            answered, total = self.ledger.round_progress(round_index)
            if total == 0 or answered >= min_fraction * total:
                return True
            if not wait:
                return False
            if time.monotonic() >= deadline:
                short = self.ledger.partly_answered(round_index)
                hint = (f" {short} of them have some but fewer answers than their overlap asks (quality.overlap): "
                        "at least that many annotators must work in the project." if short else "")
                raise WaitTimeout(
                    f"round {round_index}: {answered} of {total} tasks answered after waiting "
                    f"{getattr(settings, 'timeout', 0):.0f} s (annotator.timeout).{hint}{self.empty_note()} Nothing "
                    "is lost: run `al-loop sync CONFIG` (or the same command) when annotators have worked")
            time.sleep(settings.poll_interval if is_people else 0.1)

    def pull_once(self) -> None:
        """One pull of the routine lane (waiting examples, reviews, and changes to answered ones: an answer
        corrected or deleted, a task deleted), then the specialist lane."""
        pending = {**self.ledger.routed_pending(), **self.ledger.pending()}
        since = self.ledger.get_meta("pull_cursor")
        if "closed" in inspect.signature(self.annotator.pull).parameters:  # older annotators: without it
            result: PullResult = self.annotator.pull(pending, since, closed=self.ledger.closed_tasks())
        else:
            result = self.annotator.pull(pending, since)
        self.ledger.record_pull(result, settlement=self.settlement)
        self.requeue_empty_submissions()
        self.adjudicate()

    def requeue_empty_submissions(self) -> None:
        """With requeue_empty, ask one more annotator for each submission without a choice (an absolute
        overlap per task: the answers it asks for plus its empty submissions, so repeating it is harmless)."""
        requeue = getattr(self.annotator, "requeue", None)
        if not self.requeue_empty or requeue is None:
            return
        empty = self.ledger.empty_submissions()
        if not empty:
            return
        overlaps: dict[str, int] = {}
        for row in empty:
            task = str(row["task_id"])
            overlaps[task] = overlaps.get(task, int(row["required"])) + 1
        requeue(overlaps)

    def empty_note(self) -> str:
        """The submissions without a choice that hold up examples, named (task, example, who), with the fix."""
        empty = self.ledger.empty_submissions()
        if not empty:
            return ""
        named = "; ".join(f"task {r['task_id']} (example {r['example_id']}) by {r['annotator']}" for r in empty[:10])
        more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
        done = " (requeued for other annotators)" if self.requeue_empty else (
            ". Label Studio counts them as done and does not serve them again: choose a label in them, delete "
            "them, or run `al-loop sync CONFIG --requeue-empty` to serve them to other annotators")
        return f" {len(empty)} submitted without a choice: {named}{more}{done}."

    def relabel_finished(self) -> list[tuple[str, str | None, str | None]]:
        """If labels changed since the run finished (answers corrected or deleted afterwards): re-evaluate the
        last round on them, re-log its metrics, and make `finish` log the final model again. Returns the
        changes: (example id, label then, label now or None if it waits again)."""
        before = self.ledger.get_meta("finished_labels")
        if before is None:
            return []
        then: dict[str, str | None] = json.loads(before)
        now = self.all_labels()  # examples picked after that finish (a raised budget) are not changes
        changed = [(e, label, now.get(e)) for e, label in sorted(then.items()) if now.get(e) != label]
        rounds = [r for r in self.ledger.rounds() if r.n_labels]
        if not changed or not rounds:
            return changed
        last = rounds[-1].round
        self.evaluate(last, time.perf_counter())
        record = next(r for r in self.ledger.rounds() if r.round == last)
        metrics = {**record.metrics, "relabeled_after_finish": float(len(changed))}
        stamp = int(time.time() * 1000)  # a new value at the same step: the history keeps the old one
        self.tracker.client.log_batch(self.run_id, metrics=[Metric(k, float(v), stamp, int(record.n_labels or 0))
                                                            for k, v in metrics.items()])
        self.ledger.mark_logged(last)
        if self.on_round is not None:
            self.on_round(record)
        self.ledger.set_meta("finished", "relabeled")  # not a key finish() writes: it finishes again
        return changed

    def remember_final_labels(self) -> None:
        """The labels the final model was trained and measured on, and the examples still waiting (None):
        what a later change is compared with."""
        waiting = {str(e["id"]): None for e in self.ledger.examples(("queued",))}
        self.ledger.set_meta("finished_labels", json.dumps({**waiting, **self.all_labels()}, sort_keys=True))

    def all_labels(self) -> dict[str, str]:
        """Training and evaluation labels: example id -> label."""
        return {**self.ledger.labels("eval"), **self.ledger.labels()}

    def evaluate(self, round_index: int, started: float) -> None:
        """Retrain on all training labels, evaluate, and store the round's metrics.

        Metrics come from the annotator-labeled evaluation set when there is one (also logging the held-out
        test split as test_* if it exists), else from the held-out test split. Labels are settled first
        (Dawid-Skene, when configured), and the annotators' agreement is measured.
        """
        self.resolve_consensus()
        labels = self.ledger.labels()
        metrics: dict[str, float] = {"round": float(round_index)}
        if self.routing_on():
            metrics["reviewed_routed_labels"] = float(len(self.ledger.routed_labels()))
        if labels:
            with blas_limit(self.config.compute.blas_threads):  # the fit and every prediction of the round
                model = self.model_for(labels)
                eval_labels = self.ledger.labels(purpose="eval")
                held_out = self.held_out(eval_labels)
                if held_out is not None:
                    metrics |= evaluate(model, *held_out)
                if eval_labels:
                    metrics["eval_size"] = float(len(eval_labels))
                    test = self.ws.splits.test
                    if test is not None and self.ws.x_test is not None:
                        metrics |= {f"test_{k}": v for k, v in evaluate(model, self.ws.x_test, test.labels).items()}
                metrics |= self.decisions(round_index, model, labels, metrics)
        metrics |= self.quality_metrics(round_index)
        picked = [r[0] for r in self.ledger.round_ambiguities(round_index) if r[0] is not None]
        if picked:
            metrics["pick_ambiguity"] = float(np.mean(picked))
        metrics |= json.loads(self.ledger.get_meta(f"strategy_notes/{round_index}") or "{}")
        select_seconds = self._select_seconds.get(round_index)
        if select_seconds is not None:
            metrics["select_seconds"] = select_seconds
        metrics["round_seconds"] = time.perf_counter() - started + (select_seconds or 0.0)
        self.ledger.finish_round(round_index, len(labels), metrics)

    def resolve_consensus(self) -> None:
        """With quality.consensus dawid_skene, relabel every answered example by Dawid-Skene over all answers
        (the specialists' included, as one more annotator; their own labels are kept)."""
        if self.config.quality.consensus != DAWID_SKENE:
            return
        rows = self.ledger.current_answers(ROUTINE) + self.ledger.current_answers(EXPERT_LANE)
        if not rows:
            return
        answers = pd.DataFrame([r[:3] for r in rows], columns=["example_id", "annotator", "label"])
        posterior = dawid_skene(answers, self.ws.classes)["label"]
        labeled = {**self.ledger.labels("eval"), **self.ledger.labels()}
        self.ledger.apply_consensus({e: posterior[e] for e in labeled if e in posterior.index}, DAWID_SKENE)

    def quality_metrics(self, round_index: int) -> dict[str, float]:
        """Agreement among annotators (this round's examples, and all so far), per-annotator agreement with
        the consensus and accuracy against the label column when the pool has one; flagged annotators."""
        if len(self.ledger.annotators(ROUTINE)) < 2:  # one annotator (an oracle): nothing to agree on
            return {}
        rows = self.ledger.current_answers(ROUTINE)
        answers = pd.DataFrame(rows, columns=["example_id", "annotator", "label", "round", "purpose"])
        consensus = {**self.ledger.labels("eval"), **self.ledger.labels()}
        if self._truth is None and self.ws.splits.pool.labels is not None:
            self._truth = dict(zip(self.ws.splits.pool.ids, self.ws.splits.pool.labels, strict=True))
        truth = self._truth
        flag_below = self.config.quality.flag_below
        # judged against Dawid-Skene's labels where that is the consensus (it weighs votes by reliability); not
        # against the specialists': their tasks were chosen for disagreeing, which would bias agreement down
        decided = {str(e["id"]): str(e["label"]) for e in self.ledger.examples() if e["label_method"] == DAWID_SKENE}
        judged_on = self.config.quality.flag_min_tasks
        overall = agreement_report(answers, consensus, self.ws.classes, truth, flag_below,
                                   flag_min_items=judged_on, decided=decided)
        this_round = agreement_report(answers[answers["round"] == round_index], consensus, self.ws.classes, truth,
                                      flag_below, flag_min_items=judged_on, decided=decided)
        newly = [a for a in overall.flagged if a not in self._flagged]
        if newly:
            log.warning("flagged: %s agree(s) with the consensus less than %.0f%% of the time (quality.flag_below);"
                        " see annotator/*/agreement in MLflow", ", ".join(newly), 100 * flag_below)
            self._flagged.update(newly)
        if not overall.overall.get("overlapped_examples"):
            # one answer per task: nothing to agree on, only each annotator's workload (and accuracy, if known)
            names = metric_names(overall.annotators)
            return {f"annotator/{names[a]}/{k}": v for a, stats in overall.annotators.items()
                    for k, v in stats.items() if k in ("answers", "accuracy")}
        metrics = as_metrics(overall, "agreement/overall") | as_metrics(this_round, "agreement/round", False)
        if self.specialists is not None:
            adjudication = self.ledger.adjudication_counts()
            metrics |= {"consensus/escalated": float(sum(adjudication.values())),
                        "consensus/adjudicated": float(adjudication.get("expert", 0))}
        return metrics

    def held_out(self, eval_labels: dict[str, str]) -> tuple[Any, np.ndarray] | None:
        """The rows metrics are measured on: the annotated evaluation set if there is one, else the test split."""
        if eval_labels:
            return self.ws.x_pool[self.ws.rows(list(eval_labels))], np.array(list(eval_labels.values()))
        test = self.ws.splits.test
        if test is not None and self.ws.x_test is not None:
            return self.ws.x_test, test.labels
        return None

    def decisions(self, round_index: int, model: FittedModel, labels: dict[str, str],
                  metrics: dict[str, float]) -> dict[str, float]:
        """Routing on every held-out labeled row (where routing is set up), stop-set agreement with the previous
        model, break-even (where a value per accuracy point or the break-even rule is set)."""
        out: dict[str, float] = {}
        if self.routing_on() and (calibration := self.routing_rows()) is not None:
            out |= routing_metrics(self.config, model, *calibration)
        current = model.predict_proba(self.ws.x_pool[self.stop_rows]).argmax(axis=1)
        previous = next((p for r in range(round_index - 1, -1, -1)
                         if (p := self.ledger.get_meta(f"stop_set_predictions/{r}")) is not None), None)
        kappa = stop_set_kappa(None if previous is None else json.loads(previous), current)
        if kappa is not None:
            out["stop_kappa"] = kappa
        # kept per round, so re-evaluating a round after a crash compares with the right predecessor
        self.ledger.set_meta(f"stop_set_predictions/{round_index}", json.dumps(current.tolist()))
        if "accuracy" in metrics and (self.config.stopping.rule == "break_even"
                                      or self.config.costs.per_accuracy_point is not None):
            curve = [(float(r.n_labels), r.metrics["accuracy"]) for r in self.ledger.rounds()
                     if r.n_labels and "accuracy" in r.metrics]
            out |= break_even_metrics(self.config, [*curve, (float(len(labels)), metrics["accuracy"])])
        return out

    def routing_rows(self) -> tuple[Any, np.ndarray] | None:
        """What the round's routing is calibrated on: every label the campaign paid for that the model did not train
        on. The evaluation labels, the reviewed routed items the model did not train on (none: `model_for` trains
        on every reviewed item), and the test split; None if there is none of them."""
        eval_labels = self.ledger.labels(purpose="eval")
        trained = self._cached[2] if self._cached is not None else frozenset()
        reviewed = [(d, label) for i, d, label in self.ledger.routed_labels() if i not in trained]
        parts: list[Any] = []
        labels: list[Any] = []
        if eval_labels:
            parts.append(self.ws.x_pool[self.ws.rows(list(eval_labels))])
            labels += list(eval_labels.values())
        if reviewed:
            parts.append(self.ws.featurizer.transform(pd.DataFrame([json.loads(d) for d, _ in reviewed])))
            labels += [label for _, label in reviewed]
        test = self.ws.splits.test
        if test is not None and self.ws.x_test is not None:
            parts.append(self.ws.x_test)
            labels += list(test.labels)
        return (_stack(parts), np.array(labels, dtype=object)) if parts else None

    def routing_on(self) -> bool:
        """Whether routing means something for this run: `routing` or `costs` set in the config (other than the
        defaults), or traffic routed through the run (`al-loop route`)."""
        config = self.config
        return (config.routing != RoutingConfig() or config.costs != CostsConfig()
                or bool(self.ledger.routed_labels()) or bool(self.ledger.routed_pending()))

    def log(self, round_index: int) -> None:
        record = next(r for r in self.ledger.rounds() if r.round == round_index)
        if record.n_labels:  # the evaluation round trains nothing: no point on the learning curve
            self.tracker.log_step(self.run_id, int(record.n_labels), record.metrics)
        self.ledger.mark_logged(round_index)
        if self.on_round is not None:
            self.on_round(record)

    def model_for(self, labels: dict[str, str]) -> FittedModel:
        """The model fitted on these labels (cached: the model that evaluated a round also picks the next)."""
        reviewed = self.ledger.routed_labels()  # people's answers to routed traffic train the model too
        key = (len(labels), hash(tuple(labels.items())), hash(tuple(reviewed)))
        if self._cached is None or self._cached[0] != key:
            previous = self._cached[1] if self._cached is not None and self.config.model.warm_start else None
            model = fit_labeled(self.template, self.ws, labels, reviewed, previous=previous)
            self._cached = (key, model, frozenset(i for i, _, _ in reviewed))  # the routed items it trained on
        return self._cached[1]

    # -- the end ----------------------------------------------------------------------------------

    def finish(self, reason: str, run_dir: Path, reference: Reference | None = None) -> None:
        """Plot the learning curve, log the summary metrics, log (and register) the final model and the audit table,
        and close the MLflow run."""
        rounds = [r for r in self.ledger.rounds() if "accuracy" in r.metrics]
        labels = self.ledger.labels()
        # the labels' content, not only their count: a label corrected after the finish gives another key, so the
        # final model is logged again (and a model logged before a crash is reused only for the same labels)
        digest = hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
        finished_key = f"{len(labels)}:{len(rounds)}:{digest}"
        if self.ledger.get_meta("finished") != finished_key:
            if rounds:
                png = plot_learning_curve([r.n_labels for r in rounds], [r.metrics["accuracy"] for r in rounds],
                                          run_dir / "learning_curve.png", f"{self.config.run_name}")
                self.tracker.log_artifact(self.run_id, png)
                self.log_summary(rounds, reference or reference_for(self.config, self.ws))
            with blas_limit(self.config.compute.blas_threads):  # the final fit, and the predictions of logging it
                model = self.model_for(labels) if labels else None
                if self.config.tracking.log_model and model is not None and hasattr(model.estimator, "fit"):
                    pipeline = Pipeline([("features", self.ws.featurizer), ("model", model.estimator)])
                    self.log_final_model(pipeline, finished_key, len(labels))
            self.log_audit()
            last = rounds[-1].metrics if rounds else {}
            flagged = [key.split("/")[1] for key, value in last.items()  # the metric names of the annotators
                       if key.startswith("annotator/") and key.endswith("/flagged") and value == 1.0]
            self.tracker.set_tags(self.run_id, {"stopped_because": reason, **(
                {"flagged_annotators": ", ".join(flagged)} if flagged else {})})
            self.ledger.set_meta("finished", finished_key)
        self.tracker.end_run(self.run_id)

    def log_summary(self, rounds: list[RoundRecord], reference: Reference) -> None:
        """AUBC, full-pool accuracy and labels to each target, at the last step: one value per run, so the runs
        table can sort and compare runs by them."""
        summary = run_summary([r.n_labels for r in rounds], [r.metrics["accuracy"] for r in rounds],
                              reference.targets, reference.full_accuracy, reference.budget)
        self.tracker.log_metrics(self.run_id, summary, step=int(rounds[-1].n_labels or 0))

    def log_final_model(self, pipeline: Pipeline, finished_key: str, n_labels: int) -> None:
        """Log the final model once, even across a crash, record which one (id and content hash), and register it.

        The intent is written to the ledger first; a model this run already logged with the same key (the process
        died after logging it, before the ledger said `finished`) is reused instead of logged again, and so is its
        registered version. `al-loop route` loads only the recorded model, after checking its hash; the record also
        says what the model trained on (its label count, and the reviewed routed items), so that `route` never
        calibrates on a row the model saw."""
        key = f"{self.run_id}/{finished_key}"
        self.ledger.set_meta(FINAL_MODEL_INTENT, key)
        example = self.ws.splits.pool.inputs.head(EXAMPLE_ROWS).reset_index(drop=True)
        model_id = self.tracker.find_model(self.run_id, key) or self.tracker.log_model(
            self.run_id, pipeline, key=key, input_example=example)
        record = {"run_id": self.run_id, "model_id": model_id, "key": key,
                  "sha256": self.tracker.model_digest(model_id), "labels": n_labels,
                  "routed_trained": sorted(self._cached[2]) if self._cached is not None else []}
        self.ledger.set_meta(FINAL_MODEL, json.dumps(record))
        if self.register:
            name = registered_model_name(self.config.tracking.experiment)
            try:
                version = self.tracker.register_model(model_id, self.run_id, name, model_alias(self.config.run_name))
            except MlflowException as error:  # e.g. a tracking server without a model registry: route by run id
                log.warning("the final model was logged but not registered as %r (%s); `al-loop route` can still "
                            "use it by run (--run-id)", name, redact(str(error).split("\n")[0])[:300])
                return
            record["registered"] = f"{version.name}/{version.version}"
            self.ledger.set_meta(FINAL_MODEL, json.dumps(record))

    def log_audit(self) -> None:
        """The audit table (`al-loop audit`) as the run's artifact `audit/labels.csv`, replaced at each finish."""
        with tempfile.TemporaryDirectory() as folder:
            path = export_audit(self.config, Path(folder) / AUDIT_ARTIFACT.split("/")[-1]).path
            self.tracker.log_artifact(self.run_id, path, AUDIT_ARTIFACT.rsplit("/", 1)[0])


def _stack(parts: list[Any]) -> Any:
    """Feature rows stacked in order (sparse stays sparse)."""
    if len(parts) == 1:
        return parts[0]
    return sparse.vstack(parts).tocsr() if any(sparse.issparse(p) for p in parts) else np.vstack(parts)


class _LedgerState:
    """A strategy's durable memory: string values under one key prefix of the ledger's meta table."""

    def __init__(self, ledger: Ledger, prefix: str) -> None:
        self._ledger = ledger
        self._prefix = prefix

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self._ledger.get_meta(self._prefix + key)
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        value = self._ledger.get_meta(self._prefix + key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: str) -> None:
        self._ledger.set_meta(self._prefix + key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._ledger.get_meta(self._prefix + key) is not None
