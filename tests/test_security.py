"""Secrets never echoed, and files or config values that could run code are refused (issue 12, items 5, 7-13)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import textwrap
from pathlib import Path

import joblib
import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from mlflow.tracking import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from typer.testing import CliRunner

from al_loop.cli import app
from al_loop.config import LabelStudioAnnotatorConfig, ModelConfig, load_config
from al_loop.errors import AlLoopError, ConfigError, DataError, ServiceError
from al_loop.labelstudio.connection import connect
from al_loop.labelstudio.server import LocalServer
from al_loop.loop import run_loop
from al_loop.model import build_estimator
from al_loop.redact import looks_like_token, redact, redact_url, redact_value
from al_loop.route import route
from al_loop.tracking import ModelRefused, Tracker, _lean_copy, trusted_type
from al_loop.workspace import prepare

LEGACY_TOKEN = "deadbeef0123456789abcdef0123456789abcdef"  # 40 hex, starts with a letter: a valid identifier
PAT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCIsImV4cCI6OTk5OX0."
       "c2lnbmF0dXJlMTIzNDU2Nzg5MA")  # shaped like a Label Studio personal access token (a JWT)
RANDOM = "Zx81kQ2mPw7rTn4vB9cD5eF6"


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# --- item 7: a token pasted where a variable NAME belongs -----------------------------------------------------

@pytest.mark.parametrize("token", [LEGACY_TOKEN, LEGACY_TOKEN.upper(), PAT, RANDOM, f"Token {LEGACY_TOKEN}"])
def test_a_token_in_token_env_is_refused_without_being_repeated(tmp_path: Path, token: str) -> None:
    path = _write(tmp_path, {"dataset": {"name": "digits"},
                             "annotator": {"kind": "labelstudio", "token_env": token}})
    with pytest.raises(ConfigError, match=r"annotator\.token_env") as caught:
        load_config(path)
    message = str(caught.value)
    assert token not in message and token[:12] not in message, message
    assert "NAME of an environment variable" in message or "looks like a token" in message


@pytest.mark.parametrize("name", ["LABEL_STUDIO_API_KEY", "AL_LOOP_TEST_LS_TOKEN", "MY_TOKEN_2", "ls_token",
                                  "LABEL_STUDIO_PERSONAL_ACCESS_TOKEN"])
def test_variable_names_are_still_accepted(name: str) -> None:
    assert LabelStudioAnnotatorConfig(kind="labelstudio", token_env=name).token_env == name
    assert not looks_like_token(name)


def test_no_param_logged_to_mlflow_carries_a_token(tmp_path: Path) -> None:
    """A token anywhere in the config (here a project title) is not logged as a param."""
    config = load_config(_write(tmp_path, {"dataset": {"name": "digits"},
                                           "annotator": {"kind": "labelstudio", "project_title": LEGACY_TOKEN}}))
    params = config.flat_params()
    assert LEGACY_TOKEN not in " ".join(params.values())
    assert params["annotator.project_title"] == "***"
    assert params["annotator.token_env"] == "LABEL_STUDIO_API_KEY"
    assert params["model.estimator"] == "sklearn.linear_model.LogisticRegression"
    assert redact_value(f"Token {LEGACY_TOKEN}") == "***" and redact_value(f"Bearer {PAT}") == "***"
    assert redact_value("/data/pool.csv") == "/data/pool.csv" and redact_value("al-loop digits") == "al-loop digits"


# --- item 8: URLs with credentials ------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://alice:s3cr3t@db.example:5432/mlflow", "postgresql://***@db.example:5432/mlflow"),
    ("https://ls.example/api?token=s3cr3t&page=2", "https://ls.example/api?token=***&page=2"),
    ("https://ls.example/?access_token=s3cr3t", "https://ls.example/?access_token=***"),
    ("https://h/x?X-Amz-Signature=s3cr3t&api_key=s3cr3t", "https://h/x?X-Amz-Signature=***&api_key=***"),
    ("https://bob@h/#id_token=s3cr3t", "https://***@h/#id_token=***"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_redact_url_hides_credentials_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"cannot reach {url}: refused") == f"cannot reach {shown}: refused"
    assert "s3cr3t" not in redact_value(url)


def test_connection_errors_never_show_credentials_of_the_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AL_LOOP_SECURITY_TOKEN", "x")
    settings = LabelStudioAnnotatorConfig(kind="labelstudio", url="http://alice:s3cr3t@127.0.0.1:9/?token=s3cr3t",
                                          token_env="AL_LOOP_SECURITY_TOKEN", max_retries=0, request_timeout=2)
    with pytest.raises(ServiceError, match="cannot reach Label Studio") as caught:
        connect(settings, tmp_path)
    assert "s3cr3t" not in str(caught.value) and "http://***@127.0.0.1:9" in str(caught.value)
    bad_scheme = settings.model_copy(update={"url": "ftp://alice:s3cr3t@127.0.0.1/"})
    with pytest.raises(ConfigError, match=r"annotator\.url must start with") as caught:
        connect(bad_scheme, tmp_path)
    assert "s3cr3t" not in str(caught.value)


def test_cli_output_and_mlflow_params_never_show_credentials_of_the_tracking_uri(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}?token=s3cr3t"  # a query SQLite ignores, standing in for a token in a remote URI
    path = _write(tmp_path, {"dataset": {"name": "digits", "test_size": 0.3},
                             "loop": {"strategy": "margin", "batch_size": 10, "initial_size": 20, "budget": 30},
                             "tracking": {"uri": uri, "experiment": "redaction", "log_model": False},
                             "output_dir": str(tmp_path / "runs")})
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "s3cr3t" not in result.output and "token=***" in result.output
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("redaction").experiment_id])[0]
    assert "s3cr3t" not in " ".join(run.data.params.values())
    assert run.data.params["tracking.uri"].endswith("?token=***")

    managed = _write(tmp_path, {"dataset": {"name": "digits"}, "output_dir": str(tmp_path / "runs"),
                                "annotator": {"kind": "labelstudio", "url": "https://bob:s3cr3t@ls.example/"}})
    result = CliRunner().invoke(app, ["labelstudio", "stop", str(managed)])
    assert result.exit_code != 0 and "s3cr3t" not in result.output and "***@ls.example" in result.output


# --- item 13: the estimator is checked before anything is called, and its params before anything is created ----

def test_a_class_that_is_not_a_scikit_learn_estimator_is_never_called(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "planted_models.py").write_text(textwrap.dedent(f"""
        import pathlib
        from sklearn.base import ClassifierMixin

        class Planted(ClassifierMixin):  # a classifier mixin, but not a scikit-learn estimator
            def __init__(self, **params):
                pathlib.Path({str(marker)!r}).write_text("code ran")

        def getoutput(**params):
            pathlib.Path({str(marker)!r}).write_text("code ran")
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for estimator, params in (("planted_models.Planted", {}), ("planted_models.getoutput", {}),
                              ("subprocess.getoutput", {"cmd": f"touch {marker}"})):
        path = _write(tmp_path, {"dataset": {"name": "digits"}, "model": {"estimator": estimator, "params": params}})
        with pytest.raises(ConfigError, match="is not a scikit-learn classifier class"):
            load_config(path)
        assert not marker.exists(), f"{estimator} was called"


