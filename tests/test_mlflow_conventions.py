"""MLflow conventions (issue 13, item 6): the final model with a signature, an input example and `predict_proba` as
its pyfunc method; the pool and the test split as run inputs with digests; the audit table as an artifact; the final
model registered under the experiment's name, and `al-loop route --model NAME@ALIAS` loading only a recorded model.

Everything is read back from a real sqlite store with MlflowClient (no mocks). New al-loop names are imported inside
the tests, so that each test fails on its own on code without them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from al_loop.audit import audit_table
from al_loop.cli import app
from al_loop.config import Config, load_config
from al_loop.loop import run_loop
from al_loop.tracking import Tracker
from al_loop.workspace import prepare

REPO = Path(__file__).resolve().parents[1]


def _record(config: Config) -> dict[str, str]:
    """The final model the run's ledger recorded."""
    with sqlite3.connect(config.output_dir / config.run_name / "ledger.sqlite") as db:
        return json.loads(db.execute("SELECT value FROM meta WHERE key = 'final_model'").fetchone()[0])


def _forget_the_finish(config: Config) -> None:
    """The ledger of a process that died after logging (and registering) the final model, before `finished`."""
    with sqlite3.connect(config.output_dir / config.run_name / "ledger.sqlite") as db:
        db.execute("DELETE FROM meta WHERE key IN ('finished', 'final_model')")


def _text_pool(tmp_path: Path) -> dict[str, object]:
    """A small text pool (300 newsgroup posts shipped in data/), as a dataset section."""
    frame = pd.read_csv(REPO / "data" / "newsgroups6-pool.csv.gz").sample(300, random_state=0)
    frame.to_csv(tmp_path / "pool.csv", index=False)
    return {"name": None, "path": str(tmp_path / "pool.csv"), "text_column": "text", "label_column": "label"}


def _traffic(config: Config, tmp_path: Path) -> Path:
    pool = prepare(config).splits.pool
    path = tmp_path / "traffic.csv"
    pool.inputs.iloc[:5].assign(id=[f"new{i}" for i in range(5)]).to_csv(path, index=False)
    return path


def _route(config_path: Path, traffic: Path, *options: str):
    return CliRunner().invoke(app, ["route", str(config_path), "--input", str(traffic), *options])


# --- the logged model: signature, input example, predict_proba ---------------------------------------------------

