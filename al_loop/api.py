"""The Python API, mirroring the commands: load a config, run a loop, compare strategies."""

from al_loop.benchmark import BenchmarkResult, SeedRun, load_benchmark, results_markdown, run_benchmark
from al_loop.compare import Comparison, compare
from al_loop.config import Config, load_config
from al_loop.loop import LoopResult, run_loop
from al_loop.workspace import Workspace, prepare

__all__ = [
    "BenchmarkResult",
    "Comparison",
    "Config",
    "LoopResult",
    "SeedRun",
    "Workspace",
    "compare",
    "load_benchmark",
    "load_config",
    "prepare",
    "results_markdown",
    "run_benchmark",
    "run_loop",
]