def test_bad_params_are_refused_at_load_naming_the_param_and_the_fixed_config_just_runs(write_config) -> None:
    path = write_config(model={"params": {"C": -1.0, "max_iter": 200}}, loop={"budget": 30})
    with pytest.raises(ConfigError, match=r"model\.params\.C: The 'C' parameter of LogisticRegression"):
        load_config(path)
    path = write_config(model={"params": {"max_iterations": 200}}, loop={"budget": 30})
    with pytest.raises(ConfigError, match=r"model\.params: .*no parameter 'max_iterations'.*max_iter"):
        load_config(path)
    output = Path(yaml.safe_load(path.read_text())["output_dir"])
    assert not (output / "margin-seed0" / "ledger.sqlite").exists(), "nothing is created for a bad config"
    fixed = load_config(write_config(model={"params": {"C": 1.0, "max_iter": 200}}, loop={"budget": 30}))
    assert run_loop(fixed).finished


def test_a_config_changed_in_python_is_checked_before_the_ledger_and_the_run_exist(write_config) -> None:
    config = load_config(write_config(loop={"budget": 30}))
    bad = config.model_copy(update={"model": config.model.model_copy(update={"params": {"C": -1.0}})})
    with pytest.raises(ConfigError, match=r"model\.params\.C"):
        run_loop(bad)
    assert not (config.output_dir / config.run_name / "ledger.sqlite").exists(), "nothing is created for a bad model"


