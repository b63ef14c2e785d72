"""The Python API, mirroring the commands: load a config, run a loop, compare strategies.

`run_loop` and `compare` check first that the output folder can be written and the MLflow store can be used, so
a problem there is reported before any ledger or MLflow run is created.
"""

from __future__ import annotations

import functools
from typing import Any

from al_loop import compare as _compare
from al_loop import loop as _loop
from al_loop.benchmark import (
    BenchmarkResult,
    SeedRun,
    StoredSuite,
    compare_view,
    latest_parent,
    load_benchmark,
    open_store,
    results_markdown,
    run_benchmark,
    store_of,
    suite_from_mlflow,
    ui_url,
)
from al_loop.compare import Comparison
from al_loop.config import Config, load_config
from al_loop.loop import LoopResult
from al_loop.tracking import check_store
from al_loop.workspace import Workspace, check_output_dir, prepare


def check_outputs(config: Config) -> None:
    """Refuse an output folder that is a file or cannot be written, and an unreachable or damaged MLflow store."""
    check_output_dir(config)
    check_store(config.tracking_uri)


@functools.wraps(_loop.run_loop)
def run_loop(config: Config, *, workspace: Workspace | None = None, **options: Any) -> LoopResult:
    check_outputs(config)
    workspace = workspace or prepare(config)
    _loop.check_plan(config, len(workspace.splits.pool))
    config.loop.check_budget()
    return _loop.run_loop(config, workspace=workspace, **options)


@functools.wraps(_compare.compare)
def compare(config: Config, **options: Any) -> Comparison:
    check_outputs(config)
    config.loop.check_budget()
    return _compare.compare(config, **options)


__all__ = [
    "BenchmarkResult",
    "Comparison",
    "Config",
    "LoopResult",
    "SeedRun",
    "StoredSuite",
    "Workspace",
    "check_outputs",
    "compare",
    "compare_view",
    "latest_parent",
    "load_benchmark",
    "load_config",
    "open_store",
    "prepare",
    "results_markdown",
    "run_benchmark",
    "run_loop",
    "store_of",
    "suite_from_mlflow",
    "ui_url",
]
