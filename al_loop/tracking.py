"""MLflow: one run per loop, per-round metrics at step = labels used, the final model and plots.

Everything goes through an explicit `MlflowClient` on the configured tracking URI (no global active
run), so a loop, a comparison and a notebook never log somewhere surprising.

A logged model is loaded back only through `load_verified_model`: the files must have the SHA-256 the loop
recorded in its ledger, and a skops file is read with al-loop's own allow-list of types (never the list stored
in the model's MLmodel file), so a model planted in the store cannot run code.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import importlib
import os
import pickle
import re
import socket
import sqlite3
import tempfile
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow
import pandas as pd
import yaml
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from al_loop.errors import AlLoopError, BrokenStateError, ServiceError, storage_error
from al_loop.ledger import Ledger
from al_loop.redact import redact, redact_url

PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment in its GenAI view (traces) unless this tag says it holds model training runs
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
MODEL_KEY_TAG = "al_loop.model_key"  # on a logged model: which finished state of which run it is
PREDICT_METHOD = "predict_proba"  # the pyfunc method of a logged model: class probabilities on raw rows
CONTEXT_TAG = "mlflow.data.context"  # MLflow's input tag for what a dataset was used for (training, test)
LATEST = "latest"  # MLflow's reserved alias: the newest version of a registered model
_MAX_PARAMS_PER_BATCH = 100
_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")  # classes skops may rebuild (al-loop's allow-list)
_NOT_CONTENT = {"registered_model_meta"}  # written by MLflow when a model is registered, not by the loop


class ModelRefused(AlLoopError):
    """A logged model is not the one al-loop recorded, or its file needs types al-loop does not trust."""


@dataclass(frozen=True)
class RunInput:
    """A dataset a run reads, logged as a run input: its rows, and what MLflow shows of it."""

    name: str
    context: str  # "training" (the pool), "test"
    frame: pd.DataFrame
    source: str  # a file path, or the code that made the data (a bundled dataset)
    targets: str | None = None  # the label column, when the rows have labels


@dataclass(frozen=True)
class RegisteredVersion:
    """A version of a registered model and the logged model it was registered from."""

    name: str
    version: str
    model_id: str | None


class Tracker:
    """Logs loop runs to one MLflow experiment."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self._last_step: dict[tuple[str, str], int] = {}  # (run, metric) -> highest step in the store, as known
        check_store(tracking_uri)
        _follow_a_moved_store(tracking_uri)
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._experiment_id(experiment)
        except AlLoopError:
            raise
        except Exception as error:  # MLflow and SQLAlchemy raise many types; all mean "this store is unusable"
            raise _store_error(tracking_uri, error) from error

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            if EXPERIMENT_KIND_TAG not in found.tags:  # an experiment made elsewhere: the UI's training view too
                self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_location(self.tracking_uri),
                                                 tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        except MlflowException:  # created meanwhile by another process
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_run(self, run_name: str, tags: dict[str, str], params: dict[str, str],
                  parent_run_id: str | None = None) -> str:
        """Create a run (a child of `parent_run_id` if given) with its tags and params."""
        all_tags = dict(tags)
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        items = [Param(k, v[:6000]) for k, v in sorted(params.items())]
        for start in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start:start + _MAX_PARAMS_PER_BATCH])
        return run_id

    def parent_run(self, marker: Path, run_name: str, tags: dict[str, str], params: dict[str, str]) -> str:
        """The parent run whose id is kept in the `marker` file (resumed), or a new one recorded there."""
        if marker.exists():
            run_id = marker.read_text().strip()
            try:
                self.client.get_run(run_id)
                return run_id
            except MlflowException:  # the store was wiped: start a new parent
                pass
        run_id = self.start_run(run_name, tags, params)
        marker.write_text(run_id)
        return run_id

    def run_for_ledger(self, ledger: Ledger, run_name: str, tags: dict[str, str], params: dict[str, str],
                       parent_run_id: str | None = None) -> str:
        """The run recorded in the ledger (resumed), or a new one recorded there at once."""
        run_id = ledger.get_meta("mlflow_run_id")
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
            except MlflowException:
                run = None
            if run is not None:
                if run.info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
                return run_id
        run_id = self.start_run(run_name, tags, params, parent_run_id)
        ledger.set_meta("mlflow_run_id", run_id)
        return run_id

    def log_step(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """Log one round's metrics at `step`, unless that step is already there (a resumed round).

        The store's history is read only for a step at or below the highest one this tracker knows of: a loop holds
        its ledger's lock while it logs, so a later round's step cannot be in the store yet, and reading the whole
        history every round made logging grow with the rounds."""
        if not metrics:
            return
        first = next(iter(metrics))
        known = self._last_step.get((run_id, first))
        if known is None or step <= known:
            steps = {m.step for m in self.client.get_metric_history(run_id, first)}
            self._last_step[(run_id, first)] = max(steps, default=step - 1)
            if step in steps:
                return
        timestamp = mlflow.utils.time.get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()])
        self._last_step[(run_id, first)] = max(step, self._last_step.get((run_id, first), step))

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        timestamp = mlflow.utils.time.get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()])

    def child_runs(self, parent_run_id: str) -> list[Any]:
        """The runs whose parent is `parent_run_id` (MLflow `Run` objects), in one search."""
        experiment = self.client.get_run(parent_run_id).info.experiment_id
        return self.client.search_runs([experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                       max_results=50000)

    def metric_curve(self, run_id: str, key: str) -> tuple[list[float], list[float]]:
        """A metric's value per step (the latest logged at each step), steps ascending."""
        latest: dict[int, tuple[int, float]] = {}
        for m in self.client.get_metric_history(run_id, key):
            if m.step not in latest or m.timestamp >= latest[m.step][0]:
                latest[m.step] = (m.timestamp, m.value)
        steps = sorted(latest)
        return [float(s) for s in steps], [latest[s][1] for s in steps]

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path=folder)

    def log_model(self, run_id: str, model: Any, name: str = "model", key: str | None = None,
                  input_example: pd.DataFrame | None = None) -> str:
        """Log a scikit-learn model (with its featurizer) in the MLflow sklearn flavor; return its model id.
        `key` is kept as the model's tag MODEL_KEY_TAG, so `find_model` can tell it was logged already. The pyfunc
        method is `predict_proba`; with `input_example` (a few raw input rows) the model also gets that example and
        a signature: the example's columns in, one probability per class out."""
        import skops.io
        from mlflow.models import infer_signature

        mlflow.set_tracking_uri(self.tracking_uri)
        model = _lean_copy(model)
        # skops refuses types it does not know (e.g. CalibratedClassifierCV's internals); trust the classes of
        # scikit-learn, numpy and scipy, which we built ourselves. Anything else falls back to cloudpickle.
        # The probe writes a skeleton (same classes, a one-term vocabulary): the types are those of the full model,
        # at a fraction of writing it twice (MLflow writes the full model once, below).
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(_lean_copy(model, skeleton=True)))
        ours = all(trusted_type(t) for t in untrusted)
        options = ({"serialization_format": "skops", "skops_trusted_types": untrusted or None} if ours
                   else {"serialization_format": "cloudpickle"})
        signature = (None if input_example is None else
                     infer_signature(input_example, getattr(model, PREDICT_METHOD)(input_example)))
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.sklearn.log_model(model, name=name, pip_requirements=_requirements(),
                                            tags={MODEL_KEY_TAG: key} if key else None, signature=signature,
                                            input_example=input_example, pyfunc_predict_fn=PREDICT_METHOD,
                                            **options)
        return info.model_id

    def find_model(self, run_id: str, key: str) -> str | None:
        """The id of a complete model this run logged with `key` (e.g. before a crash), or None."""
        experiment = self.client.get_run(run_id).info.experiment_id
        found = self.client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
        ready = [m for m in found if m.tags.get(MODEL_KEY_TAG) == key and str(m.status).endswith("READY")]
        return min(ready, key=lambda m: m.creation_timestamp).model_id if ready else None

    def model_digest(self, model_id: str) -> str:
        """SHA-256 of a logged model's files (names and bytes), as stored."""
        with tempfile.TemporaryDirectory() as folder:
            return _digest(self._download(model_id, Path(folder)))

    def load_verified_model(self, model_id: str, sha256: str) -> Any:
        """Load a logged model if its files have the recorded SHA-256; skops files with al-loop's allow-list.
        Raises ModelRefused otherwise (nothing of the model is unpickled before the check)."""
        with tempfile.TemporaryDirectory() as folder:
            local = self._download(model_id, Path(folder))
            if _digest(local) != sha256:
                raise ModelRefused(f"the MLflow model {model_id} is not the model al-loop logged (its files' SHA-256 "
                                   "differs from the one recorded in the ledger): it was modified or replaced in the "
                                   "tracking store, and was not loaded. Log a new model: extend loop.budget and run "
                                   "the loop again")
            return _load_sklearn_flavor(local, model_id)

    def _download(self, model_id: str, folder: Path) -> Path:
        # an internal copy (to hash or load the model): no progress bar on the user's console, unless they asked
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_id}", dst_path=str(folder),
                                                            tracking_uri=self.tracking_uri))
        except (MlflowException, OSError) as error:
            raise ModelRefused(f"cannot read the MLflow model {model_id} from the tracking store "
                               f"({type(error).__name__}); was the store moved or cleaned?") from None

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def log_inputs(self, run_id: str, inputs: list[RunInput]) -> int:
        """Log datasets as the run's inputs, each with a digest of its content, unless the run has that dataset
        already (a resumed run); returns how many were logged."""
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        run = self.client.get_run(run_id)
        have = {(d.dataset.name, d.dataset.digest) for d in (run.inputs.dataset_inputs if run.inputs else [])}
        new = []
        for item in inputs:
            digest = frame_digest(item.frame)
            if (item.name, digest) in have:
                continue
            if Path(item.source).is_absolute():
                with warnings.catch_warnings():  # MLflow registers its local file source twice, and says so
                    warnings.simplefilter("ignore", UserWarning)
                    source = resolve_dataset_source(item.source)
            else:
                source = CodeDatasetSource({"al_loop.dataset": item.source})
            dataset = mlflow.data.from_pandas(item.frame, source=source, targets=item.targets, name=item.name,
                                              digest=digest)
            new.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(CONTEXT_TAG, item.context)]))
        if new:
            try:
                self.client.log_inputs(run_id, datasets=new)
            except MlflowException:  # another run of the experiment stored the same dataset at that moment (a
                self.client.log_inputs(run_id, datasets=new)  # unique key): it is there now, and is linked
        return len(new)

    def register_model(self, model_id: str, run_id: str, name: str, alias: str | None = None) -> RegisteredVersion:
        """Register a logged model as a version of `name` (created if new), once: the version this run registered
        from that model before (e.g. before a crash) is reused. `name@latest` then names it (MLflow's built-in
        alias for the newest version), and `name@alias` too if an alias is given."""
        mlflow.set_tracking_uri(self.tracking_uri)  # MLflow's sqlite registry looks the logged model up there
        source = f"models:/{model_id}"
        try:
            self.client.create_registered_model(name, description="Final models of al-loop runs of the experiment "
                                                                   "of the same name")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        found = [v for v in self.client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")
                 if v.source == source]
        version = (min(found, key=lambda v: int(v.version)) if found else
                   self.client.create_model_version(name, source, run_id=run_id, model_id=model_id))
        if alias:
            self.client.set_registered_model_alias(name, alias, version.version)
        return RegisteredVersion(name, str(version.version), model_id)

    def resolve_registered(self, reference: str) -> RegisteredVersion:
        """The registered model version that `NAME@ALIAS` or `NAME/VERSION` (optionally `models:/...`) names, and
        the id of the logged model it was registered from (None if it was not registered from one).
        Raises AlLoopError for an unknown name, alias or version, naming what there is."""
        name, alias, number = parse_model_reference(reference)
        registered = self._registered(name)
        try:
            version = (self.client.get_model_version_by_alias(name, alias) if alias is not None
                       else self.client.get_model_version(name, str(number)))
        except MlflowException:
            aliases = ", ".join(f"{a} (version {v})" for a, v in sorted(registered.aliases.items()))
            what = f"no alias {alias!r}" if alias is not None else f"no version {number}"
            raise AlLoopError(f"the registered model {name!r} has {what} in {shown_uri(self.tracking_uri)}; its "
                              f"aliases: {aliases or 'none but latest'}. Name one of them, e.g. --model "
                              f"{name}@{LATEST}") from None
        model_id = getattr(version, "model_id", None) or _model_id_of(str(version.source or ""))
        return RegisteredVersion(name, str(version.version), model_id)

    def _registered(self, name: str) -> Any:
        try:
            return self.client.get_registered_model(name)
        except MlflowException:
            known = sorted(m.name for m in self.client.search_registered_models(max_results=20))
            raise AlLoopError(f"there is no registered model {name!r} in {shown_uri(self.tracking_uri)}; registered "
                              f"models: {', '.join(known) or 'none'}. A loop registers its final model when it "
                              "finishes, under its tracking.experiment ('/', ':' and quotes as '-')") from None


