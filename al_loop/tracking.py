"""MLflow: one run per loop, per-round metrics at step = labels used, the final model and plots.

Everything goes through an explicit `MlflowClient` on the configured tracking URI (no global active
run), so a loop, a comparison and a notebook never log somewhere surprising.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from al_loop.ledger import Ledger

PARENT_TAG = "mlflow.parentRunId"
_MAX_PARAMS_PER_BATCH = 100


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

    def log_model(self, run_id: str, model: Any, name: str = "model") -> None:
        """Log a scikit-learn model (with its featurizer) in the MLflow sklearn flavor."""
        import skops.io

        mlflow.set_tracking_uri(self.tracking_uri)
        # skops refuses types it does not know (e.g. CalibratedClassifierCV's internals); trust those from
        # scikit-learn, numpy and scipy, which we built ourselves. Anything else falls back to cloudpickle.
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        ours = all(t.split(".")[0] in ("sklearn", "numpy", "scipy") for t in untrusted)
        options = ({"serialization_format": "skops", "skops_trusted_types": untrusted or None} if ours
                   else {"serialization_format": "cloudpickle"})
        with mlflow.start_run(run_id=run_id, nested=True):
            mlflow.sklearn.log_model(model, name=name, pip_requirements=_requirements(), **options)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


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
