"""The comparison notebook, executed as the README runs it (defaults from a config), against a small comparison
made by the CLI: its table is the CLI's, cell for cell; without a store it says what to run and creates nothing."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from typer.testing import CliRunner

from al_loop.cli import app

from .conftest import REPO
from .test_mlflow_compare import small_config, table_rows

pytestmark = pytest.mark.e2e


def execute(monkeypatch: pytest.MonkeyPatch, config: Path) -> str:
    """Run the notebook with AL_LOOP_CONFIG (the only parameter the README's command needs); its text output."""
    for name in ("AL_LOOP_TRACKING_URI", "AL_LOOP_EXPERIMENT", "AL_LOOP_PARENT_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AL_LOOP_CONFIG", str(config))
    notebook = nbformat.read(REPO / "notebooks" / "compare_learning_curves.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the curves were drawn"
    return "".join(o.get("text", "") for o in outputs)


def markdown_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in a text."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_notebook_prints_the_table_the_cli_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_config(tmp_path)
    cli = CliRunner().invoke(app, ["compare", str(config), "--strategies", "margin,random", "--seeds", "2"],
                             terminal_width=200)
    assert cli.exit_code == 0, cli.output
    text = execute(monkeypatch, config)
    assert "compare compare-digits" in text and ": 4 runs" in text
    assert markdown_rows(text) == table_rows(cli.output), "the same cells as the CLI's table"
    assert (next((tmp_path / "runs").glob("compare-*")) / "comparison.md").read_text() in text
    for run in ("margin-seed0", "random-seed1"):
        assert run in text, "the runs table lists every child with its AUBC"


def test_without_a_store_the_notebook_says_what_to_run_and_creates_nothing(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = small_config(tmp_path)
    with pytest.raises(CellExecutionError, match=r"no MLflow store at .*al-loop compare"):
        execute(monkeypatch, config)
    assert not (tmp_path / "runs").exists(), "no empty store was made"
