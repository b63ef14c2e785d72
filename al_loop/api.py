"""The Python API, mirroring the commands: load a config, run a loop, compare strategies."""

from al_loop.compare import Comparison, compare
from al_loop.config import Config, load_config
from al_loop.loop import LoopResult, run_loop
from al_loop.workspace import Workspace, prepare

__all__ = ["Comparison", "Config", "LoopResult", "Workspace", "compare", "load_config", "prepare", "run_loop"]
