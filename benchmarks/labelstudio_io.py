"""Benchmark the Label Studio I/O of al-loop: bulk push/pull of LabelStudioAnnotator vs one API call per task.

    .venv/bin/python benchmarks/labelstudio_io.py [--tasks 10000] [--port 8095] [--no-per-call]
                                                  [--profile FOLDER]

Starts a fresh local Label Studio (LocalServer, 127.0.0.1, temporary folder; stopped at the end, also on
error; SQLite, or PostgreSQL when DJANGO_DB=default and POSTGRE_* are set in the environment), then measures
with time.perf_counter:

- push: LabelStudioAnnotator.push of N tasks with predictions, all in one round (one bulk import); the same
  tasks without predictions (what the predictions cost the server), and tasks first, then predictions in a
  second call (`import_predictions`); against one tasks.create + one predictions.create per task (timed on a
  sample, extrapolated linearly to N; skipped with --no-per-call);
- pull: the first pull of N annotated tasks (since=None) through the direct export (as before) and through
  the export snapshot (what the annotator does above `snapshot_threshold` tasks), then two incremental pulls
  after 100 annotations changed (right after the bulk pull, whose cursor's 5 s overlap still covers the whole
  import; then in steady state), against one annotations.list per task (sampled, skipped with --no-per-call).

--profile samples the server with py-spy (pip install py-spy) during the bulk push and the snapshot pull,
prints the share of request samples inside the functions that matter (update_tasks_counters, prediction
validation, serialization, ...) and keeps the collapsed stacks in FOLDER.

The annotated tasks of the pull are imported with their annotations in one untimed bulk call. The targets
(push 10,000 tasks <= 5 s, pull their annotations <= 10 s) are checked on the bulk rows, scaled linearly to
10,000 tasks when --tasks is different. The table is printed with rich, then again as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import label_studio_sdk
from rich.console import Console
from rich.table import Table

from al_loop.annotators import labelstudio
from al_loop.annotators.base import TaskRequest
from al_loop.annotators.labelstudio import LabelStudioAnnotator
from al_loop.config import LabelStudioAnnotatorConfig
from al_loop.labelstudio.connection import Connection, connect
from al_loop.labelstudio.project import CHOICES_NAME, TEXT_NAME, ensure_project
from al_loop.labelstudio.server import HOST, LocalServer

TOKEN_ENV = "AL_LOOP_BENCH_LABEL_STUDIO_TOKEN"
CLASSES = ["billing", "shipping", "returns", "technical", "account", "feedback"]
MODEL_VERSION = "bench-model-v1"
SAMPLE = 500  # tasks timed for the one-call-per-task baselines
CHANGED = 100  # annotations updated before the incremental pull
PULL_REPEATS = 2  # first pulls, each way (alternating; a profile, if asked, samples the first snapshot pull only)
TARGET_TASKS = 10_000
TARGET_PUSH_S = 5.0
TARGET_PULL_S = 10.0
SLOW_REQUEST = {"timeout_in_seconds": 900}  # the untimed bulk import with annotations
OVERLAP_S = getattr(labelstudio, "_OVERLAP", timedelta(seconds=5)).total_seconds()  # pulls re-read this much

console = Console()
if not console.is_terminal:  # piped or captured: wide enough for the table
    console = Console(width=200)

# -- synthetic data ---------------------------------------------------------------------------------

_TOPIC_WORDS = {
    "billing": ["invoice", "charged", "twice", "refund", "payment", "card", "subscription", "price", "receipt"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "late", "address", "shipped", "warehouse", "box"],
    "returns": ["return", "label", "exchange", "damaged", "size", "wrong", "item", "send", "back"],
    "technical": ["app", "crashes", "error", "login", "update", "screen", "sync", "bug", "version"],
    "account": ["password", "email", "profile", "delete", "account", "username", "verify", "settings", "locked"],
    "feedback": ["great", "service", "suggestion", "love", "disappointed", "staff", "experience", "quality", "thanks"],
}
_FILLER = [
    "i", "the", "my", "a", "and", "it", "was", "is", "to", "for", "please", "on", "this", "order",
    "yesterday", "again", "still", "can", "you", "help", "me", "with", "about", "since", "last", "week",
    "today", "not", "have", "been", "we", "our", "they",
]


def make_text(rng: random.Random, label: str) -> str:
    """About 30 words: mostly filler, a third from the class's topic, one from another class (noise)."""
    words = [rng.choice(_TOPIC_WORDS[label]) if rng.random() < 0.35 else rng.choice(_FILLER)
             for _ in range(rng.randint(24, 36))]
    words[rng.randrange(len(words))] = rng.choice(_TOPIC_WORDS[rng.choice(CLASSES)])
    return " ".join(words).capitalize() + "."


