"""`al-loop serve` with a real Label Studio: the ML backend connected through the API and asked for predictions by
Label Studio itself, a round driven by webhooks, a lost webhook caught by the fallback pull, bad requests over HTTP.
The annotators are bot users answering through the API (al_loop.labelstudio.bots), as people would."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from al_loop.api import load_config
from al_loop.config import BotsConfig
from al_loop.labelstudio.bots import Bots
from al_loop.labelstudio.connection import connect
from al_loop.ledger import Ledger
from al_loop.loop import fit_labeled
from al_loop.model import build_estimator
from al_loop.serve.connect import connect_if_serving
from al_loop.serve.secret import HEADER
from al_loop.serve.service import Service

from .conftest import TOKEN_ENV, _free_port

pytestmark = pytest.mark.labelstudio


def _until(condition: Callable[[], bool], timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def served(write_config, labelstudio, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Start `al-loop serve` (connected to a project of the session's server) for a digits run; stop it after."""
    monkeypatch.delenv("AL_LOOP_SERVE_SECRET", raising=False)
    services: list[Service] = []

    def start(fallback_interval: float = 0.0) -> Service:
        path = write_config(
            annotator={"kind": "labelstudio", "url": labelstudio.url, "token_env": TOKEN_ENV, "timeout": 60,
                       "project_title": request.node.name[-50:]},
            loop={"budget": 40},
            serve={"port": _free_port(), "connect": True, "debounce": 0.3, "fallback_interval": fallback_interval})
        service = Service(load_config(path))
        services.append(service)
        service.start()
        _until(lambda: service.connected or service.worker.last_error is not None, what="the first sync")
        assert service.worker.last_error is None and service.connected
        return service

    yield start
    for service in services:
        service.stop()


def _ledger(service: Service) -> Ledger:
    config = service.config
    return Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite")


def _pushed_rounds(service: Service) -> int:
    """Rounds queued and pushed, once the sync under way (if any) has finished."""
    if not service.worker.idle.is_set():
        return -1
    with _ledger(service) as ledger:
        return len(ledger.rounds()) if not ledger.unpushed() else -1


def _person(service: Service) -> Bots:
    """A bot user who answers correctly, through the API."""
    conn = connect(service.config.annotator, service.config.output_dir)
    pool = service.ws.splits.pool
    truth = dict(zip(pool.ids, pool.labels, strict=True))
    return Bots(conn, service.project_id(), truth, service.ws.classes, BotsConfig(annotators=1), seed=0,
                prefix="person")


def _answer_round(service: Service, person: Bots) -> int:
    with _ledger(service) as ledger:
        pending = ledger.pending()
    return person.answer(pending)


