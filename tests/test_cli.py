"""The command line as people meet it: a quick --help that reads like a usual CLI, --version, the MLflow UI
hint, and a finished run that does not start a stopped local Label Studio server for nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from al_loop import __version__
from al_loop.cli import app

HEAVY = ("mlflow", "sklearn", "pandas", "label_studio_sdk", "matplotlib", "modAL")


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], prog_name="al-loop", env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.mark.parametrize("modules", [
    "al_loop.cli, al_loop.api",  # every command, even --help, pays what these import
    "al_loop.config",  # `labelstudio stop`, `audit` and the config checks read a config only
])
def test_importing_the_cli_or_reading_a_config_loads_no_heavy_library(modules: str) -> None:
    code = f"import sys, {modules}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported by {modules} (slows every command that needs it): {done.stdout}"


def test_the_api_still_offers_its_names() -> None:
    from al_loop import api

    assert api.load_config.__module__ == "al_loop.config" and api.LoopResult.__name__ == "LoopResult"
    assert set(api.__all__) <= set(dir(api))
    with pytest.raises(AttributeError):
        _ = api.no_such_name


@pytest.mark.parametrize("command", [[], ["run"], ["sync"], ["compare"], ["route"], ["audit"], ["benchmark"],
                                     ["labelstudio"], ["labelstudio", "start"], ["labelstudio", "status"]])
def test_help_reads_like_a_usual_cli(command: list[str]) -> None:
    code, output = _cli(*command, "--help")
    assert code == 0, output
    usage = " ".join(["Usage: al-loop", *command, "[OPTIONS]"])
    assert usage in output
    assert "<bool>" not in output and "<str>" not in output and "<int>" not in output and "<path>" not in output
    assert "{" not in output.split("Usage:")[1].splitlines()[0], "usage line with {config}"
    if command and command != ["labelstudio"]:
        assert f"{usage} CONFIG" in output


def test_help_says_which_defaults_come_from_the_config() -> None:
    _, output = _cli("run", "--help")
    assert "--seed" in output and "INTEGER" in output
    assert "Override loop.strategy (default: the config's)" in output
    assert "Override seed (default: the config's)" in output


def test_version() -> None:
    code, output = _cli("--version")
    assert code == 0 and output.strip() == f"al-loop {__version__}"


def test_the_mlflow_ui_hint_names_the_mlflow_beside_this_python(write_config) -> None:
    code, output = _cli("run", write_config(loop={"budget": 30}))
    assert code == 0, output
    mlflow = Path(sys.executable).with_name("mlflow")
    assert mlflow.exists(), "the test environment installs mlflow beside its Python"
    assert f"MLflow UI: {mlflow} ui --backend-store-uri " in output
    assert "workflowType=machine_learning" in " ".join(output.split()), "the page of the runs, in the training view"
    assert "Downloading artifacts" not in output, "al-loop's own copy of the model (to hash it) shows no progress bar"


@pytest.mark.labelstudio
def test_a_finished_run_does_not_start_a_stopped_local_server(write_config, labelstudio) -> None:
    """The session's server is the local server of this output folder; the test stops it and starts it again."""
    path = write_config(
        annotator={"kind": "labelstudio", "port": labelstudio.port, "poll_interval": 0.2, "timeout": 60,
                   "project_title": "finished run, stopped server", "simulate": {"annotators": 1, "per_task": 1}},
        loop={"budget": 30}, output_dir=str(labelstudio.data_dir.parent))
    try:
        code, output = _cli("run", path)
        assert code == 0 and "done: budget of 30 labels reached" in output, output
        assert _cli("labelstudio", "stop", path) == (0, "stopped\n")

        for command in ("run", "sync"):
            code, output = _cli(command, path)
            assert code == 0, output
            assert "Label Studio is not running, so answers were not pulled" in output, output
            assert f"(`al-loop labelstudio start {path}`) and run `al-loop sync {path}`" in output
            assert "done: budget of 30 labels reached" in output
            assert not labelstudio.pid_path.exists() and labelstudio.pid() is None, f"{command} started it"
            assert _cli("labelstudio", "status", path)[0] == 1

        code, output = _cli("labelstudio", "start", path)
        assert code == 0, output
        assert f"starting Label Studio on 127.0.0.1:{labelstudio.port} ..." in output
        assert f"Label Studio is ready on {labelstudio.url}" in output
        code, output = _cli("sync", path)  # running again: a finished run pulls (answers corrected since)
        assert code == 0 and "were not pulled" not in output, output
    finally:
        labelstudio.start()  # the rest of the session needs it


def test_label_studio_shows_text_with_its_line_breaks() -> None:
    from al_loop.labelstudio.project import config_choices, labeling_config

    config = labeling_config(["a", "b"])
    assert "white-space: pre-wrap" in config and config_choices(config) == ["a", "b"]


def test_the_quickstart_ships_posts_as_written_with_the_benchmark_ids() -> None:
    import pandas as pd

    data = Path(__file__).resolve().parents[1] / "data"
    for name in ("pool", "test"):
        raw = pd.read_csv(data / f"newsgroups6-raw-{name}.csv.gz")
        lowered = pd.read_csv(data / f"newsgroups6-{name}.csv.gz")
        assert raw.id.tolist() == lowered.id.tolist() and raw.label.tolist() == lowered.label.tolist()
        assert raw.text.str.startswith("Subject: ").all() and raw.text.str.contains("\n").mean() > 0.95
        assert raw.text.str.contains("[A-Z]").mean() > 0.95 and raw.text.str.contains("[.,?!]").mean() > 0.95


def test_the_server_identity_is_recorded_after_the_child_executed_the_server(tmp_path: Path) -> None:
    """Recorded right after the fork, the command line is often still the parent's (seen: 5 times in 20): the
    pid file then names "another process", `status` says stopped and `stop` refuses to stop a running server."""
    import time

    import psutil

    from al_loop.labelstudio.server import _identity

    script = tmp_path / "server.sh"
    script.write_text("#!/bin/sh\nsleep 5\n")
    script.chmod(0o755)
    children: list[subprocess.Popen[bytes]] = []
    try:
        recorded = []
        for _ in range(20):  # as LocalServer.start does: spawn, then record at once
            children.append(subprocess.Popen([str(script)], start_new_session=True))
            recorded.append(_identity(children[-1].pid, str(script))["cmdline"])
        time.sleep(0.2)
        assert recorded == [psutil.Process(child.pid).cmdline() for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