@dataclass(frozen=True)
class Example:
    request: TaskRequest
    truth: str


def make_examples(n: int, seed: int, prefix: str) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        truth = rng.choice(CLASSES)
        guess = truth if rng.random() < 0.7 else rng.choice(CLASSES)
        confidence = rng.uniform(0.2, 0.99)
        examples.append(Example(TaskRequest(
            example_id=f"{prefix}-{i:06d}", round=1, rank=i + 1, data={"text": make_text(rng, truth)},
            predicted_label=guess, confidence=confidence, ambiguity=1.0 - confidence,
            model_version=MODEL_VERSION), truth))
    return examples


def choice_result(label: str) -> list[dict[str, Any]]:
    return [{"from_name": CHOICES_NAME, "to_name": TEXT_NAME, "type": "choices", "value": {"choices": [label]}}]


# -- measuring --------------------------------------------------------------------------------------

@dataclass
class Row:
    operation: str
    tasks: int
    seconds: float
    note: str = ""
    target: float | None = None  # seconds allowed for TARGET_TASKS tasks

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else float("inf")

    def verdict(self) -> str:
        if self.target is None:
            return ""
        scaled = self.seconds * TARGET_TASKS / self.tasks
        return "PASS" if scaled <= self.target else "MISS"

    def cells(self) -> list[str]:
        target = "" if self.target is None else f"≤ {self.target:g} s for {TARGET_TASKS:,}: {self.verdict()}"
        return [self.operation, f"{self.tasks:,}", f"{self.seconds:.2f}", f"{self.rate:,.0f}", self.note, target]


def timed(function: Callable[..., Any], into: dict[str, float], key: str) -> Callable[..., Any]:
    """A wrapper adding the time spent in `function` to into[key]."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into[key] = into.get(key, 0.0) + time.perf_counter() - start
    return wrapper


PUSH_STEPS = {"tasks_of_round": "list the round's existing tasks", "_import": "bulk import (import_tasks)",
              "_set_model_version": "set the project's model version"}
PULL_STEPS = {"_count": "count tasks (answered, or changed)", "_list_tasks": "list tasks (changed; deleted-task check)",
              "_export": "direct export (all answered, or by ids)",
              "_snapshot": "export snapshot (create, download, delete)", "_task_count": "count the project's tasks",
              "_user": "resolve users"}
CLIENT_REST = "rest (client side, between calls)"
Breakdown = dict[str, dict[str, float]]  # timed call -> step -> seconds


@contextmanager
def profiled(annotator: LabelStudioAnnotator, steps: dict[str, str], into: dict[str, float]) -> Iterator[None]:
    """Time the steps of a push or pull by wrapping the annotator's helpers (those that exist; they are
    private, so a renamed one is simply not broken down). The total goes to into["total"]."""
    wrapped = [name for name in steps if callable(getattr(annotator, name, None))]
    for name in wrapped:
        setattr(annotator, name, timed(getattr(annotator, name), into, steps[name]))
    start = time.perf_counter()
    try:
        yield
    finally:
        total = time.perf_counter() - start
        into[CLIENT_REST] = total - sum(into.values())
        into["total"] = total
        for name in wrapped:
            delattr(annotator, name)  # back to the class's method


def sampled(done: int, n: int, seconds: float) -> str:
    return f"extrapolated from {done} ({seconds:.1f} s)" if done < n else "measured on all tasks"


def free_port(preferred: int) -> int:
    """The preferred port if nothing listens on it, else one the OS picks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, preferred))
            return preferred
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_version(url: str, token: str) -> str:
    response = httpx.get(f"{url}/api/version", headers={"Authorization": f"Token {token}"}, timeout=10.0)
    response.raise_for_status()
    info = response.json()
    release = info.get("release") or info.get("label-studio-os-package", {}).get("version") or "?"
    return str(release)


