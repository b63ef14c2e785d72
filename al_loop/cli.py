"""The `al-loop` command: a thin layer over the Python API (al_loop.api)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from al_loop import api
from al_loop.errors import AlLoopError
from al_loop.ledger import RoundRecord

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Active-learning annotation loop: pick ambiguous examples, get them labeled, retrain, log.")
console = Console(stderr=False, width=140)
errors = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config, e.g. configs/quickstart.yaml")]


def _fail(error: AlLoopError) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    return typer.Exit(code=error.exit_code)


def _round_line(record: RoundRecord, prefix: str = "") -> str:
    m = record.metrics
    parts = [f"{prefix}round {record.round:>3}", f"labels {record.n_labels:>5}"]
    for key, label in (("accuracy", "acc"), ("macro_f1", "F1"), ("log_loss", "loss"), ("pick_ambiguity", "amb")):
        if key in m:
            parts.append(f"{label} {m[key]:.3f}")
    parts.append(f"{m.get('round_seconds', 0):.2f}s")
    return " · ".join(parts)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def run(config: ConfigArg,
        strategy: Annotated[str | None, typer.Option(help="Override loop.strategy.")] = None,
        seed: Annotated[int | None, typer.Option(help="Override seed.")] = None) -> None:
    """Run (or resume) the active-learning loop of CONFIG."""
    try:
        cfg = api.load_config(config).with_overrides(strategy=strategy, seed=seed)
        console.print(f"[bold]al-loop run[/] {cfg.run_name} · output {cfg.output_dir / cfg.run_name}")
        result = api.run_loop(cfg, on_round=lambda r: console.print(_round_line(r), highlight=False))
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(f"[green]done[/]: {result.stopped_because}. MLflow run {result.run_id}")
    console.print(f"open the MLflow UI: mlflow ui --backend-store-uri {cfg.tracking_uri} --host 127.0.0.1",
                  soft_wrap=True, highlight=False)


@app.command()
def compare(config: ConfigArg,
            strategies: Annotated[str | None, typer.Option(help="Comma-separated, e.g. margin,random.")] = None,
            seeds: Annotated[int | None, typer.Option(help="Number of seeds per strategy.")] = None) -> None:
    """Compare strategies in simulation: child MLflow runs per strategy and seed, a table and a plot."""
    try:
        cfg = api.load_config(config)
        names = strategies.split(",") if strategies else None
        with console.status("comparing...") as status:
            def progress(name: str, seed_: int, record: RoundRecord) -> None:
                status.update(_round_line(record, prefix=f"{name} seed {seed_} · "))
            result = api.compare(cfg, strategies=names, seeds=seeds, on_round=progress)
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(_rich_table(result))
    console.print(f"full-pool accuracy (every pool label): {result.full_pool_accuracy:.3f}")
    console.print(f"curves: {result.plot}")
    console.print(f"MLflow parent run {result.parent_run_id}; UI: mlflow ui --backend-store-uri {cfg.tracking_uri} "
                  "--host 127.0.0.1", soft_wrap=True, highlight=False)


def _rich_table(result: api.Comparison) -> Table:
    frame = result.table
    table = Table(title="strategies vs random", caption="AUBC: mean test accuracy over the budget. "
                  "labels→X%: labels for the mean curve to reach X% of the full-pool accuracy; "
                  "speed-up: random's labels / the strategy's")
    table.add_column("strategy")
    table.add_column("seeds", justify="right")
    table.add_column("final acc", justify="right")
    table.add_column("AUBC", justify="right")
    targets = [c.removeprefix("labels_to_") for c in frame.columns if c.startswith("labels_to_")]
    for target in targets:
        table.add_column(f"labels→{target.removesuffix('pct')}%", justify="right")
    for target in targets:
        if f"speedup_{target}" in frame.columns:
            table.add_column(f"speed-up {target.removesuffix('pct')}%", justify="right")
    for row in frame.to_dict("records"):
        cells = [str(row["strategy"]), str(row["seeds"]),
                 f"{row['final_accuracy']:.3f} ± {row['final_accuracy_sd']:.3f}",
                 f"{row['aubc']:.3f} ± {row['aubc_sd']:.3f}"]
        cells += [_count(row[f"labels_to_{t}"]) for t in targets]
        cells += [_ratio(row[f"speedup_{t}"]) for t in targets if f"speedup_{t}" in row]
        table.add_row(*cells)
    return table


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _count(value: object) -> str:
    return "not reached" if _missing(value) else f"{value:.0f}"


def _ratio(value: object) -> str:
    return "—" if _missing(value) else f"{value:.2f}x"
