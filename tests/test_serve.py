"""`al-loop serve` without Label Studio: the HTTP handlers through Flask's test client, the secret, the sync worker.
The run is a real simulated loop with a real MLflow store and ledger; nothing of al-loop is mocked."""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from al_loop.api import load_config, prepare, run_loop
from al_loop.errors import ConfigError
from al_loop.ledger import Ledger
from al_loop.loop import fit_labeled
from al_loop.model import build_estimator
from al_loop.serve.secret import BASIC_USER, HEADER, load_secret, secret_path
from al_loop.serve.service import Service


@pytest.fixture
def finished(write_config, monkeypatch: pytest.MonkeyPatch):
    """A finished simulated run (budget 60: rounds 0-4), and its service (not listening: the test client calls it)."""
    monkeypatch.delenv("AL_LOOP_SERVE_SECRET", raising=False)
    config = load_config(write_config(serve={"max_request_mb": 0.05}))
    workspace = prepare(config)
    run_loop(config, workspace=workspace)
    return config, Service(config, workspace=workspace)


def _auth(service: Service) -> dict[str, str]:
    token = base64.b64encode(f"{BASIC_USER}:{service.secret.value}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _ledger_digest(config) -> str:
    """A digest of the ledger's content (every row of every table)."""
    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        return hashlib.sha256("\n".join(ledger._db.iterdump()).encode()).hexdigest()


def test_predict_serves_the_model_of_the_last_round_for_pushed_and_new_tasks(finished) -> None:
    config, service = finished
    client = service.app.test_client()
    workspace = service.ws
    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        labels = ledger.labels()
        last = ledger.rounds()[-1].round
    expected = fit_labeled(build_estimator(config.model, config.seed), workspace, labels, [])
    pool = workspace.splits.pool
    ids = [str(i) for i in pool.ids[:5]]
    new_row = {c: float(v) for c, v in pool.inputs.iloc[7].items()}  # a task al-loop never pushed: data only
    tasks = [{"id": n, "data": {"al_id": e, "al_order": n + 1, "text": "shown"}} for n, e in enumerate(ids)]
    tasks += [{"id": 99, "data": new_row}, {"id": 100, "data": {"text": "no pixel columns"}}, {"id": 101}]
    response = client.post("/predict", json={"tasks": tasks, "project": "1.1"}, headers=_auth(service))
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == f"{config.run_name}/round-{last}"
    results = body["results"]
    assert len(results) == len(tasks)
    proba = expected.predict_proba(workspace.x_pool[workspace.rows(ids)])
    for n, result in enumerate(results[:5]):
        choice = result["result"][0]
        assert (choice["from_name"], choice["to_name"], choice["type"]) == ("label", "text", "choices")
        assert choice["value"]["choices"] == [workspace.classes[int(proba[n].argmax())]]
        assert result["score"] == pytest.approx((n + 1) / (n + 2)), "al-loop's order, as push scores it"
    new_proba = expected.predict_proba(workspace.featurizer.transform(pool.inputs.iloc[[7]]))[0]
    assert results[5]["result"][0]["value"]["choices"] == [workspace.classes[int(np.argmax(new_proba))]]
    assert results[5]["score"] == pytest.approx(new_proba.max()), "a task al-loop never saw: the confidence"
    assert "result" not in results[6] and "no 'f0'" in results[6]["error"]
    assert "result" not in results[7] and "no data" in results[7]["error"]
    setup = client.post("/setup", json={"project": "1.1", "schema": "<View/>"}, headers={HEADER: service.secret.value})
    assert setup.status_code == 200 and setup.get_json() == {"model_version": body["model_version"]}
    assert client.get("/health").get_json()["status"] == "UP"


def test_bad_requests_get_a_4xx_message_and_never_touch_the_ledger(finished) -> None:
    config, service = finished
    client = service.app.test_client()
    before = _ledger_digest(config)
    secret = service.secret.value
    good = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}}
    cases = [
        ("/webhook", {}, good, 401, "missing or wrong secret"),
        ("/webhook", {HEADER: "x" * 40}, good, 401, "missing or wrong secret"),
        ("/webhook", {HEADER: secret[:-1]}, good, 401, "missing or wrong secret"),
        ("/webhook", {HEADER: secret}, "not json", 400, "JSON object"),
        ("/webhook", {HEADER: secret}, [1, 2], 400, "JSON object"),
        ("/webhook", {HEADER: secret}, {"annotation": {}}, 400, "unexpected action None"),
        ("/webhook", {HEADER: secret}, {"action": "PROJECT_UPDATED"}, 400, "unexpected action"),
        ("/predict", {}, {"tasks": []}, 401, "basic auth"),
        ("/predict", {"Authorization": "Basic " + base64.b64encode(f"admin:{secret}".encode()).decode()},
         {"tasks": []}, 401, "missing or wrong secret"),
        ("/predict", _auth(service), {"tasks": "all"}, 400, '"tasks"'),
        ("/predict", _auth(service), {"tasks": [1]}, 400, '"tasks"'),
        ("/setup", {}, {"project": "1.1"}, 401, "secret"),
        ("/predict", _auth(service), {"tasks": [{"data": {"text": "x" * 60_000}}]}, 413, "serve.max_request_mb"),
        ("/nowhere", _auth(service), {}, 404, "not part of al-loop serve"),
    ]
    for path, headers, body, status, message in cases:
        kwargs = {"json": body} if not isinstance(body, str) else {"data": body}
        response = client.post(path, headers=headers, **kwargs)
        assert response.status_code == status, (path, body, response.data[:200])
        payload = response.get_json()
        assert message in payload["error"], payload
        assert "Traceback" not in response.get_data(as_text=True) and secret not in response.get_data(as_text=True)
    assert not service.worker.pending, "no bad request asks for a sync"
    assert client.post("/webhook", json=good, headers={HEADER: secret}).status_code == 200
    assert service.worker.pending, "a good webhook asks for one"
    assert _ledger_digest(config) == before, "the handlers never write the ledger"