# -- the benchmark ----------------------------------------------------------------------------------

def bench_push(conn: Connection, server: LocalServer, n: int, rows: list[Row], breakdown: Breakdown,
               per_call: bool, profile_dir: Path | None) -> None:
    project = ensure_project(conn, "bench push bulk", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, text_column="text")
    requests = [e.request for e in make_examples(n, seed=1, prefix="push")]
    steps = breakdown.setdefault("bulk push", {})
    with sampled_server(server, profile_dir, "push"), profiled(annotator, PUSH_STEPS, steps):
        pushed = annotator.push(requests)
    if len(pushed) != n or len(set(pushed.values())) != n:
        raise RuntimeError(f"bulk push returned {len(pushed)} task ids ({len(set(pushed.values()))} distinct), "
                           f"expected {n}")
    rows.append(Row("push: LabelStudioAnnotator.push (bulk)", n, steps["total"],
                    "1 round = 1 import, with predictions", TARGET_PUSH_S))

    bench_push_variants(conn, annotator, n, rows)
    if not per_call:
        return
    project = ensure_project(conn, "bench push per task", CLASSES)
    client = conn.client
    sample = [e.request for e in make_examples(min(SAMPLE, n), seed=2, prefix="single")]
    payloads = [annotator.task_payload(r) for r in sample]
    start = time.perf_counter()
    for payload in payloads:
        task = client.tasks.create(project=project, data=payload["data"])
        prediction = payload["predictions"][0]
        client.predictions.create(task=int(task.id), result=prediction["result"], score=prediction["score"],
                                  model_version=prediction["model_version"])
    seconds = time.perf_counter() - start
    rows.append(Row("push: tasks.create + predictions.create per task", n, seconds * n / len(sample),
                    sampled(len(sample), n, seconds)))


def bench_push_variants(conn: Connection, annotator: LabelStudioAnnotator, n: int, rows: list[Row]) -> None:
    """The other ways to push: tasks without predictions (what the predictions cost), and tasks first, then
    their predictions in a second call (`import_predictions`: tasks exist without a pre-annotation between
    the two calls, and a crash between them leaves them so)."""
    payloads = [annotator.task_payload(e.request) for e in make_examples(n, seed=5, prefix="variant")]
    client = conn.client
    project = ensure_project(conn, "bench push tasks only", CLASSES)
    start = time.perf_counter()
    response = client.projects.import_tasks(id=project, request=[{"data": p["data"]} for p in payloads],
                                            return_task_ids=True, request_options=SLOW_REQUEST)
    seconds = time.perf_counter() - start
    if len(response.task_ids or []) != n:
        raise RuntimeError(f"tasks-only import returned {len(response.task_ids or [])} ids, expected {n}")
    rows.append(Row("push: import_tasks without predictions", n, seconds, "not an option: no pre-annotation"))

    project = ensure_project(conn, "bench push tasks then predictions", CLASSES)
    start = time.perf_counter()
    response = client.projects.import_tasks(id=project, request=[{"data": p["data"]} for p in payloads],
                                            return_task_ids=True, request_options=SLOW_REQUEST)
    middle = time.perf_counter()
    ids = list(response.task_ids or [])
    predictions = [{"task": int(i), **p["predictions"][0]} for i, p in zip(ids, payloads, strict=True)]
    created = client.projects.import_predictions(id=project, request=predictions, request_options=SLOW_REQUEST)
    end = time.perf_counter()
    if (created.created or 0) != n:
        raise RuntimeError(f"import_predictions created {created.created}, expected {n}")
    rows.append(Row("push: import_tasks, then import_predictions", n, end - start,
                    f"tasks {middle - start:.2f} s + predictions {end - middle:.2f} s; a window without "
                    "pre-annotations"))