@pytest.mark.parametrize("pool", ["features", "text"])
def test_the_final_model_has_a_signature_an_input_example_and_predict_proba(write_config, tmp_path: Path,
                                                                             pool: str) -> None:
    dataset = _text_pool(tmp_path) if pool == "text" else {}
    config = load_config(write_config(dataset=dataset, loop={"budget": 30}))
    run_loop(config)
    workspace = prepare(config)
    inputs = workspace.splits.pool.inputs
    record = _record(config)
    mlflow.set_tracking_uri(config.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{record['model_id']}")

    assert info.signature is not None, "no signature"
    assert info.signature.inputs.input_names() == list(inputs.columns)  # raw input columns, not features
    assert tuple(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, len(workspace.classes))
    assert info.flavors["python_function"]["predict_fn"] == "predict_proba"
    assert info.saved_input_example_info["type"] == "dataframe"
    example = mlflow.models.Model.load(f"models:/{record['model_id']}").load_input_example(
        mlflow.artifacts.download_artifacts(f"models:/{record['model_id']}", tracking_uri=config.tracking_uri))
    assert 1 <= len(example) <= 5, "a small input example"
    pd.testing.assert_frame_equal(example.reset_index(drop=True), inputs.head(len(example)).reset_index(drop=True),
                                  check_dtype=False)

    rows = inputs.iloc[10:15]
    proba = np.asarray(mlflow.pyfunc.load_model(f"models:/{record['model_id']}").predict(rows))
    assert proba.shape == (5, len(workspace.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    verified = Tracker(config.tracking_uri, config.tracking.experiment).load_verified_model(
        record["model_id"], record["sha256"])
    np.testing.assert_allclose(proba, verified.predict_proba(rows), rtol=1e-5)
    assert [str(c) for c in verified.classes_] == workspace.classes


@pytest.mark.parametrize("file", ["input_example.json", "serving_input_example.json", "MLmodel"])
def test_the_recorded_hash_covers_the_input_example_and_the_signature(write_config, tmp_path: Path,
                                                                        file: str) -> None:
    path = write_config(loop={"budget": 30})
    config = load_config(path)
    run_loop(config)
    client = MlflowClient(config.tracking_uri)
    folder = Path(client.get_logged_model(_record(config)["model_id"]).artifact_location.removeprefix("file://"))
    assert (folder / file).is_file(), f"MLflow wrote no {file}"
    text = (folder / file).read_text()
    changed = text.replace("predict_proba", "predict") if file == "MLmodel" else text.replace("0.0", "1.0", 1)
    assert changed != text
    (folder / file).write_text(changed)
    result = _route(path, _traffic(config, tmp_path))
    assert result.exit_code == 2, result.output
    assert "is not the model al-loop logged" in result.output


# --- run inputs ----------------------------------------------------------------------------------------------------

def test_the_pool_and_the_test_split_are_run_inputs_with_digests_once_across_resumes(write_config) -> None:
    from al_loop.loop import run_inputs
    from al_loop.tracking import frame_digest

    config = load_config(write_config(loop={"budget": 30}))
    result = run_loop(config)
    resumed = load_config(write_config(loop={"budget": 40}))  # a raised budget: the same run goes on
    assert run_loop(resumed).run_id == result.run_id
    run_loop(resumed)  # and once more, with nothing left to do

    inputs = MlflowClient(config.tracking_uri).get_run(result.run_id).inputs.dataset_inputs
    contexts = {i.tags[0].value: i.dataset for i in inputs if i.tags}
    assert len(inputs) == 2 and sorted(contexts) == ["test", "training"], [(i.dataset.name, i.tags) for i in inputs]
    expected = {item.context: item for item in run_inputs(config, prepare(config))}
    workspace = prepare(config)
    for context, table in (("training", workspace.splits.pool), ("test", workspace.splits.test)):
        dataset = contexts[context]
        assert dataset.digest == frame_digest(expected[context].frame)
        assert json.loads(dataset.profile)["num_rows"] == len(table)
        columns = [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]]
        assert columns == ["id", *workspace.splits.pool.inputs.columns, "label"]
    assert contexts["training"].digest != contexts["test"].digest


def test_the_dataset_digest_is_stable_and_follows_the_content() -> None:
    from al_loop.tracking import frame_digest

    frame = pd.DataFrame({"id": ["a", "b", "c"], "text": ["one", "two", None], "label": ["x", "y", None]})
    assert frame_digest(frame) == frame_digest(frame.copy()) == frame_digest(frame.iloc[::-1].iloc[::-1])
    edited = frame.copy()
    edited.loc[1, "text"] = "twO"
    assert frame_digest(edited) != frame_digest(frame)
    assert frame_digest(frame.iloc[:2]) != frame_digest(frame)
    assert frame_digest(frame.rename(columns={"text": "body"})) != frame_digest(frame)
    assert len(frame_digest(frame)) <= 36  # what MLflow's store keeps


def _log_the_same_datasets(uri: str, barrier, failures) -> None:
    from al_loop.tracking import RunInput

    tracker = Tracker(uri, "same-datasets")
    for k in range(12):
        run_id = tracker.start_run(f"seed{k}", {}, {})
        barrier.wait()  # both processes log the same new dataset at the same moment
        try:
            tracker.log_inputs(run_id, [RunInput(f"pool{k}", "training", pd.DataFrame({"x": [k, 1.0]}), "digits")])
        except Exception as error:  # what a parallel benchmark child would die of
            failures.put(f"{type(error).__name__}: {str(error)[:200]}")


def test_parallel_runs_logging_the_same_dataset_both_get_it(tmp_path: Path) -> None:
    """Parallel children of a benchmark log the same pool at once: MLflow's unique key on a dataset must not fail
    one of them."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    Tracker(uri, "same-datasets")  # the store and the experiment exist before the race
    context = multiprocessing.get_context("spawn")
    barrier, failures = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_log_the_same_datasets, args=(uri, barrier, failures)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    errors = []
    while not failures.empty():
        errors.append(failures.get(timeout=5))
    assert errors == []
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("same-datasets").experiment_id])
    assert len(runs) == 24 and all(len(r.inputs.dataset_inputs) == 1 for r in runs)


# --- the audit table -------------------------------------------------------------------------------------------------

def _logged_audit(config: Config, run_id: str, tmp_path: Path) -> pd.DataFrame:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="audit/labels.csv",
                                                dst_path=str(tmp_path / "download"), tracking_uri=config.tracking_uri)
    return pd.read_csv(local, dtype={"example_id": str, "label": str})


def test_the_audit_table_is_logged_at_each_finish_and_matches_the_ledger(write_config, tmp_path: Path) -> None:
    config = load_config(write_config(loop={"budget": 30}))
    result = run_loop(config)
    logged = _logged_audit(config, result.run_id, tmp_path)
    table = audit_table(config)
    assert len(logged) == len(table) == 30
    assert dict(zip(logged["example_id"], logged["label"], strict=True)) == dict(
        zip(table["example_id"], table["label"].astype(str), strict=True))
    assert [json.loads(a) for a in logged["answers"]] == json.loads(table["answers"].to_json(orient="records"))

    resumed = load_config(write_config(loop={"budget": 40}))
    run_loop(resumed)  # finishes again: the artifact is replaced by the new table
    logged = _logged_audit(config, result.run_id, tmp_path / "again")
    assert len(logged) == len(audit_table(config)) == 40
    artifacts = [a.path for a in MlflowClient(config.tracking_uri).list_artifacts(result.run_id, "audit")]
    assert artifacts == ["audit/labels.csv"]


# --- the model registry -------------------------------------------------------------------------------------------

def test_registered_model_names_and_aliases_are_what_mlflow_accepts() -> None:
    from al_loop.tracking import model_alias, parse_model_reference, registered_model_name

    assert registered_model_name("al-loop") == "al-loop"
    assert registered_model_name("/Users/me/team:exp") == "Users-me-team-exp"
    assert model_alias("margin-seed0") == "margin-seed0"
    assert model_alias("Latest") is None and model_alias("v3") is None
    assert parse_model_reference("al-loop@latest") == ("al-loop", "latest", None)
    assert parse_model_reference("models:/al-loop@margin-seed0") == ("al-loop", "margin-seed0", None)
    assert parse_model_reference("models:/al-loop/2") == ("al-loop", None, 2)
    assert parse_model_reference("al-loop") == ("al-loop", "latest", None)


def test_the_final_model_is_registered_once_under_the_experiment_with_aliases(write_config) -> None:
    path = write_config(loop={"budget": 30}, tracking={"experiment": "team/digits:v1"})
    config = load_config(path)
    result = run_loop(config)
    client = MlflowClient(config.tracking_uri)
    name = "team-digits-v1"
    [version] = client.search_model_versions(f"name = '{name}'")
    record = _record(config)
    assert version.source == f"models:/{record['model_id']}" and version.run_id == result.run_id
    assert record["registered"] == f"{name}/{version.version}"
    assert client.get_model_version_by_alias(name, "latest").version == version.version
    assert client.get_model_version_by_alias(name, config.run_name).version == version.version

    _forget_the_finish(config)  # a crash after registering, before the ledger said `finished`
    run_loop(config)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1, "registered twice"
    assert _record(config)["model_id"] == record["model_id"]

    run_loop(load_config(write_config(loop={"budget": 40}, tracking={"experiment": "team/digits:v1"})))
    versions = client.search_model_versions(f"name = '{name}'")
    newest = _record(config)
    assert len(versions) == 2 and newest["model_id"] != record["model_id"]
    for alias in ("latest", config.run_name):
        assert client.get_model_version_by_alias(name, alias).source == f"models:/{newest['model_id']}"


def test_child_runs_of_a_comparison_are_not_registered(write_config) -> None:
    config = load_config(write_config(loop={"budget": 30}))
    tracker = Tracker(config.tracking_uri, config.tracking.experiment)
    parent = tracker.start_run("compare-digits", {}, {})
    run_loop(config, parent_run_id=parent)
    assert _record(config)["model_id"] and "registered" not in _record(config)
    assert MlflowClient(config.tracking_uri).search_model_versions(f"name = '{config.tracking.experiment}'") == []


# --- route by alias ---------------------------------------------------------------------------------------------------

def test_route_by_alias_loads_the_recorded_model(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30})
    config = load_config(path)
    result = run_loop(config)
    traffic = _traffic(config, tmp_path)
    name = config.tracking.experiment
    for reference in (f"{name}@latest", f"models:/{name}@{config.run_name}", f"{name}/1"):
        routed = _route(path, traffic, "--model", reference)
        assert routed.exit_code == 0, routed.output
        assert f"model of run {result.run_id}" in routed.output
    decisions = sorted((config.output_dir / config.run_name / "routing").glob("decisions-*.csv"))
    assert len(pd.read_csv(decisions[-1])) == 5

    both = _route(path, traffic, "--model", f"{name}@latest", "--run-id", result.run_id)
    assert both.exit_code == 2 and "not both" in both.output
    unknown = _route(path, traffic, "--model", "no-such-model@latest")
    assert unknown.exit_code == 2 and "there is no registered model 'no-such-model'" in unknown.output
    assert name in unknown.output, "the message names the registered models there are"
    alias = _route(path, traffic, "--model", f"{name}@champion")
    assert alias.exit_code == 2 and "has no alias 'champion'" in alias.output
    assert f"{config.run_name} (version 1)" in alias.output, "the message names the aliases there are"
    malformed = _route(path, traffic, "--model", "models:/a/b/c")
    assert malformed.exit_code == 2 and "does not name a registered model version" in malformed.output


class _Planted:
    """Unpickling this runs code: it touches a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))

    def predict(self, rows):  # so that MLflow writes its pyfunc flavor
        return rows