def test_the_secret_is_generated_once_private_or_read_from_the_environment(write_config,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AL_LOOP_SERVE_SECRET", raising=False)
    config = load_config(write_config())
    first = load_secret(config)
    path = secret_path(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_secret(config).value == first.value and len(first.value) >= 32
    assert first.value not in repr(first)
    monkeypatch.setenv("AL_LOOP_SERVE_SECRET", "short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_secret(config)
    monkeypatch.setenv("AL_LOOP_SERVE_SECRET", "s" * 20)
    assert load_secret(config).source == "environment variable AL_LOOP_SERVE_SECRET"
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        load_config(write_config(serve={"secret_env": "3f9a0c2b7d1e4f5a6b8c9d0e1f2a3b4c"}))


def test_webhooks_are_debounced_into_one_sync_and_the_fallback_syncs_without_any(write_config,
                                                                                 monkeypatch) -> None:
    monkeypatch.delenv("AL_LOOP_SERVE_SECRET", raising=False)
    config = load_config(write_config(serve={"debounce": 0.5, "fallback_interval": 0}))
    service = Service(config)
    client = service.app.test_client()
    service.worker.start()
    try:
        for _ in range(5):
            assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"},
                               headers={HEADER: service.secret.value}).status_code == 200
        assert service.worker.idle.wait(120)
        assert service.worker.syncs == 1, "five webhooks in a burst: one sync"
        assert service.worker.last_error is None and service.worker.last_result == "pushed round 0 (20 tasks)"
    finally:
        service.worker.stop()
    again = Service(config.model_copy(update={"serve": config.serve.model_copy(update={"fallback_interval": 0.3})}),
                    workspace=service.ws)
    again.worker.start()
    try:
        deadline = time.monotonic() + 120
        while "budget" not in (again.worker.last_result or "") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert again.worker.last_result == "budget of 60 labels reached", "without webhooks the fallback syncs on"
        assert [r.n_labels for r in again.rounds] == [20, 30, 40, 50, 60]
    finally:
        again.worker.stop()
    assert os.environ.get("AL_LOOP_SERVE_SECRET") is None


def test_the_command_listens_on_127_0_0_1_never_prints_the_secret_and_stops_on_sigterm(write_config,
                                                                                      tmp_path) -> None:
    import signal
    import subprocess
    import sys

    import httpx

    from .conftest import _free_port

    port = _free_port()
    path = write_config(serve={"port": port, "fallback_interval": 0})
    env = {**os.environ, "AL_LOOP_SERVE_SECRET": "sekrit-" + "7" * 20, "COLUMNS": "200"}
    process = subprocess.Popen([str(Path(sys.executable).with_name("al-loop")), "serve", str(path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "al-loop serve did not start"
            time.sleep(0.3)
        config = load_config(path)
        ledger_path = config.output_dir / config.run_name / "ledger.sqlite"

        def rounds(status: str) -> bool:
            try:
                with Ledger.read_only(ledger_path) as ledger:
                    return any(r.status == status for r in ledger.rounds()) and not ledger.unpushed()
            except (FileNotFoundError, sqlite3.OperationalError):
                return False

        def logged() -> bool:
            return rounds("logged")

        while not rounds("queued"):  # the first sync (at start) pushes round 0; the webhook comes after it
            assert time.monotonic() < deadline, "the first sync did not push round 0"
            time.sleep(0.3)
        response = httpx.post(f"http://127.0.0.1:{port}/webhook", json={"action": "ANNOTATION_CREATED"},
                              headers={HEADER: env["AL_LOOP_SERVE_SECRET"]}, timeout=5)
        assert response.status_code == 200
        while not logged() and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    assert logged(), f"the webhook's sync did not log round 0: {output}"
    assert f"al-loop serve: http://127.0.0.1:{port}" in output and "environment variable AL_LOOP_SERVE_SECRET" in output
    assert "round   0 · labels    20" in output, "the rounds the webhook's sync logged are printed"
    assert env["AL_LOOP_SERVE_SECRET"] not in output and "Traceback" not in output
