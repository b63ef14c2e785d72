"""Bad or unusual inputs, through the real command: a clear message naming the problem and the fix, the exit code
documented in the README, and nothing half-written (no ledger, no MLflow store or run when an input is refused)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from al_loop import errors
from al_loop.cli import app
from al_loop.config import load_config

RUN = Path("runs") / "margin-seed0"
POOL_HEADER = "id,text,label\n"
POOL_ROWS = "".join(f"t{i},{'good fine nice' if i % 2 else 'bad awful poor'} words {i},{'pos' if i % 2 else 'neg'}\n"
                    for i in range(60))


def _invoke(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _said(result: Result) -> str:
    """What the command printed, with runs of whitespace as one space."""
    return " ".join(result.output.split())


def _write_config(folder: Path, **sections: Any) -> Path:
    """A small config in `folder`, its MLflow store and output folder beside it (both relative to the config)."""
    config: dict[str, Any] = {
        "dataset": {"name": "digits", "test_size": 0.3},
        "loop": {"strategy": "margin", "batch_size": 10, "initial_size": 20, "budget": 30},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}", "log_model": False},
        "seed": 0,
        "output_dir": "runs",
    }
    for key, value in sections.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and isinstance(config.get(key), dict) \
            else value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _pool_config(folder: Path, name: str, content: bytes, **dataset: Any) -> Path:
    (folder / name).write_bytes(content)
    return _write_config(folder, dataset={"name": None, "path": name, "text_column": "text", **dataset})


def _gzip_cut(text: str) -> bytes:
    whole = gzip.compress(text.encode())
    return whole[: len(whole) // 2]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens there


def _read_only(folder: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere it has a permission bit; the kernel's own folders refuse it
        return Path("/sys/al-loop-test-output")
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "runs"


Setup = Callable[[Path], list[object]]

# one row per kind of refused input: how to make it -> exit code and phrases of the message
REFUSED: list[tuple[str, Setup, int, list[str]]] = [
    ("budget below initial_size", lambda t: ["run", _write_config(t, loop={"budget": 10})], 2,
     ["loop.budget (10) is below loop.initial_size (20)", "raise loop.budget"]),
    ("seed of 2**32 in the config", lambda t: ["run", _write_config(t, seed=2**32)], 2,
     ["seed: seed must be between 0 and 4294967295"]),
    ("seed of 2**32 on the command line", lambda t: ["run", _write_config(t), "--seed", 2**32], 2,
     ["--seed 4294967296", "seed must be between 0 and 4294967295"]),
    ("negative seed on the command line", lambda t: ["sync", _write_config(t), "--seed", -1], 2,
     ["--seed -1", "seed must be between 0 and 4294967295"]),
    ("output_dir is a file", lambda t: ((t / "runs").write_text("x"), ["run", _write_config(t)])[1], 2,
     ["is a file, not a folder", "Set output_dir to a folder"]),
    ("output_dir cannot be written", lambda t: ["run", _write_config(t, output_dir=str(_read_only(t / "ro")))], 7,
     ["cannot write", "set output_dir to a folder you can write"]),
    ("ledger is garbage", lambda t: (_plant(t / RUN / "ledger.sqlite", b"not a database " * 300),
                                     ["run", _write_config(t)])[1], 6,
     ["ledger.sqlite is damaged", "restore it from a backup", "move it aside"]),
    ("MLflow store is garbage", lambda t: (_plant(t / "mlflow.db", b"garbage " * 2000),
                                           ["run", _write_config(t)])[1], 6,
     ["MLflow store", "mlflow.db is damaged", "move it aside", "the ledger keeps every label"]),
    ("MLflow store is truncated", lambda t: (_truncated_sqlite(t / "mlflow.db"), ["run", _write_config(t)])[1], 6,
     ["mlflow.db is damaged (truncated:", "move it aside"]),
    ("MLflow server unreachable", lambda t: ["run", _write_config(
        t, tracking={"uri": f"http://127.0.0.1:{_closed_port()}"})], 4,
     ["MLflow tracking server http://127.0.0.1:", "is unreachable", "fix tracking.uri"]),
    ("data text with [/] in a duplicated id", lambda t: ["run", _pool_config(
        t, "pool.csv", (POOL_HEADER + "a[/]b,x,pos\na[/]b,y,neg\n" + POOL_ROWS).encode())], 2,
     ["duplicate ids, e.g. ['a[/]b']"]),
    ("missing text: row numbers stay visible", lambda t: ["run", _pool_config(
        t, "pool.csv", (POOL_HEADER + "a,,pos\n" + POOL_ROWS + "b,,neg\n").encode())], 2,
     ["2 missing value(s) (example row(s) 1, 62; 1 = the first example)"]),
    ("empty CSV", lambda t: ["run", _pool_config(t, "pool.csv", b"")], 2,
     ["pool.csv: the file is empty (0 bytes)", "write the pool into it again"]),
    ("blank CSV", lambda t: ["run", _pool_config(t, "pool.csv", b"\n\n")], 2,
     ["pool.csv: the file holds no columns", "write a header row"]),
    ("non-UTF-8 CSV", lambda t: ["run", _pool_config(
        t, "pool.csv", (POOL_HEADER + POOL_ROWS).encode() + "z1,caf\xe9 au lait,pos\n".encode("latin-1"))], 2,
     ["pool.csv: line 62 is not UTF-8 text", "save the file as UTF-8"]),
    ("truncated gzip", lambda t: ["run", _pool_config(t, "pool.csv.gz", _gzip_cut(POOL_HEADER + POOL_ROWS * 5))], 2,
     ["pool.csv.gz: the compressed file is truncated or damaged", "download it again"]),
    ("broken JSONL line", lambda t: ["run", _pool_config(
        t, "pool.jsonl", b'{"id": "a", "text": "x", "label": "pos"}\n{"id": "b", "text": "y", "label": "neg"}\n'
        b'{"id": "c", "text": "z", "label": \n{"id": "d", "text": "w", "label": "pos"}\n')], 2,
     ["pool.jsonl: line 3 is not a JSON object", "fix that line"]),
    ("corrupt Parquet", lambda t: ["run", _pool_config(t, "pool.parquet", b"PAR1 not really parquet " * 20)], 2,
     ["pool.parquet: not a readable Parquet file", "write it again"]),
    ("empty Parquet", lambda t: ["run", _pool_config(t, "pool.parquet", b"")], 2,
     ["pool.parquet: the file is empty (0 bytes)"]),
    ("empty config file", lambda t: ((t / "config.yaml").write_text(""), ["run", t / "config.yaml"])[1], 2,
     ["config.yaml is empty", "at least a dataset section"]),
    ("YAML syntax error", lambda t: ((t / "config.yaml").write_text(
        "dataset:\n  name: digits\nloop: {budget: 30\nseed: 0\n"), ["run", t / "config.yaml"])[1], 2,
     ["config.yaml, line 4, column 5 is not valid YAML", "Fix the syntax"]),
]


def _truncated_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO runs (name) VALUES (?)", [(f"run {i}" * 20,) for i in range(2000)])
    db.close()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _plant(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.mark.parametrize(("setup", "code", "phrases"), [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED])
def test_a_refused_input_gets_its_exit_code_a_clear_message_and_nothing_written(
        tmp_path: Path, setup: Setup, code: int, phrases: list[str]) -> None:
    args = setup(tmp_path)
    planted = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    started = time.monotonic()
    result = _invoke(*args)
    said = _said(result)
    assert isinstance(result.exception, SystemExit), f"not a clean exit: {result.exception!r}\n{result.output}"
    assert result.exit_code == code, said
    assert "error: " in said and "Traceback" not in said, said
    for phrase in phrases:
        assert phrase in said
    assert time.monotonic() - started < 60, "a refusal must be fast (no minutes of silent retries)"
    # nothing half-written: no ledger and no MLflow store where there was none; planted files untouched
    for path in (tmp_path / RUN / "ledger.sqlite", tmp_path / "mlflow.db"):
        assert path in planted or not path.exists(), f"{path} was created by a refused command"
    for path, content in planted.items():
        assert path.read_bytes() == content, f"{path} was modified"


def test_every_error_class_has_a_documented_exit_code() -> None:
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    import importlib
    import pkgutil

    import al_loop

    for module in pkgutil.walk_packages(al_loop.__path__, "al_loop."):  # error classes defined in any module
        importlib.import_module(module.name)
    classes, todo = [], [errors.AlLoopError]
    while todo:
        classes.append(error_class := todo.pop())
        todo += error_class.__subclasses__()
    assert {c.__name__ for c in classes} >= {"BrokenStateError", "StorageError", "ModelRefused", "ServerError"}
    for error_class in classes:
        assert f"`{error_class.exit_code}` | `{error_class.__name__}`" in readme, error_class.__name__


# -- state on disk and the disk itself ---------------------------------------------------------------------------


def _finished_run(folder: Path, mlflow_uri: str, budget: int = 30, **sections: Any) -> Path:
    """A config whose loop has run to its budget (a text pool in `folder`); returns the config."""
    (folder / "pool.csv").write_text(POOL_HEADER + POOL_ROWS)
    config = _write_config(folder, dataset={"name": None, "path": "pool.csv", "text_column": "text"},
                           loop={"budget": budget}, tracking={"uri": mlflow_uri}, **sections)
    result = _invoke("run", config)
    assert result.exit_code == 0, result.output
    return config


def _labels(ledger: Path) -> tuple[int, int]:
    with sqlite3.connect(ledger) as db:
        labeled = db.execute("SELECT COUNT(*) FROM examples WHERE status = 'labeled'").fetchone()[0]
        answers = db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0]
    return labeled, answers


def test_a_truncated_ledger_is_reported_with_its_path_and_left_as_it_is(tmp_path: Path, mlflow_uri: str) -> None:
    config = _finished_run(tmp_path, mlflow_uri)
    ledger = tmp_path / RUN / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:  # fold the write-ahead log in, then cut the file in half
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.write_bytes(ledger.read_bytes()[: ledger.stat().st_size // 2])
    cut = ledger.read_bytes()
    result = _invoke("run", config)
    said = _said(result)
    assert result.exit_code == 6 and isinstance(result.exception, SystemExit), said
    assert f"the ledger {ledger} is damaged" in said and "restore it from a backup" in said
    assert f"mv {ledger} {ledger}.broken" in said
    assert ledger.read_bytes() == cut, "a damaged ledger is never rewritten"


def _disk_full(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_logging_exits_with_its_code_and_a_rerun_loses_nothing(
        tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from al_loop.tracking import Tracker

    config = _finished_run(tmp_path, mlflow_uri, budget=30)
    before = _labels(tmp_path / RUN / "ledger.sqlite")
    _write_config(tmp_path, dataset={"name": None, "path": "pool.csv", "text_column": "text"},
                  loop={"budget": 40}, tracking={"uri": mlflow_uri})
    monkeypatch.setattr(Tracker, "log_step", _disk_full)
    result = _invoke("run", config)
    said = _said(result)
    assert result.exit_code == 7 and isinstance(result.exception, SystemExit), said
    assert "no space left on the device" in said and "Free some space" in said and "re-run the same command" in said
    during = _labels(tmp_path / RUN / "ledger.sqlite")
    assert during[0] >= before[0] and during[1] >= before[1], "what was labeled before the full disk is kept"
    monkeypatch.undo()
    result = _invoke("run", config)
    assert result.exit_code == 0, result.output
    assert _labels(tmp_path / RUN / "ledger.sqlite")[0] == 40, "the resumed run reaches its budget"


def test_a_tracking_server_lost_during_a_run_is_a_service_error_without_its_credentials(
        tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import MlflowException

    from al_loop.tracking import Tracker

    def lost(*_: object, **__: object) -> None:
        raise MlflowException("API request to http://alice:s3cr3t@127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed "
                              "with exception HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded")

    config = _write_config(tmp_path, tracking={"uri": mlflow_uri})
    monkeypatch.setattr(Tracker, "log_step", lost)
    result = _invoke("run", config)
    said = _said(result)
    assert result.exit_code == 4 and isinstance(result.exception, SystemExit), said
    assert "the MLflow tracking server stopped answering" in said and "re-run the same command" in said
    assert "s3cr3t" not in said and "alice:" not in said


def test_a_full_disk_in_the_ledger_names_the_ledger(tmp_path: Path, mlflow_uri: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from al_loop.ledger import Ledger

    def full(*_: object, **__: object) -> None:
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL  # as sqlite3 sets it
        raise error

    config = _write_config(tmp_path, tracking={"uri": mlflow_uri})
    monkeypatch.setattr(Ledger, "queue_round", full)
    result = _invoke("run", config)
    said = _said(result)
    assert result.exit_code == 7, said
    assert f"the disk holding the ledger {tmp_path / RUN / 'ledger.sqlite'} is full" in said
    assert _labels(tmp_path / RUN / "ledger.sqlite") == (0, 0), "nothing half-written"


def test_a_full_disk_while_storing_features_leaves_no_partial_store_and_no_ledger(
        tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import al_loop.features

    config = _write_config(tmp_path, tracking={"uri": mlflow_uri})
    monkeypatch.setattr(al_loop.features, "_save", _disk_full)
    result = _invoke("run", config)
    assert result.exit_code == 7 and "no space left on the device" in _said(result), result.output
    assert not (tmp_path / RUN / "ledger.sqlite").exists()
    left = [p for p in (tmp_path / "runs" / "features").glob("*") if p.suffix != ".lock"]  # the build lock stays
    assert not left, "a half-written feature store"


# -- the identity of a run: portable, and a refusal names the setting -------------------------------------------


def test_a_run_folder_moved_with_its_config_and_data_resumes(tmp_path: Path, mlflow_uri: str) -> None:
    first = tmp_path / "first"
    first.mkdir()
    _finished_run(first, mlflow_uri, budget=30)
    moved = tmp_path / "elsewhere" / "second"
    moved.parent.mkdir()
    shutil.move(first, moved)
    config = _write_config(moved, dataset={"name": None, "path": "pool.csv", "text_column": "text"},
                           loop={"budget": 40}, tracking={"uri": mlflow_uri})
    result = _invoke("run", config)
    assert result.exit_code == 0, result.output
    assert _labels(moved / RUN / "ledger.sqlite")[0] == 40


def test_a_moved_run_folder_logs_its_artifacts_beside_its_own_mlflow_store(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    script = Path(sys.executable).with_name("al-loop")  # each run in its own process, as users run them
    config = _write_config(first, tracking={"uri": None, "log_model": False})  # the default store, in runs/
    assert subprocess.run([script, "run", config], capture_output=True, text=True).returncode == 0
    moved = tmp_path / "second"
    shutil.move(first, moved)
    config = _write_config(moved, tracking={"uri": None, "log_model": False}, loop={"budget": 40})
    result = subprocess.run([script, "run", config], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not first.exists(), "the resumed run wrote into the folder it was moved from"
    with sqlite3.connect(moved / "runs" / "mlflow.db") as db:
        (artifacts,) = db.execute("SELECT artifact_uri FROM runs").fetchone()
    assert artifacts.startswith((moved / "runs" / "mlartifacts").as_uri())
    assert list((moved / "runs" / "mlartifacts").rglob("learning_curve.png"))


@pytest.mark.parametrize(("change", "phrase"), [
    ({"loop": {"batch_size": 5}}, "Changed: loop.batch_size: 10 then, 5 now."),
    ({"model": {"params": {"C": 3, "max_iter": 1000}}}, "model.params.C: 10 then, 3 now"),
    ({"annotator": {"noise": 0.1}}, "annotator.noise: 0.0 then, 0.1 now"),
    ({"loop": {"initial_strategy": "typical"}}, "loop.initial_strategy: (the default) then, typical now"),
    ({"pool": "edited"}, "dataset.path: file content sha256:"),
])
def test_a_refused_resume_names_the_setting_that_differs_with_old_and_new_values(
        tmp_path: Path, mlflow_uri: str, change: dict[str, Any], phrase: str) -> None:
    _finished_run(tmp_path, mlflow_uri)
    if change.pop("pool", None):
        (tmp_path / "pool.csv").write_text(POOL_HEADER + POOL_ROWS.replace("words 7", "words seven"))
    config = _write_config(tmp_path, dataset={"name": None, "path": "pool.csv", "text_column": "text"},
                           tracking={"uri": mlflow_uri}, **change)
    result = _invoke("run", config)
    said = _said(result)
    assert result.exit_code == 2 and "was started with a different config_identity" in said, said
    assert phrase in said


def test_a_ledger_of_the_previous_version_resumes_and_then_survives_a_move(tmp_path: Path, mlflow_uri: str) -> None:
    config_path = _finished_run(tmp_path, mlflow_uri)
    config = load_config(config_path)
    ledger = tmp_path / RUN / "ledger.sqlite"
    with sqlite3.connect(ledger) as db:  # what al-loop stored before: the hash with absolute paths, no settings
        db.execute("UPDATE meta SET value = ? WHERE key = 'config_identity'", (config.identity().legacy,))
        db.execute("DELETE FROM meta WHERE key = 'config_identity.settings'")
    assert config.identity().legacy != config.identity(), "the old hash depends on where the files are"
    _write_config(tmp_path, dataset={"name": None, "path": "pool.csv", "text_column": "text"},
                  loop={"budget": 40}, tracking={"uri": mlflow_uri})
    result = _invoke("run", config_path)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(ledger) as db:
        stored = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'config_identity%'").fetchall())
    assert stored["config_identity"] == config.identity(), "upgraded to the identity that survives a move"
    assert json.loads(stored["config_identity.settings"])["loop.batch_size"] == "10"


def test_brackets_in_paths_are_printed_as_written(tmp_path: Path, mlflow_uri: str) -> None:
    """rich markup in a path (`[/]` ends a style, `[b]` starts one) must neither crash the printer nor vanish."""
    folder = tmp_path / "team[/]data [b]x"  # the / makes two folders: "team[" and "]data [b]x"
    folder.mkdir(parents=True)
    config = _write_config(folder, tracking={"uri": mlflow_uri})
    result = _invoke("run", config)
    assert result.exit_code == 0, result.output
    assert "team[/]data [b]x" in _said(result) and "done: budget" in _said(result)
