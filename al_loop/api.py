"""The Python API, mirroring the commands: load a config, run a loop, compare strategies.

`run_loop` and `compare` check first that the output folder can be written and the MLflow store can be used, so
a problem there is reported before any ledger or MLflow run is created.

Importing this module is cheap: the names below are loaded on first use (scikit-learn, pandas and MLflow take
seconds to import, and `al-loop --help` should not wait for them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from al_loop.workspace import Workspace, prepare

_LAZY = {
    "BenchmarkResult": "al_loop.benchmark",
    "SeedRun": "al_loop.benchmark",
    "load_benchmark": "al_loop.benchmark",
    "results_markdown": "al_loop.benchmark",
    "run_benchmark": "al_loop.benchmark",
    "StoredSuite": "al_loop.benchmark",
    "compare_view": "al_loop.benchmark",
    "latest_parent": "al_loop.benchmark",
    "open_store": "al_loop.benchmark",
    "store_of": "al_loop.benchmark",
    "suite_from_mlflow": "al_loop.benchmark",
    "ui_url": "al_loop.benchmark",
    "Comparison": "al_loop.compare",
    "Config": "al_loop.config",
    "load_config": "al_loop.config",
    "LoopResult": "al_loop.loop",
    "Workspace": "al_loop.workspace",
    "prepare": "al_loop.workspace",
}


def __getattr__(name: str) -> Any:
    """Load a public name of the API from its module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def check_outputs(config: Config) -> None:
    """Refuse an output folder that is a file or cannot be written, and an unreachable or damaged MLflow store."""
    from al_loop.tracking import check_store
    from al_loop.workspace import check_output_dir

    check_output_dir(config)
    check_store(config.tracking_uri)


def run_loop(config: Config, *, workspace: Workspace | None = None, **options: Any) -> LoopResult:
    """Run (or resume) the loop of a config (`al_loop.loop.run_loop`: options `wait`, `on_round`, `annotator`,
    `requeue_empty`, ...), after checking the outputs, the batch sizes and the budget."""
    from al_loop import loop as _loop
    from al_loop.workspace import prepare as _prepare

    check_outputs(config)
    workspace = workspace or _prepare(config)
    _loop.check_plan(config, len(workspace.splits.pool))
    config.loop.check_budget()
    return _loop.run_loop(config, workspace=workspace, **options)


def compare(config: Config, **options: Any) -> Comparison:
    """Compare strategies in simulation (`al_loop.compare.compare`: options `strategies`, `seeds`, `on_round`),
    after checking the outputs and the budget."""
    from al_loop import compare as _compare

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