def test_webhooks_drive_a_round_and_label_studio_gets_the_models_predictions(served) -> None:
    service = served()  # fallback off: only a webhook can start a sync
    project = service.project_id()
    conn = connect(service.config.annotator, service.config.output_dir)
    http = conn.client._client_wrapper.httpx_client
    backends = http.request("api/ml", method="GET", params={"project": project}).json()
    hooks = http.request("api/webhooks/", method="GET", params={"project": project}).json()
    assert [(b["url"], b["title"], b["auth_method"]) for b in backends] == [(service.url, "al-loop", "BASIC_AUTH")]
    assert [h["url"] for h in hooks] == [f"{service.url}/webhook"] and hooks[0]["headers"] == {
        HEADER: service.secret.value}
    service.connected = False
    service.connect()  # again (a restart): nothing is added twice
    assert len(http.request("api/ml", method="GET", params={"project": project}).json()) == 1
    assert len(http.request("api/webhooks/", method="GET", params={"project": project}).json()) == 1
    note = connect_if_serving(service.config)  # what `al-loop run` / `labelstudio start` do with serve.connect
    assert "ML backend (already there) and webhook (already there)" in note

    syncs = service.worker.syncs
    assert _answer_round(service, _person(service)) == 20
    _until(lambda: _pushed_rounds(service) == 2, what="round 1 pushed after the webhooks of round 0's answers")
    assert service.worker.notices > 1 and service.worker.syncs > syncs
    with _ledger(service) as ledger:
        assert len(ledger.labels()) == 20 and len(ledger.pending()) == 10
        picks = {e: ledger.pick_of(e).predicted_label for e in ledger.pending()}
        labels = ledger.labels()

    # a task al-loop never pushed, imported by hand: the backend predicts it from its data
    pool = service.ws.splits.pool
    row = {c: float(v) for c, v in pool.inputs.iloc[3].items()}
    conn.client.projects.import_tasks(id=project, request=[{"data": {"text": "by hand", **row}}])
    response = http.request("api/dm/actions", method="POST", params={"id": "retrieve_tasks_predictions",
                                                                      "project": project},
                            json={"selectedItems": {"all": True, "excluded": []}})
    assert response.status_code == 200, response.text
    tasks = list(conn.client.tasks.list(project=project, fields="task_only", include="id,data", page_size=1000))
    predictions: dict[int, list[dict]] = {t.id: [] for t in tasks}
    for item in http.request("api/predictions/", method="GET", params={"project": project}).json():
        predictions[item["task"]].append(item)
    version = f"{service.config.run_name}/round-0"
    model = fit_labeled(build_estimator(service.config.model, service.config.seed), service.ws, labels, [])
    checked = 0
    for task in tasks:
        ours = [p for p in predictions[task.id] if p["model_version"] == version]
        assert len(ours) == 1, (task.data.get("al_id"), predictions[task.id])
        choice = ours[0]["result"][0]["value"]["choices"][0]
        example = task.data.get("al_id")
        x = service.ws.x_pool[service.ws.rows([example])] if example else service.ws.featurizer.transform(
            pool.inputs.iloc[[3]])
        assert choice == service.ws.classes[int(model.predict_proba(x)[0].argmax())]
        if example in picks:
            assert choice == picks[example], "the backend's model is the one that picked the round"
        checked += 1
    assert checked == 31  # round 0 (20, predicted by the backend), round 1 (10, pushed with it), the hand-made task


def test_a_lost_webhook_is_caught_by_the_fallback_pull(served) -> None:
    service = served(fallback_interval=1.0)
    project = service.project_id()
    conn = connect(service.config.annotator, service.config.output_dir)
    http = conn.client._client_wrapper.httpx_client
    hook = http.request("api/webhooks/", method="GET", params={"project": project}).json()[0]
    assert http.request(f"api/webhooks/{hook['id']}/", method="PATCH", json={"is_active": False}).status_code == 200
    notices = service.worker.notices
    assert _answer_round(service, _person(service)) == 20
    _until(lambda: _pushed_rounds(service) == 2, what="round 1 pushed by the fallback pull")
    assert service.worker.notices == notices, "no webhook arrived: the fallback pulled the answers"
    with _ledger(service) as ledger:
        assert len(ledger.labels()) == 20


def test_bad_payloads_and_a_wrong_secret_get_4xx_over_http_and_leave_the_ledger_alone(served) -> None:
    service = served()
    with _ledger(service) as ledger:
        before = "\n".join(ledger._db.iterdump())
    syncs, secret = service.worker.syncs, service.secret.value
    url = service.url
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{url}/health").json()["status"] == "UP"
        for headers, body, status in [
            ({}, {"action": "ANNOTATION_CREATED"}, 401),
            ({HEADER: "wrong" * 8}, {"action": "ANNOTATION_CREATED"}, 401),
            ({HEADER: secret}, b"{not json", 400),
            ({HEADER: secret}, {"action": "ANNOTATION_CREATED", "project": {"id": service.project_id() + 1000}},
             400),
            ({HEADER: secret}, {"action": "START_TRAINING"}, 400),
        ]:
            kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
            response = client.post(f"{url}/webhook", headers=headers, **kwargs)
            assert response.status_code == status and "error" in response.json(), response.text
            assert "Traceback" not in response.text and secret not in response.text
        assert client.post(f"{url}/predict", json={"tasks": []}).status_code == 401
    time.sleep(1.0)  # a sync would have started by now (debounce 0.3 s)
    assert service.worker.syncs == syncs and not service.worker.pending
    with _ledger(service) as ledger:
        assert "\n".join(ledger._db.iterdump()) == before
    service.stop()
    assert "al-loop serve does not answer" in connect_if_serving(service.config)
