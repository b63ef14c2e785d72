"""The `al-loop` command: a thin layer over the Python API (al_loop.api)."""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperArgument, TyperGroup, TyperOption

from al_loop import __version__, api
from al_loop.curves import aubc
from al_loop.errors import AlLoopError, BrokenStateError, StorageError, storage_error
from al_loop.redact import redact

if TYPE_CHECKING:  # the heavy modules (scikit-learn, pandas, MLflow) load inside the commands that need them
    import pandas as pd

    from al_loop.ledger import RoundRecord


class _PlainOption(TyperOption):
    """An option shown as in most CLIs: `--seed INTEGER`, and a flag without a type (typer shows `<bool>`)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        label = self.display_type(ctx).strip("<>")
        return _TYPE_NAMES.get(label, label.upper())


class _PlainArgument(TyperArgument):
    """An argument shown as its upper-case name, `CONFIG` (typer shows `{config}` in usage lines)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "FILE",
               "directory": "DIRECTORY"}


def _plain(params: list[Any]) -> list[Any]:
    """The same parameters, rendered plainly in help (only how they are shown changes: the classes add no state)."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _PlainOption
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument
    return params


class _Guarded(TyperGroup):
    """Every command: a problem the user can fix (an AlLoopError, a disk that refuses a write, a damaged SQLite
    file) ends with its message and exit code instead of a traceback. Help reads like a usual CLI
    (`Usage: al-loop run [OPTIONS] CONFIG`, `--seed INTEGER`)."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _plain(super().get_params(ctx))

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, TyperGroup) and "get_params" not in vars(command):
            original = command.get_params
            command.get_params = lambda ctx_: _plain(original(ctx_))  # type: ignore[method-assign]
        return command

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except AlLoopError as error:
            raise _fail(error) from None
        except Exception as error:
            translated = _system_error(error)
            if translated is None:
                raise
            raise _fail(translated) from None