@contextmanager
def sampled_server(server: LocalServer, folder: Path | None, name: str) -> Iterator[None]:
    """Sample the server's stacks with py-spy (if `folder` and py-spy is installed) while the block runs;
    print the share of samples inside the functions that matter, keep the collapsed stacks in the folder."""
    spy = Path(sys.executable).with_name("py-spy")
    pid = server.pid()
    if folder is None or not spy.exists() or pid is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"{name}.collapsed.txt"
    process = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--subprocesses", "--rate", "200",
                                "--format", "raw", "--output", str(output), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        report_profile(output)


HOT = ["update_tasks_counters", "bulk_update", "validate_prediction", "sync_import", "_save",
       "bulk_update_stats_project_tasks", "_update_tasks_states", "recalculate_all_stats",
       "update_data_columns", "get_export_data", "ExportDataSerializer", "to_representation"]


def report_profile(collapsed: Path) -> None:
    """Share of the request's samples (stacks inside a Django view) spent inside each HOT function."""
    if not collapsed.exists():
        console.print(f"  (no profile written to {collapsed})")
        return
    total = 0
    inside: dict[str, int] = dict.fromkeys(HOT, 0)
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "dispatch (" not in stack:  # idle threads, the server's own loop
            continue
        total += int(count)
        for name in HOT:
            if f"{name} (" in stack:
                inside[name] += int(count)
    shares = ", ".join(f"{k} {v / total:.0%}" for k, v in inside.items() if v) if total else "no samples"
    console.print(f"  server profile ({total} samples in requests; {collapsed}): {shares}")


def import_annotated(conn: Connection, annotator: LabelStudioAnnotator, examples: list[Example]) -> dict[str, str]:
    """Untimed: the tasks with one annotation each (the true class), in one bulk import. Example id -> task id."""
    payload = []
    for e in examples:
        task = annotator.task_payload(e.request)
        task["annotations"] = [{"result": choice_result(e.truth), "completed_by": conn.user_id, "lead_time": 1.0}]
        payload.append(task)
    response = conn.client.projects.import_tasks(id=annotator.project_id, request=payload, return_task_ids=True,
                                                 request_options=SLOW_REQUEST)
    ids = list(response.task_ids or [])
    if len(ids) != len(examples):
        raise RuntimeError(f"import with annotations returned {len(ids)} task ids, expected {len(examples)}")
    return {e.request.example_id: str(i) for e, i in zip(examples, ids, strict=True)}


def change_annotations(conn: Connection, annotation_ids: dict[str, int], labels: dict[str, str]) -> None:
    """Give the annotations of these examples a new label (what an annotator fixing answers does)."""
    for example_id, label in labels.items():
        conn.client.annotations.update(id=annotation_ids[example_id], result=choice_result(label))


