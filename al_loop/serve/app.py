"""The HTTP handlers of `al-loop serve` (Flask): Label Studio's ML backend protocol as Label Studio 1.23 calls it
(`GET /health`, `POST /setup`, `POST /predict`) and `POST /webhook`.

`/setup`, `/predict` and `/webhook` need the shared secret: the `X-Al-Loop-Secret` header (what the webhook sends)
or HTTP basic auth with the secret as password (what Label Studio sends to an ML backend). Every error is JSON
`{"error": ...}` with a 4xx status, never a traceback; a webhook only wakes the sync worker, so it never changes the
ledger itself and answers at once (Label Studio waits 1 s for it). Request bodies are never logged: `/setup` carries
the project owner's Label Studio token.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from al_loop.redact import redact
from al_loop.serve.predictor import Predictor
from al_loop.serve.secret import BASIC_USER, HEADER
from al_loop.serve.worker import SyncWorker

log = logging.getLogger(__name__)
# what Label Studio sends when answers change: each one may finish a round
ACTIONS = ("ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED")


def create_app(predictor: Predictor, worker: SyncWorker, secret: str, project_id: Callable[[], int | None],
               max_bytes: int) -> Flask:
    """The app; `project_id` says which Label Studio project the run uses (None until it has one)."""
    app = Flask("al_loop.serve")
    app.config["MAX_CONTENT_LENGTH"] = max_bytes

    def error(status: int, message: str) -> tuple[Response, int]:
        return jsonify({"error": message}), status

    def authorized() -> bool:
        given = request.headers.get(HEADER)
        if given is None and request.authorization is not None and request.authorization.type == "basic":
            if request.authorization.username != BASIC_USER:
                return False
            given = request.authorization.password
        return given is not None and hmac.compare_digest(given.encode(), secret.encode())

    def json_object() -> dict[str, Any] | None:
        body = request.get_json(silent=True, force=True)
        return body if isinstance(body, dict) else None

    unauthorized = (f"missing or wrong secret: send the {HEADER} header (webhook) or HTTP basic auth user "
                    f"{BASIC_USER!r} with the secret as password (ML backend); the secret is in the environment "
                    "variable serve.secret_env names, else in <output_dir>/serve/secret")

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "UP", "model_class": "al-loop"})

    @app.post("/setup")
    def setup() -> Any:
        if not authorized():
            return error(401, unauthorized)
        if json_object() is None:
            return error(400, "the body must be a JSON object (Label Studio sends project, schema, hostname)")
        return jsonify({"model_version": predictor.current().version})

    @app.post("/predict")
    def predict() -> Any:
        if not authorized():
            return error(401, unauthorized)
        body = json_object()
        tasks = None if body is None else body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            return error(400, 'the body must be a JSON object with "tasks": a list of task objects, each with '
                              '"data" (as Label Studio sends it)')
        results, version = predictor.predict(tasks)
        return jsonify({"results": results, "model_version": version})

    @app.post("/webhook")
    def webhook() -> Any:
        if not authorized():
            return error(401, unauthorized)
        body = json_object()
        if body is None:
            return error(400, 'the body must be a JSON object with an "action" (a Label Studio webhook)')
        action = body.get("action")
        if action not in ACTIONS:
            return error(400, f"unexpected action {repr(action)[:60]}: this webhook handles {', '.join(ACTIONS)}; "
                              "select only those in the webhook's settings")
        project = body.get("project")
        ours = project_id()
        if isinstance(project, dict) and ours is not None and project.get("id") != ours:
            return error(400, f"the webhook is for project {str(project.get('id'))[:20]}, this server serves project "
                              f"{ours}; point that project's webhook elsewhere")
        worker.notify()
        return jsonify({"status": "sync queued", "action": action})

    @app.errorhandler(HTTPException)
    def http_error(exception: HTTPException) -> tuple[Response, int]:
        status = exception.code or 500
        if status == 413:
            return error(413, f"the request is larger than serve.max_request_mb ({max_bytes / 1e6:.0f} MB); raise "
                              "it, or send fewer tasks at once")
        return error(status, f"{exception.name}: {request.method} {request.path} is not part of al-loop serve "
                             "(GET /health, POST /setup, /predict, /webhook)" if status in (404, 405)
                     else exception.name)

    @app.errorhandler(Exception)
    def internal_error(exception: Exception) -> tuple[Response, int]:
        log.error("%s %s failed: %s: %s", request.method, request.path, type(exception).__name__,
                  redact(str(exception))[:300])
        return error(500, f"al-loop serve failed to handle {request.path} ({type(exception).__name__}); see its log")

    return app
