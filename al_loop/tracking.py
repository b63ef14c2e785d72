"""MLflow: one run per loop, per-round metrics at step = labels used, the final model and plots.

Everything goes through an explicit `MlflowClient` on the configured tracking URI (no global active
run), so a loop, a comparison and a notebook never log somewhere surprising.

A logged model is loaded back only through `load_verified_model`: the files must have the SHA-256 the loop
recorded in its ledger, and a skops file is read with al-loop's own allow-list of types (never the list stored
in the model's MLmodel file), so a model planted in the store cannot run code.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from al_loop.errors import AlLoopError
from al_loop.ledger import Ledger

PARENT_TAG = "mlflow.parentRunId"
MODEL_KEY_TAG = "al_loop.model_key"  # on a logged model: which finished state of which run it is
_MAX_PARAMS_PER_BATCH = 100
_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")  # classes skops may rebuild (al-loop's allow-list)
_NOT_CONTENT = {"registered_model_meta"}  # written by MLflow when a model is registered, not by the loop


class ModelRefused(AlLoopError):
    """A logged model is not the one al-loop recorded, or its file needs types al-loop does not trust."""


class Tracker:
    """Logs loop runs to one MLflow experiment."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._experiment_id(experiment)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=_artifact_location(self.tracking_uri))
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
        """Log one round's metrics at `step`, unless that step is already there (a resumed round)."""
        if not metrics:
            return
        first = next(iter(metrics))
        if any(m.step == step for m in self.client.get_metric_history(run_id, first)):
            return
        timestamp = mlflow.utils.time.get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), timestamp, step) for k, v in metrics.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        timestamp = mlflow.utils.time.get_current_time_millis()
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), timestamp, 0) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path=folder)

    def log_model(self, run_id: str, model: Any, name: str = "model", key: str | None = None) -> str:
        """Log a scikit-learn model (with its featurizer) in the MLflow sklearn flavor; return its model id.
        `key` is kept as the model's tag MODEL_KEY_TAG, so `find_model` can tell it was logged already."""
        import skops.io

        mlflow.set_tracking_uri(self.tracking_uri)
        # skops refuses types it does not know (e.g. CalibratedClassifierCV's internals); trust the classes of
        # scikit-learn, numpy and scipy, which we built ourselves. Anything else falls back to cloudpickle.
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        ours = all(trusted_type(t) for t in untrusted)
        options = ({"serialization_format": "skops", "skops_trusted_types": untrusted or None} if ours
                   else {"serialization_format": "cloudpickle"})
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.sklearn.log_model(model, name=name, pip_requirements=_requirements(),
                                            tags={MODEL_KEY_TAG: key} if key else None, **options)
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
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_id}", dst_path=str(folder),
                                                            tracking_uri=self.tracking_uri))
        except (MlflowException, OSError) as error:
            raise ModelRefused(f"cannot read the MLflow model {model_id} from the tracking store "
                               f"({type(error).__name__}); was the store moved or cleaned?") from None

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


def trusted_type(name: str) -> bool:
    """al-loop's allow-list for skops: a class (not a function) of scikit-learn, numpy or scipy."""
    module, _, attribute = name.rpartition(".")
    if module.split(".")[0] not in _TRUSTED_PACKAGES:
        return False
    try:
        return isinstance(getattr(importlib.import_module(module), attribute), type)
    except (ImportError, AttributeError, ValueError):
        return False


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
