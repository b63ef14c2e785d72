"""Shared fixtures: small configs written to a temporary folder, and a real MLflow store per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real sqlite tracking store for the session (creating one costs a few seconds of migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def write_config(tmp_path: Path, mlflow_uri: str, request: pytest.FixtureRequest
                 ) -> Callable[..., Path]:
    """Write a small digits config (overridable section by section) and return its path."""

    def write(**sections: Any) -> Path:
        config: dict[str, Any] = {
            "dataset": {"name": "digits", "test_size": 0.3},
            "loop": {"strategy": "margin", "batch_size": 10, "initial_size": 20, "budget": 60},
            "tracking": {"uri": mlflow_uri, "experiment": f"test-{request.node.name}"[:200]},
            "seed": 0,
            "output_dir": str(tmp_path / "runs"),
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write


TOKEN_ENV = "AL_LOOP_TEST_LS_TOKEN"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory):
    """A real Label Studio server on 127.0.0.1 for the session (first start: ~30 s of migrations).

    Its token is exported in AL_LOOP_TEST_LS_TOKEN, the way a user passes a token to al-loop.
    """
    import os
    import shutil
    import sys

    from al_loop.labelstudio.server import LocalServer

    installed = Path(sys.executable).with_name("label-studio").exists() or shutil.which("label-studio")
    if not installed:
        if os.environ.get("CI"):
            pytest.fail('label-studio is not installed; CI must install the extra: pip install -e ".[test,server]"')
        pytest.skip('label-studio is not installed (pip install -e ".[server]")')
    # data in <folder>/labelstudio: the layout of a local server under an output_dir (tests/test_cli.py uses it)
    server = LocalServer(tmp_path_factory.mktemp("ls") / "labelstudio", _free_port())
    server.start()
    os.environ[TOKEN_ENV] = server.credentials().token
    try:
        yield server
    finally:
        server.stop()
        os.environ.pop(TOKEN_ENV, None)