def registered_model_name(experiment: str) -> str:
    """The registered model of an experiment: its name, with what MLflow refuses in a model name ('/', ':')
    and quotes replaced by '-'."""
    return re.sub(r"[/:'\"\\]+", "-", experiment).strip("-") or "al-loop"


def model_alias(run_name: str) -> str | None:
    """An alias for a run's final model: the run name with what MLflow refuses in an alias replaced by '-'
    (None for names MLflow reserves: `latest` and version aliases such as `v3`)."""
    alias = re.sub(r"[^\w-]+", "-", run_name).strip("-")
    return None if not alias or alias.lower() == LATEST or re.fullmatch(r"[vV]\d+", alias) else alias


def parse_model_reference(reference: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) of `NAME@ALIAS`, `NAME/VERSION` or `NAME` (= `NAME@latest`), with or without
    `models:/`. Raises AlLoopError for anything else."""
    text = reference.strip().removeprefix("models:/").strip("/")
    name, alias, number = text, None, None
    if "@" in text:
        name, _, alias = text.rpartition("@")
    elif "/" in text:
        name, _, suffix = text.rpartition("/")
        if not suffix.isdigit():
            name = ""
        number = int(suffix) if suffix.isdigit() else None
    else:
        alias = LATEST
    if not name or "/" in name or ":" in name or (not alias and number is None):
        raise AlLoopError(f"--model {reference!r} does not name a registered model version: give NAME@ALIAS "
                          "(e.g. al-loop@latest), NAME/VERSION or models:/NAME@ALIAS")
    return name, alias, number


def _model_id_of(source: str) -> str | None:
    """The logged model id of a `models:/<model_id>` source (what al-loop registers), else None."""
    rest = source.removeprefix("models:/") if source.startswith("models:/") else ""
    return rest if rest and "/" not in rest and "@" not in rest else None


def frame_digest(frame: pd.DataFrame) -> str:
    """A digest of a table's content (every row and column, names and types): the same data, the same digest."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(str(len(frame)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:32]  # MLflow keeps at most 36 characters


