"""Connect `al-loop serve` to the run's Label Studio project: the ML backend (`/api/ml`, basic auth with the
secret) and the webhook (`/api/webhooks/`, the secret in a header). Both idempotent: found by URL, never added
twice; a webhook whose actions or header changed is updated."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx

from al_loop.config import Config, LabelStudioAnnotatorConfig
from al_loop.errors import ServiceError
from al_loop.labelstudio.connection import Connection, call, connect
from al_loop.ledger import Ledger
from al_loop.serve.app import ACTIONS
from al_loop.serve.secret import BASIC_USER, HEADER, load_secret

TITLE = "al-loop"


def _request(conn: Connection, method: str, path: str, doing: str, **kwargs: Any) -> httpx.Response:
    http = conn.client._client_wrapper.httpx_client
    response = call(lambda: http.request(path, method=method, **kwargs), conn.url, doing)
    if not 200 <= response.status_code < 300:
        text = response.text[:300]
        hint = (" Label Studio refuses to call addresses on this machine unless started so: al-loop's local server "
                "allows 127.0.0.1 (restart it: al-loop labelstudio stop/start CONFIG); for your own server set "
                "ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false there, or set serve.url to an address it "
                "may call") if "reserved network" in text or "resolves to" in text else ""
        raise ServiceError(f"Label Studio at {conn.url} failed to {doing} (HTTP {response.status_code}: {text})."
                           f"{hint}")
    return response


def connect_backend(conn: Connection, project_id: int, url: str, secret: str) -> bool:
    """Add the ML backend at `url` to the project unless it is there; returns whether it was added. Label Studio
    checks it at once (`/health`, `/setup`), so the server must be answering."""
    listed = _request(conn, "GET", "api/ml", "list the project's ML backends", params={"project": project_id}).json()
    if any(str(b.get("url", "")).rstrip("/") == url for b in listed):
        return False
    _request(conn, "POST", "api/ml", "add al-loop as the project's ML backend", json={
        "project": project_id, "url": url, "title": TITLE, "is_interactive": False, "auth_method": "BASIC_AUTH",
        "basic_auth_user": BASIC_USER, "basic_auth_pass": secret})
    return True


def connect_webhook(conn: Connection, project_id: int, url: str, secret: str) -> bool:
    """Add the project's webhook to `url` (the answer actions, the secret in a header) unless it is there as is;
    returns whether it was added or updated."""
    wanted = {"project": project_id, "url": url, "send_payload": True, "send_for_all_actions": False,
              "headers": {HEADER: secret}, "is_active": True, "actions": list(ACTIONS)}
    listed = _request(conn, "GET", "api/webhooks/", "list the project's webhooks", params={"project": project_id})
    for hook in listed.json():
        if str(hook.get("url", "")).rstrip("/") != url or hook.get("project") != project_id:
            continue
        if (sorted(hook.get("actions") or []) == sorted(ACTIONS) and hook.get("headers") == {HEADER: secret}
                and hook.get("is_active")):
            return False
        _request(conn, "PATCH", f"api/webhooks/{hook['id']}/", "update al-loop's webhook",
                 json={k: v for k, v in wanted.items() if k != "project"})
        return True
    _request(conn, "POST", "api/webhooks/", "add al-loop's webhook", json=wanted)
    return True


def run_project(config: Config) -> int | None:
    """The run's Label Studio project, as its ledger remembers it (None before the first push)."""
    path = config.output_dir / config.run_name / "ledger.sqlite"
    if not path.is_file():
        return None
    try:
        with Ledger.read_only(path) as ledger:
            value = ledger.get_meta("labelstudio_project")
    except sqlite3.OperationalError:  # a first run is creating the ledger's tables right now
        return None
    return None if value is None else int(value)


def connect_run(config: Config, secret: str, project_id: int) -> tuple[bool, bool]:
    """Add `al-loop serve` of this config to the project: (ML backend added, webhook added or updated)."""
    settings = config.annotator
    assert isinstance(settings, LabelStudioAnnotatorConfig)
    conn = connect(settings, config.output_dir, start_local=False)
    base = config.serve.base_url
    return connect_backend(conn, project_id, base, secret), connect_webhook(conn, project_id, f"{base}/webhook",
                                                                            secret)


def connect_if_serving(config: Config) -> str | None:
    """For `al-loop run`, `sync` and `labelstudio start` with serve.connect: connect `al-loop serve` to the run's
    project if it is answering (idempotent). Returns what to tell the user (None: serve.connect is off)."""
    if not config.serve.connect or not isinstance(config.annotator, LabelStudioAnnotatorConfig):
        return None
    base = config.serve.base_url
    project = run_project(config)
    if project is None:
        return "serve.connect: the project does not exist yet; it is connected at the first `al-loop run` or serve"
    try:
        answer = httpx.get(f"{base}/health", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        answer = None
    if not isinstance(answer, dict) or answer.get("model_class") != "al-loop":
        return (f"serve.connect: al-loop serve does not answer on {base}; start it (al-loop serve CONFIG): it "
                "connects itself to the project")
    added, hooked = connect_run(config, load_secret(config).value, project)
    return (f"serve.connect: project {project} has al-loop serve ({base}) as ML backend "
            f"({'added now' if added else 'already there'}) and webhook ({'added now' if hooked else 'already there'})")