def bench_pull(conn: Connection, server: LocalServer, n: int, rows: list[Row], breakdown: Breakdown,
               per_call: bool, profile_dir: Path | None) -> None:
    project = ensure_project(conn, "bench pull", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, text_column="text")
    examples = make_examples(n, seed=3, prefix="pull")
    start = time.perf_counter()
    pending: dict[str, str | None] = dict(import_annotated(conn, annotator, examples))
    imported = time.perf_counter()
    console.print(f"  (untimed) imported {n:,} annotated tasks in {imported - start:.1f} s")

    # The first pull both ways, alternating (direct, snapshot, direct, snapshot): on a shared machine the load
    # changes between runs; each row shows the better of its two runs, the note both.
    direct = LabelStudioAnnotator(conn, project, CLASSES, text_column="text", snapshot_threshold=10**9)
    runs: dict[str, list[float]] = {"direct": [], "snapshot": []}
    for attempt in range(PULL_REPEATS):
        steps = {}
        with profiled(direct, PULL_STEPS, steps):
            before = direct.pull(pending, since=None)
        runs["direct"].append(steps["total"])
        if attempt == PULL_REPEATS - 1:
            breakdown["first pull, direct export (before)"] = steps
        steps = {}
        with sampled_server(server, profile_dir if attempt == 0 else None, "pull"), \
                profiled(annotator, PULL_STEPS, steps):
            result = annotator.pull(pending, since=None)
        runs["snapshot"].append(steps["total"])
        if attempt == PULL_REPEATS - 1:
            breakdown["first pull (snapshot)"] = steps
    rows.append(Row("pull: first pull, direct export (as before)", n, min(runs["direct"]),
                    f"{len(before.annotations):,} annotations; runs: "
                    + ", ".join(f"{t:.2f}" for t in runs["direct"]), TARGET_PULL_S))
    truth = {e.request.example_id: e.truth for e in examples}
    got = {a.example_id: a for a in result.annotations}
    wrong = sum(got[k].label != truth[k] for k in got)
    if len(result.annotations) != n or len(got) != n or wrong or result.removed or result.skipped:
        raise RuntimeError(f"bulk pull returned {len(result.annotations)} annotations for {len(got)} examples "
                           f"(expected {n}), {wrong} wrong labels, {len(result.removed)} removed, "
                           f"{len(result.skipped)} skipped")
    rows.append(Row("pull: LabelStudioAnnotator.pull (first pull: snapshot)", n, min(runs["snapshot"]),
                    f"{len(result.annotations):,} annotations, all labels checked; runs: "
                    + ", ".join(f"{t:.2f}" for t in runs["snapshot"]), TARGET_PULL_S))

    # Incremental pulls: CHANGED annotations get another label, then pull from the last cursor. The pull
    # re-reads OVERLAP_S before its cursor; the changes are made that long after the import, so that the
    # second (steady-state) pull re-reads just them. Pending stays all N tasks (the slow case).
    rng = random.Random(4)
    annotation_ids = {k: int(str(a.external_id).removeprefix("ls-")) for k, a in got.items()}
    changed = rng.sample(sorted(got), min(CHANGED, n))
    time.sleep(max(0.0, imported + OVERLAP_S + 1.0 - time.perf_counter()))
    cursor = result.cursor
    for title, key in [("right after the bulk pull", "incremental, right after"),
                       ("steady state", "incremental, steady state")]:
        labels = {k: rng.choice([c for c in CLASSES if c != got[k].label]) for k in changed}
        change_annotations(conn, annotation_ids, labels)
        steps = breakdown.setdefault(key, {})
        with profiled(annotator, PULL_STEPS, steps):
            later = annotator.pull(pending, since=cursor)
        latest = {a.example_id: a for a in later.annotations}
        missed = [k for k in changed if k not in latest or latest[k].label != labels[k]]
        if missed:
            raise RuntimeError(f"incremental pull missed {len(missed)} of {len(changed)} changed annotations "
                               f"(e.g. {missed[:3]}); cursor {cursor!r} -> {later.cursor!r}")
        got.update(latest)
        cursor = later.cursor
        rows.append(Row(f"pull: incremental, {title} ({len(changed)} changed)", len(changed), steps["total"],
                        f"re-read {len(later.annotations):,} annotations; pending = all {n:,} tasks"))

    if not per_call:
        return
    sample = list(pending.values())[:min(SAMPLE, n)]
    start = time.perf_counter()
    for task_id in sample:
        conn.client.annotations.list(id=int(str(task_id)))
    seconds = time.perf_counter() - start
    rows.append(Row("pull: annotations.list per task", n, seconds * n / len(sample),
                    sampled(len(sample), n, seconds)))


# -- output -----------------------------------------------------------------------------------------

COLUMNS = ["operation", "tasks", "seconds", "tasks/s", "note", "target"]
NUMERIC = ("tasks", "seconds", "tasks/s")