def trusted_type(name: str) -> bool:
    """al-loop's allow-list for skops: a class (not a function) of scikit-learn, numpy or scipy."""
    module, _, attribute = name.rpartition(".")
    if module.split(".")[0] not in _TRUSTED_PACKAGES:
        return False
    try:
        return isinstance(getattr(importlib.import_module(module), attribute), type)
    except (ImportError, AttributeError, ValueError):
        return False


def _lean_copy(model: Any, skeleton: bool = False) -> Any:
    """A copy of a fitted model that skops writes quickly, predicting the same: a text vectorizer's vocabulary maps
    terms to Python ints (skops writes each numpy int as a file of its own: seconds for a few thousand terms).
    With `skeleton`, each vocabulary keeps one term: the copy holds the same types, for a cheap type probe."""
    from sklearn.base import BaseEstimator

    model = copy.deepcopy(model)
    seen: set[int] = set()

    def visit(item: Any) -> None:
        if id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, list | tuple):
            for part in item:
                visit(part)
        elif isinstance(item, BaseEstimator):
            vocabulary = getattr(item, "vocabulary_", None)
            if isinstance(vocabulary, dict):
                terms = list(vocabulary.items())[:1] if skeleton else vocabulary.items()
                item.vocabulary_ = {term: int(index) for term, index in terms}
            for value in vars(item).values():
                visit(value)

    visit(model)
    return model


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _NOT_CONTENT):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _load_sklearn_flavor(folder: Path, model_id: str) -> Any:
    """The model of a verified MLflow sklearn-flavor folder, read without MLflow's loader."""
    import skops.io

    flavor = (yaml.safe_load((folder / "MLmodel").read_text()) or {}).get("flavors", {}).get("sklearn", {})
    path = (folder / str(flavor.get("pickled_model", ""))).resolve()
    if not path.is_file() or folder.resolve() not in path.parents:
        raise ModelRefused(f"the MLflow model {model_id} has no scikit-learn model file")
    serialization = flavor.get("serialization_format")
    if serialization == "skops":
        untrusted = skops.io.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not trusted_type(t)]
        if refused:
            raise ModelRefused(f"the MLflow model {model_id} needs types al-loop does not trust "
                               f"({', '.join(refused[:5])}); it was not loaded")
        return skops.io.load(path, trusted=untrusted)
    if serialization in ("cloudpickle", "pickle"):  # the bytes the loop logged (hash checked by the caller)
        with open(path, "rb") as handle:
            return pickle.load(handle)  # cloudpickle writes standard pickles
    raise ModelRefused(f"the MLflow model {model_id} uses a serialization al-loop does not load ({serialization})")