def test_route_refuses_an_alias_that_names_a_model_no_ledger_recorded(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30})
    config = load_config(path)
    result = run_loop(config)
    name = config.tracking.experiment
    client = MlflowClient(config.tracking_uri)
    marker = tmp_path / "ran"
    mlflow.set_tracking_uri(config.tracking_uri)
    with mlflow.start_run(run_id=result.run_id):  # a model in the right run, the right registry: not recorded
        planted = mlflow.sklearn.log_model(_Planted(marker), name="model", serialization_format="cloudpickle",
                                           pip_requirements=["scikit-learn"])
    version = client.create_model_version(name, f"models:/{planted.model_id}", run_id=result.run_id)
    client.set_registered_model_alias(name, "planted", version.version)
    from_files = client.create_model_version(name, client.get_logged_model(planted.model_id).artifact_location,
                                             run_id=result.run_id)
    client.set_registered_model_alias(name, "files", from_files.version)
    traffic = _traffic(config, tmp_path)

    for reference in (f"{name}@planted", f"models:/{name}/{version.version}"):
        refused = _route(path, traffic, "--model", reference)
        assert refused.exit_code == 2, refused.output
        assert f"{planted.model_id}, which no ledger under" in refused.output and "was not loaded" in refused.output
    refused = _route(path, traffic, "--model", f"{name}@latest")  # the newest version is not a recorded model
    assert refused.exit_code == 2 and "was not registered from a model logged to a run" in refused.output
    refused = _route(path, traffic, "--model", f"{name}@files")
    assert refused.exit_code == 2 and "was not registered from a model logged to a run" in refused.output
    assert not marker.exists(), "a model al-loop did not record was unpickled"
    assert _route(path, traffic, "--model", f"{name}@{config.run_name}").exit_code == 0, "the recorded one still loads"