# --- item 9: the local server's data folder is private -----------------------------------------------------------

def test_the_local_server_folder_is_created_private_and_an_existing_one_is_tightened(tmp_path: Path) -> None:
    fresh = LocalServer(tmp_path / "runs" / "labelstudio", 8080)
    fresh.credentials()
    assert stat.S_IMODE(fresh.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(fresh.credentials_path.stat().st_mode) == 0o600

    existing = tmp_path / "old" / "labelstudio"
    existing.mkdir(parents=True, mode=0o755)
    existing.chmod(0o755)
    (existing / "label_studio.sqlite3").write_text("the admin token in clear text")
    (existing / "label_studio.sqlite3").chmod(0o644)
    LocalServer(existing, 8080).credentials()
    assert stat.S_IMODE(existing.stat().st_mode) == 0o700
    assert stat.S_IMODE((existing / "label_studio.sqlite3").stat().st_mode) == 0o600


@pytest.mark.labelstudio
def test_the_running_server_keeps_its_database_private(labelstudio) -> None:
    assert stat.S_IMODE(labelstudio.data_dir.stat().st_mode) == 0o700
    database = labelstudio.data_dir / "label_studio.sqlite3"
    assert database.exists() and stat.S_IMODE(database.stat().st_mode) == 0o600
    assert labelstudio.pid() is not None, "the pid file names the running server"


# --- item 10: `labelstudio stop` signals only the server al-loop started ----------------------------------------

@pytest.mark.parametrize("pid_file", ["bare", "recorded"])
def test_stop_with_a_stale_pid_file_signals_nothing_and_removes_it(tmp_path: Path, pid_file: str) -> None:
    config = _write(tmp_path, {"dataset": {"name": "digits"}, "output_dir": str(tmp_path / "runs"),
                               "annotator": {"kind": "labelstudio", "port": 8080}})
    unrelated = subprocess.Popen(["sleep", "60"], start_new_session=True)  # leads its own process group
    try:
        server = LocalServer(tmp_path / "runs" / "labelstudio", 8080)
        server.data_dir.mkdir(parents=True)
        record = (str(unrelated.pid) if pid_file == "bare" else  # al-loop <= 0.1 wrote the bare pid
                  json.dumps({"pid": unrelated.pid, "started": 1.0, "cmdline": ["label-studio", "start"]}))
        server.pid_path.write_text(record)
        result = CliRunner().invoke(app, ["labelstudio", "stop", str(config)])
        assert result.exit_code == 0, result.output
        assert unrelated.poll() is None, "an unrelated process was signalled"
        assert "stale" in result.output and str(unrelated.pid) in result.output and "not running" in result.output
        assert not server.pid_path.exists()
    finally:
        unrelated.kill()
        unrelated.wait()


# --- item 12: the feature store's pickle is loaded only if it is the file al-loop wrote -----------------------------

class _Planted:
    """Unpickling this runs code: it touches a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _store(config) -> Path:
    workspace = prepare(config)
    return workspace.features_path.parent


def test_a_replaced_featurizer_is_refused_without_being_unpickled(write_config, tmp_path: Path) -> None:
    config = load_config(write_config())
    store = _store(config)
    marker = tmp_path / "ran"
    joblib.dump(_Planted(marker), store / "featurizer.joblib")
    with pytest.raises(DataError, match=r"featurizer\.joblib is not the file al-loop wrote") as caught:
        prepare(config)
    assert not marker.exists(), "the planted pickle was loaded"
    assert f"Delete the folder {store}" in str(caught.value)
    shutil.rmtree(store)  # the fix the message names
    assert prepare(config).x_pool.shape == (1257, 64)
    hash_file = store.with_name(f"{store.name}.sha256")
    assert stat.S_IMODE(hash_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_an_unreadable_feature_matrix_is_rebuilt(write_config, damage: str) -> None:
    config = load_config(write_config())
    expected = np.array(prepare(config).x_pool)
    pool = _store(config) / "pool.npy"
    if damage == "truncate":
        pool.write_bytes(pool.read_bytes()[:1000])
    elif damage == "garbage":
        pool.write_bytes(b"not a numpy file" * 100)
    else:
        pool.unlink()
    np.testing.assert_array_equal(prepare(config).x_pool, expected)


def test_a_truncated_featurizer_is_a_clear_error(write_config) -> None:
    config = load_config(write_config())
    featurizer = _store(config) / "featurizer.joblib"
    featurizer.write_bytes(featurizer.read_bytes()[:100])
    with pytest.raises(DataError, match="Delete the folder"):
        prepare(config)


def test_a_store_made_before_hashes_were_recorded_is_rebuilt_not_trusted(write_config, tmp_path: Path) -> None:
    config = load_config(write_config())
    store = _store(config)
    store.with_name(f"{store.name}.sha256").unlink()  # what an older al-loop left
    marker = tmp_path / "ran"
    joblib.dump(_Planted(marker), store / "featurizer.joblib")
    assert prepare(config).x_pool.shape == (1257, 64)
    assert not marker.exists()


# --- items 5 and 11: the final model is logged once, recorded, and route loads only that one ------------------------

def _models(config, run_id: str) -> list:
    client = MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name(config.tracking.experiment).experiment_id
    return client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")


def _traffic(config, tmp_path: Path) -> Path:
    pool = prepare(config).splits.pool
    path = tmp_path / "traffic.csv"
    pool.inputs.iloc[:5].assign(id=[f"new{i}" for i in range(5)]).to_csv(path, index=False)
    return path


def test_the_final_model_is_logged_once_across_a_crash_at_the_end(write_config) -> None:
    config = load_config(write_config(loop={"budget": 30}))
    result = run_loop(config)
    [logged] = _models(config, result.run_id)
    ledger = config.output_dir / config.run_name / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:  # the state of a process that died after logging, before `finished`
        db.execute("DELETE FROM meta WHERE key IN ('finished', 'final_model')")
    assert run_loop(config).finished
    assert [m.model_id for m in _models(config, result.run_id)] == [logged.model_id], "the model was logged twice"
    with sqlite3.connect(ledger) as db:
        record = json.loads(db.execute("SELECT value FROM meta WHERE key = 'final_model'").fetchone()[0])
    assert record["model_id"] == logged.model_id and len(record["sha256"]) == 64


def test_route_ignores_a_model_planted_in_the_run(write_config, tmp_path: Path) -> None:
    config = load_config(write_config(loop={"budget": 30}))
    result = run_loop(config)
    marker = tmp_path / "ran"
    mlflow.set_tracking_uri(config.tracking_uri)
    with mlflow.start_run(run_id=result.run_id):  # newer than the loop's model: today's `route` loaded it
        mlflow.sklearn.log_model(_Planted(marker), name="model", serialization_format="cloudpickle",
                                 pip_requirements=["scikit-learn"])
    routed = route(config, _traffic(config, tmp_path))
    assert routed.auto + routed.review == 5
    assert not marker.exists(), "a planted model was unpickled"


def test_route_refuses_a_modified_model_with_a_message(write_config, tmp_path: Path) -> None:
    config = load_config(write_config(loop={"budget": 30}))
    result = run_loop(config)
    [logged] = _models(config, result.run_id)
    folder = Path(logged.artifact_location.removeprefix("file://"))
    marker = tmp_path / "ran"
    joblib.dump(_Planted(marker), folder / "model.pkl")
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"] |= {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}
    mlmodel["flavors"]["python_function"]["model_path"] = "model.pkl"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(AlLoopError, match="is not the model al-loop logged"):
        route(config, _traffic(config, tmp_path))
    assert not marker.exists(), "a modified model was unpickled"


def test_skops_types_are_checked_against_al_loops_own_allow_list(mlflow_uri: str) -> None:
    assert trusted_type("sklearn.calibration._CalibratedClassifier")
    assert trusted_type("numpy.float64")
    for name in ("builtins.eval", "os.system", "posix.getcwd", "sklearn.utils.estimator_checks.check_estimator"):
        assert not trusted_type(name), name
    tracker = Tracker(mlflow_uri, "skops-allow-list")
    run_id = tracker.start_run("allow-list", {}, {})
    planted = FunctionTransformer(os.getcwd)  # a callable al-loop never builds; the MLmodel file trusts it
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(planted))
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.sklearn.log_model(planted, name="model", serialization_format="skops",
                                        skops_trusted_types=untrusted, pip_requirements=["scikit-learn"])
    with pytest.raises(ModelRefused, match="needs types al-loop does not trust"):
        tracker.load_verified_model(info.model_id, tracker.model_digest(info.model_id))


def test_route_with_an_unknown_run_id_is_a_clear_error(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30})
    config = load_config(path)
    run_loop(config)
    result = CliRunner().invoke(app, ["route", str(path), "--input", str(_traffic(config, tmp_path)),
                                      "--run-id", "0123456789abcdef0123456789abcdef"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert "there is no MLflow run '0123456789abcdef0123456789abcdef'" in result.output


@pytest.mark.parametrize("estimator", ["linear_model.LogisticRegression", "svm.SVC", "ensemble.RandomForestClassifier",
                                       "naive_bayes.ComplementNB"])
def test_the_cheap_type_probe_finds_the_types_of_the_whole_model(estimator: str) -> None:
    """log_model probes skops types on a skeleton (one vocabulary term): it must name what the full model needs."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(300)])
    texts = [" ".join(rng.choice(words, 12)) for _ in range(120)]
    labels = rng.choice(["a", "b", "c"], 120)
    features = ColumnTransformer([("text", TfidfVectorizer(), "text")])
    calibration = "sigmoid" if estimator == "svm.SVC" else "none"  # CalibratedClassifierCV's internals too
    model = build_estimator(ModelConfig(estimator=f"sklearn.{estimator}", params={}, calibration=calibration), seed=0)
    pipeline = Pipeline([("features", features), ("model", model)])
    pipeline.fit(pd.DataFrame({"text": texts}), labels)
    full = _lean_copy(pipeline)
    skeleton = _lean_copy(pipeline, skeleton=True)
    assert len(skeleton.named_steps["features"].named_transformers_["text"].vocabulary_) == 1
    assert len(full.named_steps["features"].named_transformers_["text"].vocabulary_) > 100
    needed = sorted(skops.io.get_untrusted_types(data=skops.io.dumps(full)))
    assert sorted(skops.io.get_untrusted_types(data=skops.io.dumps(skeleton))) == needed
    assert bool(needed) == (estimator in ("svm.SVC", "ensemble.RandomForestClassifier"))  # the check has teeth