def breakdown_cells(breakdown: Breakdown) -> tuple[list[str], list[list[str]]]:
    """Columns (the timed calls) and rows (their steps, total last) of the time breakdown."""
    calls = list(breakdown)
    steps = [s for s in dict.fromkeys(s for c in calls for s in breakdown[c]) if s not in (CLIENT_REST, "total")]
    steps += [CLIENT_REST, "total"]
    rows = [[step] + [f"{breakdown[c][step]:.2f}" if step in breakdown[c] else "" for c in calls] for step in steps]
    return ["step (seconds)", *calls], rows


def print_rich(header: str, rows: list[Row], breakdown: Breakdown) -> None:
    table = Table(title="Label Studio I/O", caption=header)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in NUMERIC else "left", no_wrap=column == "operation")
    for row in rows:
        cells = row.cells()
        verdict = row.verdict()
        if verdict:
            cells[-1] = cells[-1].replace(verdict, f"[{'green' if verdict == 'PASS' else 'red'}]{verdict}[/]")
        table.add_row(*cells)
    console.print(table)
    columns, cells = breakdown_cells(breakdown)
    steps = Table(title="Where the time goes (LabelStudioAnnotator's steps)")
    for i, column in enumerate(columns):
        steps.add_column(column, justify="right" if i else "left")
    for line in cells:
        steps.add_row(*line)
    console.print(steps)


def markdown_table(columns: list[str], cells: list[list[str]], numeric: set[int]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if i in numeric else "---" for i in range(len(columns))) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in cells]


def markdown(header: str, rows: list[Row], breakdown: Breakdown) -> str:
    main_table = markdown_table(COLUMNS, [r.cells() for r in rows], {COLUMNS.index(c) for c in NUMERIC})
    columns, cells = breakdown_cells(breakdown)
    steps_table = markdown_table(columns, cells, set(range(1, len(columns))))
    return "\n".join([header, "", *main_table, "", *steps_table])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=TARGET_TASKS, help="tasks per project (default 10000)")
    parser.add_argument("--port", type=int, default=8095, help="port of the local server (a free one if busy)")
    parser.add_argument("--no-per-call", action="store_true",
                        help="skip the one-call-per-task baselines (~2 minutes)")
    parser.add_argument("--profile", type=Path, default=None, metavar="FOLDER",
                        help="sample the server with py-spy (pip install py-spy) during the bulk push and pull")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")

    port = free_port(args.port)
    if port != args.port:
        console.print(f"port {args.port} is busy; using {port}")
    rows: list[Row] = []
    breakdown: Breakdown = {}
    with tempfile.TemporaryDirectory(prefix="al-loop-bench-") as folder:
        server = LocalServer(Path(folder) / "labelstudio", port)
        try:
            start = time.perf_counter()
            server.start()
            console.print(f"Label Studio started on {server.url} in {time.perf_counter() - start:.1f} s")
            token = server.credentials().token
            os.environ[TOKEN_ENV] = token
            conn = connect(LabelStudioAnnotatorConfig(kind="labelstudio", url=server.url, token_env=TOKEN_ENV),
                           Path(folder))
            database = {"sqlite": "SQLite", "default": "PostgreSQL", "postgresql": "PostgreSQL"}.get(
                os.environ.get("DJANGO_DB", "sqlite"), os.environ.get("DJANGO_DB", "sqlite"))
            header = (f"Label Studio {server_version(server.url, token)} (local, {database}, 127.0.0.1), "
                      f"label-studio-sdk {label_studio_sdk.__version__}, Python {platform.python_version()}, "
                      f"{os.cpu_count()} cores ({platform.machine()}, {platform.system()}); "
                      f"{args.tasks:,} tasks, {len(CLASSES)} classes, ~30 words each")
            console.print(header)
            console.print("push ...")
            bench_push(conn, server, args.tasks, rows, breakdown, not args.no_per_call, args.profile)
            console.print("pull ...")
            bench_pull(conn, server, args.tasks, rows, breakdown, not args.no_per_call, args.profile)
        finally:
            server.stop()
    print_rich(header, rows, breakdown)
    print()
    print(markdown(header, rows, breakdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