def test_a_moved_run_folder_keeps_its_registered_models(write_config, tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    shutil.move(write_config(loop={"budget": 30}, tracking={"uri": None}), first / "config.yaml")
    raw = yaml.safe_load((first / "config.yaml").read_text())
    raw["output_dir"] = "runs"  # the default store in the output folder, both relative to the config
    (first / "config.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(first / "config.yaml")
    run_loop(config)
    name = config.tracking.experiment
    moved = tmp_path / "second"
    shutil.move(first, moved)
    path = moved / "config.yaml"
    config = load_config(path)
    Tracker(config.tracking_uri, config.tracking.experiment)  # opening the store follows the move
    version = MlflowClient(config.tracking_uri).get_model_version_by_alias(name, config.run_name)
    where = MlflowClient(config.tracking_uri).get_model_version_download_uri(name, version.version)
    assert where.startswith(moved.as_uri()), where
    local = mlflow.artifacts.download_artifacts(f"models:/{name}@{config.run_name}", dst_path=str(tmp_path / "dl"),
                                                tracking_uri=config.tracking_uri)
    assert (Path(local) / "MLmodel").is_file()
    routed = _route(path, _traffic(config, tmp_path), "--model", f"{name}@latest")
    assert routed.exit_code == 0, routed.output
    assert not first.exists()


def test_logging_a_round_reads_the_metric_history_once_per_run_not_every_round(write_config, monkeypatch) -> None:
    """Each round used to read the first metric's whole history to check for a resumed round (growing with the
    rounds); now only a step the tracker cannot rule out is checked against the store."""
    reads: list[str] = []
    history = MlflowClient.get_metric_history

    def counted(self, run_id: str, key: str, *args, **kwargs):
        reads.append(key)
        return history(self, run_id, key, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "get_metric_history", counted)
    result = run_loop(load_config(write_config(loop={"budget": 80, "batch_size": 10})))
    assert len([r for r in result.rounds if r.n_labels]) >= 6
    assert reads.count(next(iter(result.rounds[-1].metrics))) <= 2, reads
