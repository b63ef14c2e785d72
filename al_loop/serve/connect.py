"""Connect `al-loop serve` to the run's Label Studio project: the ML backend (`/api/ml`, basic auth with the
secret) and the webhook (`/api/webhooks/`, the secret in a header). Both idempotent: found by URL, never added
twice; a webhook whose actions or header changed is updated."""

from __future__ import annotations

from typing import Any

import httpx

from al_loop.errors import ServiceError
from al_loop.labelstudio.connection import Connection, call
from al_loop.serve.app import ACTIONS
from al_loop.serve.secret import BASIC_USER, HEADER

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
