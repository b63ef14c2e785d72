"""`al-loop serve` as one object: the HTTP server in a thread, the sync worker, and the connection to Label Studio,
started and stopped together (the CLI runs it until Ctrl+C; tests run it in-process)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import make_server

from al_loop.config import Config, LabelStudioAnnotatorConfig
from al_loop.errors import ConfigError
from al_loop.serve.app import create_app
from al_loop.serve.predictor import Predictor
from al_loop.serve.secret import Secret, load_secret
from al_loop.serve.worker import SyncWorker
from al_loop.workspace import Workspace

log = logging.getLogger(__name__)


class Service:
    """The ML backend and webhook receiver of one run."""

    def __init__(self, config: Config, workspace: Workspace | None = None, secret: Secret | None = None,
                 on_round: Callable[[Any], None] | None = None) -> None:
        from al_loop import api

        api.check_outputs(config)
        self.config = config
        self.ws = workspace or api.prepare(config)
        self.secret = secret or load_secret(config)
        self.predictor = Predictor(config, self.ws)
        settings = config.serve
        self.worker = SyncWorker(self.sync, settings.debounce, settings.fallback_interval, after=self.connect)
        self.app = create_app(self.predictor, self.worker, self.secret.value, self.project_id,
                              int(settings.max_request_mb * 1e6))
        self.connected = False
        self.rounds: list[Any] = []  # what the syncs logged (RoundRecord)
        self._on_round = on_round
        self._project: int | None = None
        self._http: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.config.serve.base_url

    def project_id(self) -> int | None:
        """The run's Label Studio project, as its ledger remembers it (None before the first push)."""
        if self._project is None:
            from al_loop.serve.connect import run_project

            self._project = run_project(self.config)
        return self._project

    def sync(self) -> str:
        """What `al-loop sync` does: pull, settle, retrain and push the next batch when the round is answered."""
        from al_loop import api

        result = api.run_loop(self.config, workspace=self.ws, wait=False, on_round=self._round)
        log.info("sync: %s", result.stopped_because)
        return result.stopped_because

    def _round(self, record: Any) -> None:
        self.rounds.append(record)
        if self._on_round is not None:
            self._on_round(record)

    def connect(self) -> None:
        """With serve.connect, add the ML backend and the webhook to the project once it exists (idempotent)."""
        settings = self.config.annotator
        if self.connected or not self.config.serve.connect or not isinstance(settings, LabelStudioAnnotatorConfig):
            return
        project = self.project_id()
        if project is None:
            return
        from al_loop.serve.connect import connect_run

        added, hooked = connect_run(self.config, self.secret.value, project)
        log.info("Label Studio project %s: ML backend %s, webhook %s", project,
                 "added" if added else "already there", "added" if hooked else "already there")
        self.connected = True

    def start(self) -> None:
        """Listen, then run a first sync (it creates the project and pushes the first batch if needed) and connect."""
        settings = self.config.serve
        try:
            self._http = make_server(settings.host, settings.port, self.app, threaded=True)
        except OSError as error:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port} ({error.strerror}); set serve.port "
                              "to a free port, or stop the program using it") from None
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._thread = threading.Thread(target=self._http.serve_forever, name="al-loop-serve", daemon=True)
        self._thread.start()
        self.worker.start()
        self.worker.notify()

    def stop(self) -> None:
        self.worker.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._thread is not None:
            self._thread.join(10)