_REACH_SECONDS = 5.0
# MLflow retries a failing HTTP request 7 times with exponential backoff (minutes of silence); fewer, unless set
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def shown_uri(tracking_uri: str) -> str:
    """A tracking URI for messages: a store's path, or the URI without credentials (al_loop.redact, the one
    place that decides what may be shown)."""
    if tracking_uri.startswith("sqlite:"):
        return _sqlite_path(tracking_uri) or "sqlite"
    return redact_url(tracking_uri)


def _sqlite_path(tracking_uri: str) -> str | None:
    return tracking_uri.removeprefix("sqlite:///") if tracking_uri.startswith("sqlite:///") else None


def check_store(tracking_uri: str) -> None:
    """Fail fast, before anything is written, if the MLflow store cannot be used: a tracking server that does not
    accept connections (ServiceError), or a sqlite store that is not a whole database (BrokenStateError)."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        for name, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname or "localhost", port), timeout=_REACH_SECONDS):
                pass
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise ServiceError(f"the MLflow tracking server {shown_uri(tracking_uri)} (tracking.uri) is unreachable: "
                               f"{reason}. Start it (e.g. mlflow server --host 127.0.0.1 --port {port}), or fix "
                               "tracking.uri (remove it to log to a store under output_dir)") from None
        return
    path = _sqlite_path(tracking_uri)
    if path is not None and Path(path).is_file() and (problem := sqlite_file_problem(Path(path))):
        raise _broken_store(path, problem)


def sqlite_file_problem(path: Path) -> str | None:
    """What makes a non-empty file not a whole SQLite database, read from its 100-byte header (cheap, whatever the
    size): another format, or fewer bytes than the pages the header counts (truncated); None if it looks whole."""
    size = path.stat().st_size
    if size == 0:
        return None  # SQLite makes an empty file a new database
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return "not a SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and size < pages * page_size:  # the page count is valid: compare
        return f"truncated: {size} bytes of {pages * page_size}"
    return None


def _broken_store(path: str, problem: str) -> BrokenStateError:
    return BrokenStateError(
        f"the MLflow store {path} is damaged ({problem}): it is not a whole SQLite database (truncated or "
        f"overwritten). Restore it from a backup, or move it aside (mv {path} {path}.broken) and re-run: the "
        "ledger keeps every label, and the run logs into a new MLflow store; or set tracking.uri")


def _store_error(tracking_uri: str, error: Exception) -> AlLoopError:
    """The AlLoopError for a failure to open the MLflow store or its experiment."""
    if isinstance(error, OSError) and (translated := storage_error(error)):
        return translated
    text = redact(str(error).split("\n")[0])  # never credentials of a URI (al_loop.redact)
    path = _sqlite_path(tracking_uri)
    if path is not None:
        if "disk is full" in text or "readonly" in text:
            code = errno.ENOSPC if "full" in text else errno.EROFS
            return storage_error(OSError(code, text, path)) or _broken_store(path, text)
        return _broken_store(path, text)
    return ServiceError(f"the MLflow tracking store {shown_uri(tracking_uri)} (tracking.uri) cannot be used: "
                        f"{text[:300]}. Check that it is an MLflow tracking server or store, or fix tracking.uri")


def _follow_a_moved_store(tracking_uri: str) -> None:
    """A sqlite store moved with its output folder keeps, in its experiments, runs, logged models and registered
    model versions, the old absolute folder of the artifacts that al-loop put beside it (`.../mlartifacts`); point
    them at the folder beside it now, so that a resumed run logs there, not into the old place, and earlier artifacts
    (moved along) are found again, also through `models:/NAME@ALIAS`.

    MLflow allows nothing relative here: it resolves a relative artifact location against the working directory
    when the experiment is created, and `mlflow-artifacts:` URIs resolve only through a tracking server (HTTP)."""
    path, here = _sqlite_path(tracking_uri), _artifact_location(tracking_uri)
    if path is None or here is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return
    try:
        with closing(sqlite3.connect(path, timeout=30)) as db, db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "experiments" not in tables:
                return
            moved = [old for (old,) in db.execute("SELECT DISTINCT artifact_location FROM experiments")
                     if old and old != here and old.startswith("file://") and old.endswith("/mlartifacts")]
            for old in moved:
                db.execute("UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (here, old))
                for table, column in (("runs", "artifact_uri"), ("logged_models", "artifact_location"),
                                      ("model_versions", "storage_location"), ("model_versions", "source")):
                    if table in tables:
                        db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                   f"WHERE substr({column}, 1, ?) = ?", (here, len(old) + 1, len(old) + 1, old + "/"))
    except sqlite3.Error:
        return  # MLflow reports on the store itself


_LOST_SERVER = ("Max retries exceeded", "Connection refused", "Failed to establish a new connection", "timed out")


def mlflow_error(error: Exception) -> AlLoopError | None:
    """The AlLoopError for an MLflow failure while a command runs (after the store was checked): the tracking server
    stopped answering (ServiceError), or the disk under the store is full (StorageError); None for anything else."""
    if not isinstance(error, MlflowException):
        return None
    text = redact(str(error).split("\n")[0])[:400]  # never credentials of a URI (al_loop.redact)
    if "disk is full" in text or "No space left" in text:
        return storage_error(OSError(errno.ENOSPC, text))
    if any(sign in text for sign in _LOST_SERVER):
        return ServiceError(f"the MLflow tracking server stopped answering ({text}). Check that it runs and is "
                            "reachable, then re-run the same command: the ledger keeps every label, and the run "
                            "goes on logging into the same MLflow run")
    return None


def _artifact_location(tracking_uri: str) -> str | None:
    """For a sqlite store, artifacts go beside the database (MLflow's default is ./mlruns in the working
    directory, which would put them in whatever folder the command ran from). Other stores keep their default."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return None


def _requirements() -> list[str]:
    """Pinned requirements of the logged model, given explicitly to skip MLflow's slow inference."""
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"]