def _system_error(error: Exception) -> AlLoopError | None:
    """The AlLoopError for an error the user can fix (disk full, read-only, damaged SQLite file, a tracking server
    that stopped answering), else None (the error is raised as it is)."""
    if isinstance(error, OSError):
        return storage_error(error)
    if not isinstance(error, sqlite3.Error):
        if "mlflow" not in sys.modules:  # no MLflow call ran, so this is no MLflow error
            return None
        from al_loop.tracking import mlflow_error

        return mlflow_error(error)
    code = getattr(error, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return StorageError(f"the disk is full ({error}). Free some space and re-run the same command: each ledger "
                            "write is all-or-nothing, so what was recorded before is kept")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return BrokenStateError(f"a SQLite file of this run (the ledger or the MLflow store) is damaged ({error}). "
                                "Restore it from a backup, or move it aside and re-run")
    return None


app = typer.Typer(cls=_Guarded, add_completion=False, no_args_is_help=True,
                  help="Active-learning annotation loop: pick ambiguous examples, get them labeled, retrain, log.")
console = Console(stderr=False, width=140)
errors = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config, e.g. configs/quickstart.yaml")]


def _fail(error: AlLoopError) -> typer.Exit:
    # the message is printed as plain text: data in it (ids, file names) may hold brackets such as [/]
    errors.print(Text.assemble(("error:", "bold red"), " ", redact(str(error))), highlight=False, soft_wrap=True)
    return typer.Exit(code=error.exit_code)


def _styled(head: str, style: str, rest: str) -> Text:
    """A styled head and plain text: ids, paths and data in `rest` may hold brackets that rich would read as markup."""
    return Text.assemble((head, style), rest)


def _round_line(record: RoundRecord, prefix: str = "") -> str:
    m = record.metrics
    parts = [f"{prefix}round {record.round:>3}", f"labels {record.n_labels:>5}"]
    for key, label in (("accuracy", "acc"), ("macro_f1", "F1"), ("log_loss", "loss"), ("pick_ambiguity", "amb"),
                       ("agreement/round/krippendorff_alpha", "alpha"), ("consensus/adjudicated", "adjudicated")):
        if key in m:
            parts.append(f"{label} {m[key]:.0f}" if label == "adjudicated" else f"{label} {m[key]:.3f}")
    parts.append(f"{m.get('round_seconds', 0):.2f}s")
    return " · ".join(parts)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"al-loop {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
          version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Show the version and exit.")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    progress = logging.getLogger("al_loop.labelstudio.server")  # what a start of the local server waits for
    progress.setLevel(logging.DEBUG if verbose else logging.INFO)
    progress.propagate = False
    if not any(isinstance(handler, _ConsoleHandler) for handler in progress.handlers):
        progress.addHandler(_ConsoleHandler())


class _ConsoleHandler(logging.Handler):
    """Progress messages of the library, printed as plain lines on the console."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(record.getMessage(), highlight=False, soft_wrap=True)


StrategyOpt = Annotated[str | None, typer.Option(
    help="Override loop.strategy (default: the config's), e.g. margin, random.", show_default=False)]
SeedOpt = Annotated[int | None, typer.Option(help="Override seed (default: the config's).", show_default=False)]


@app.command()
def run(config: ConfigArg, strategy: StrategyOpt = None, seed: SeedOpt = None,
        wait: Annotated[bool, typer.Option("--wait/--no-wait",
                                           help="Wait for annotators (default), or push the batch and exit.")] = True
        ) -> None:
    """Run (or resume) the active-learning loop of CONFIG."""
    _loop(config, strategy, seed, wait=wait, command="run")


@app.command()
def sync(config: ConfigArg, strategy: StrategyOpt = None, seed: SeedOpt = None,
         requeue_empty: Annotated[bool, typer.Option(
             "--requeue-empty", help="Serve tasks submitted without a choice to other annotators (raises their "
                                     "overlap in Label Studio).")] = False) -> None:
    """Pull answers, retrain and log the round if enough is answered, push the next batch; never waits."""
    _loop(config, strategy, seed, wait=False, command="sync", requeue_empty=requeue_empty)


def _loop(config: Path, strategy: str | None, seed: int | None, wait: bool, command: str,
          requeue_empty: bool = False) -> None:
    try:
        cfg = api.load_config(config).with_overrides(strategy=strategy, seed=seed)
        header = f" {cfg.run_name} · output {cfg.output_dir / cfg.run_name}"
        console.print(_styled(f"al-loop {command}", "bold", header), soft_wrap=True, highlight=False)
        result = api.run_loop(cfg, wait=wait, on_round=lambda r: console.print(_round_line(r), highlight=False),
                              requeue_empty=requeue_empty)
    except AlLoopError as error:
        raise _fail(error) from None
    _print_people(result, config, requeue_empty)
    if result.not_pulled:
        console.print(_styled("note", "yellow", f": {result.not_pulled.replace('CONFIG', str(config))}"),
                      soft_wrap=True, highlight=False)
    if result.finished:
        console.print(_styled("done", "green", f": {result.stopped_because}. MLflow run {result.run_id}"),
                      soft_wrap=True, highlight=False)
    else:
        console.print(_styled("paused", "yellow", f": {result.stopped_because}. Run `al-loop sync {config}` when "
                                                  "annotators have worked."), soft_wrap=True, highlight=False)
    if result.labelstudio:
        url, project = result.labelstudio.get("labelstudio_url"), result.labelstudio.get("labelstudio_project")
        console.print(f"Label Studio: {redact(f'{url}/projects/{project}/data')} (sort by al_order: al-loop's "
                      "order across rounds; al_rank: 1 = most ambiguous of its round)",
                      soft_wrap=True, highlight=False)
        _print_login(cfg)
        _connect_serve(cfg)
    console.print(f"MLflow UI: {_mlflow_ui(cfg.tracking_uri)}, then open {_run_page(cfg.tracking_uri, result.run_id)}",
                  soft_wrap=True, highlight=False)


def _connect_serve(cfg: api.Config) -> None:
    """With serve.connect: connect a running `al-loop serve` to the project (idempotent), or say how."""
    if not cfg.serve.connect:
        return
    from al_loop.serve.connect import connect_if_serving

    try:
        note = connect_if_serving(cfg)
    except AlLoopError as error:
        note = f"serve.connect: could not connect al-loop serve: {error}"
    if note:
        console.print(redact(note), soft_wrap=True, highlight=False)


def _run_page(tracking_uri: str, run_id: str) -> str:
    """The experiment's runs page in the UI's training view (where the learning curves are)."""
    from mlflow.tracking import MlflowClient

    return api.ui_url(MlflowClient(tracking_uri).get_run(run_id).info.experiment_id)


def _mlflow_ui(tracking_uri: str) -> str:
    """The command that opens the MLflow UI on a store, with the `mlflow` installed beside this Python (e.g.
    .venv/bin/mlflow) when there is one: a plain `mlflow` may not be on PATH in a virtual environment."""
    beside = Path(sys.executable).with_name("mlflow")
    executable = str(beside) if beside.exists() else "mlflow"
    return f"{executable} ui --backend-store-uri {redact(tracking_uri)} --host 127.0.0.1 --port 5000"


def _print_people(result: api.LoopResult, config: Path, requeued: bool) -> None:
    """What people changed that the user should know: labels changed after the run finished, and
    submissions without a choice that hold examples up."""
    if result.relabeled:
        shown = ", ".join(f"{e}: {old or 'none'} → {new or 'waiting again'}" for e, old, new in result.relabeled[:10])
        more = f" and {len(result.relabeled) - 10} more" if len(result.relabeled) > 10 else ""
        count = len(result.relabeled)
        console.print(_styled(f"{count} label{'s' if count > 1 else ''} changed since the run finished", "yellow",
                              f": {shown}{more}; retrained, final metrics and model logged again"), soft_wrap=True,
                      highlight=False)
    for row in result.empty_submissions:
        fix = "requeued for other annotators" if requeued else (
            f"choose a label in it, delete it, or run `al-loop sync {config} --requeue-empty`")
        console.print(_styled("submitted without a choice", "yellow",
                              f": task {row['task_id']} (example {row['example_id']}, round {row['round']}) by "
                              f"{row['annotator']}; Label Studio counts it as done: {fix}"),
                      soft_wrap=True, highlight=False)


def _print_login(cfg: api.Config) -> None:
    from al_loop.config import LabelStudioAnnotatorConfig
    from al_loop.labelstudio.connection import local_server

    if isinstance(cfg.annotator, LabelStudioAnnotatorConfig) and cfg.annotator.url is None:
        server = local_server(cfg.annotator, cfg.output_dir)
        console.print(f"log in as {server.credentials().username}; password and API token in "
                      f"{server.credentials_path} (readable by you only)", soft_wrap=True, highlight=False)


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
            result = api.compare(cfg, strategies=names, seeds=seeds, on_round=progress, on_done=_print_finished)
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(_rich_table(result.table))
    console.print(f"full-pool accuracy (every pool label): {result.full_pool_accuracy:.3f}")
    console.print(f"curves: {result.plot}")
    console.print(f"MLflow parent run {result.parent_run_id}; UI: {_mlflow_ui(cfg.tracking_uri)}, then open "
                  f"{api.ui_url(result.experiment_id)} (expand the run compare-{result.table['dataset'].iloc[0]})",
                  soft_wrap=True, highlight=False)


@app.command()
def route(config: ConfigArg,
          input: Annotated[Path | None, typer.Option(
              "--input", help="CSV/Parquet/JSONL of new rows (same columns); not needed with --explain.")] = None,
          explain: Annotated[bool, typer.Option(
              "--explain", help="Show what each target error rate (epsilon) would automate with this model, on its "
                                "held-out rows; routes nothing.")] = False,
          run_id: Annotated[str | None, typer.Option(help="MLflow run whose model to use (default: the loop's).")]
          = None,
          model: Annotated[str | None, typer.Option(
              "--model", help="Registered model version to use: NAME@ALIAS (e.g. al-loop@latest), NAME/VERSION or "
                              "models:/NAME@ALIAS; loaded only if a ledger of output_dir recorded it.")]
          = None, strategy: StrategyOpt = None, seed: SeedOpt = None) -> None:
    """Auto-accept confident predictions, send the rest to Label Studio for review, record every decision."""
    from al_loop.route import describe
    from al_loop.route import explain as explain_route
    from al_loop.route import route as route_rows

    if input is None and not explain:
        raise _fail(AlLoopError("give --input with the new rows to route (same columns as the pool), or --explain to "
                                "see the epsilon / automation trade-off without routing"))
    try:
        cfg = api.load_config(config).with_overrides(strategy=strategy, seed=seed)
        if explain:
            _print_tradeoff(explain_route(cfg, run_id=run_id, model=model))
        if input is None:  # --explain alone (checked above)
            return
        result = route_rows(cfg, input, run_id=run_id, model=model)
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(_styled("" if result.within_epsilon else "warning: ", "yellow", describe(result)), soft_wrap=True,
                  highlight=False)
    console.print(f"model of run {result.model_run_id}; auto-accepted {result.auto}, sent for review {result.review} "
                  f"({result.pushed} new tasks pushed); decisions: {result.decisions}", soft_wrap=True,
                  highlight=False)


def _print_tradeoff(explanation: Any) -> None:
    """The epsilon / automation table of `route --explain`."""
    routing = explanation.routing
    console.print(f"What each target error rate would automate with the model of run {explanation.model_run_id}, "
                  f"calibrated ({routing.procedure}, {routing.confidence_level:.0%} confidence) on "
                  f"{explanation.calibration.sources}:", soft_wrap=True, highlight=False)
    console.print(f"  {'epsilon':>8}  {'automated':>9}  {'95% band':>13}  {'hi':>6}  {'error bound':>11}",
                  highlight=False)
    for epsilon, t, (low, high) in explanation.rows:
        bound = "-" if t.error_upper_bound is None or not t.auto_count else f"{t.error_upper_bound:.2%}"
        hi = f"{t.hi:.4f}" if t.auto_count else "-"
        mark = "  <- routing.epsilon" if epsilon == routing.epsilon else ""
        console.print(f"  {epsilon:>8.1%}  {t.share_automated:>9.1%}  {f'{low:.0%}-{high:.0%}':>13}  {hi:>6}  "
                      f"{bound:>11}{mark}", highlight=False)
    console.print("Set routing.epsilon in the config to the error rate you can accept; a larger held-out set "
                  "(evaluation.size, a test split) narrows the bound and automates more at the same epsilon.",
                  soft_wrap=True, highlight=False)


@app.command()
def audit(config: ConfigArg,
          out: Annotated[Path, typer.Option("--out", help="Output file: labels.parquet or labels.csv.")],
          strategy: StrategyOpt = None, seed: SeedOpt = None) -> None:
    """Export every label with its provenance: answers, who, when, seconds, round, model guess, consensus."""
    from al_loop.audit import export_audit

    try:
        result = export_audit(api.load_config(config).with_overrides(strategy=strategy, seed=seed), out)
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(f"wrote {result.labels} labels ({result.adjudicated} decided by specialists) to {result.path}",
                  highlight=False, soft_wrap=True)


@app.command()
def benchmark(config: Annotated[Path, typer.Argument(help="Benchmark suite YAML, e.g. configs/benchmark.yaml")],
              seeds: Annotated[int | None, typer.Option(help="Override the number of seeds.")] = None,
              jobs: Annotated[int | None, typer.Option(help="Parallel worker processes (seeds in parallel).")] = None,
              strategies: Annotated[str | None, typer.Option(
                  help="Comma-separated subset of the suite's strategies (random included); finished runs are "
                       "reused.")] = None,
              ) -> None:
    """Datasets x strategies x seeds in simulation against random: MLflow runs, a results table, plots."""
    from rich.progress import Progress

    try:
        suite, configs = api.load_benchmark(config)
        chosen = [s.strip() for s in strategies.split(",")] if strategies else None
        total = len(chosen or suite.strategies) * len(configs) * (seeds or suite.seeds)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("benchmark runs", total=total)

            def done(run: api.SeedRun) -> None:
                progress.update(task, advance=1, description=f"{run.dataset} {run.strategy} seed {run.seed}")
                if not console.is_terminal:  # no progress bar in a file or a pipe: a line per run instead
                    _print_finished(run)

            result = api.run_benchmark(config, seeds=seeds, n_jobs=jobs, on_done=done, strategies=chosen)
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(api.results_markdown(result.table), highlight=False, soft_wrap=True)
    console.print(f"results: {result.folder / 'results.md'} and results.csv; plots: "
                  f"{', '.join(str(p) for p in result.plots.values())}", soft_wrap=True, highlight=False)
    console.print(f"MLflow parent run {result.parent_run_id} (experiment {suite.tracking.experiment}); UI: "
                  f"{_mlflow_ui(suite.tracking.uri or '')}, then open "
                  f"{api.ui_url(result.experiment_id)}", highlight=False, soft_wrap=True)


def _print_finished(run: api.SeedRun) -> None:
    """One line per finished run (also where the status line is not shown: output to a file or a pipe)."""
    console.print(f"finished {run.dataset} {run.strategy} seed {run.seed}: {run.steps[-1]:.0f} labels, final acc "
                  f"{run.accuracy[-1]:.3f}, AUBC {aubc(run.steps, run.accuracy):.3f} (run {run.run_id})",
                  highlight=False, soft_wrap=True)


def _rich_table(frame: pd.DataFrame) -> Table:
    """compare's table: the same cells as comparison.md and the notebook (al_loop.benchmark.compare_view)."""
    shown = api.compare_view(frame)
    table = Table(title="strategies vs random", caption="AUBC: mean test accuracy over the budget (± sd over seeds). "
                  "labels→X%: labels for the mean curve to reach X% of the full-pool accuracy (>N: not within N); "
                  "speed-up: random's labels / the strategy's (≥: random did not get there)")
    for column in shown.columns:
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for row in shown.itertuples(index=False):
        table.add_row(*map(str, row))
    return table


labelstudio_app = typer.Typer(cls=_Guarded, no_args_is_help=True, help="The local Label Studio server (127.0.0.1).")
app.add_typer(labelstudio_app, name="labelstudio")


def _server(config: Path):
    from al_loop.config import LabelStudioAnnotatorConfig
    from al_loop.labelstudio.connection import local_server

    cfg = api.load_config(config)
    settings = cfg.annotator if isinstance(cfg.annotator, LabelStudioAnnotatorConfig) else \
        LabelStudioAnnotatorConfig(kind="labelstudio")
    if settings.url is not None:
        raise AlLoopError(f"annotator.url is set ({redact(settings.url)}): that server is not managed by al-loop")
    return cfg, local_server(settings, cfg.output_dir)


@labelstudio_app.command("start")
def labelstudio_start(config: ConfigArg) -> None:
    """Start the local server (data under <output_dir>/labelstudio) and wait until it answers."""
    from al_loop.labelstudio.server import mask

    try:
        cfg, server = _server(config)
        started = server.start()  # says what it waits for (al_loop.labelstudio.server's log)
        credentials = server.credentials()
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(f"Label Studio {'started' if started else 'already running'}: {server.url}", highlight=False)
    console.print(f"log in as {credentials.username}; password and API token (token {mask(credentials.token)}) in "
                  f"{server.credentials_path}", soft_wrap=True, highlight=False)
    _connect_serve(cfg)


@labelstudio_app.command("stop")
def labelstudio_stop(config: ConfigArg) -> None:
    """Stop the local server."""
    try:
        _, server = _server(config)
        stale = server.remove_stale_pid()
        stopped = server.stop()
    except AlLoopError as error:
        raise _fail(error) from None
    if stale is not None:
        named = f"process {stale} is" if stale > 0 else "it names no process that is"
        console.print(f"removed the stale {server.pid_path}: {named} not the Label Studio server al-loop started "
                      "(nothing was signalled)", soft_wrap=True, highlight=False)
    console.print("stopped" if stopped else "not running")


@labelstudio_app.command("status")
def labelstudio_status(config: ConfigArg) -> None:
    """Say whether the local server runs, and where."""
    try:
        _, server = _server(config)
        state = server.status()
    except AlLoopError as error:
        raise _fail(error) from None
    console.print(f"{state}: {server.url} (data in {server.data_dir})", highlight=False)
    if state == "stopped":
        raise typer.Exit(code=1)


@app.command()
def serve(config: ConfigArg) -> None:
    """Serve the run's model as a Label Studio ML backend and drive the loop from Label Studio's webhooks."""
    import signal
    import threading

    from al_loop.serve.service import Service

    try:
        cfg = api.load_config(config)
        service = Service(cfg, on_round=lambda r: console.print(_round_line(r), highlight=False))
        service.start()
    except AlLoopError as error:
        raise _fail(error) from None
    logging.getLogger("al_loop.serve").setLevel(logging.INFO)
    for name in ("al_loop.serve.service", "al_loop.serve.worker"):
        logger = logging.getLogger(name)
        logger.propagate = False
        if not any(isinstance(handler, _ConsoleHandler) for handler in logger.handlers):
            logger.addHandler(_ConsoleHandler())
    console.print(f"al-loop serve: {service.url} (ML backend: /predict, /setup, /health; webhook: /webhook); secret "
                  f"from {service.secret.source}", soft_wrap=True, highlight=False)
    if not cfg.serve.connect:
        console.print("serve.connect is off: add the ML backend (basic auth user al-loop, the secret as password) and "
                      "the webhook (header X-Al-Loop-Secret) in the project's settings, or set serve.connect: true",
                      soft_wrap=True, highlight=False)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping (after the sync under way, if any) ...", highlight=False)
        service.stop()
