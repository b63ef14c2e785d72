"""Benchmark the Label Studio I/O of al-loop: bulk push/pull of LabelStudioAnnotator vs one API call per task.

    .venv/bin/python benchmarks/labelstudio_io.py [--tasks 10000] [--port 8095]

Starts a fresh local Label Studio (LocalServer, 127.0.0.1, temporary folder; stopped at the end, also on
error), then measures with time.perf_counter:

- push: LabelStudioAnnotator.push of N tasks with predictions, all in one round (one bulk import), against
  one tasks.create + one predictions.create per task (timed on a sample, extrapolated linearly to N);
- pull: LabelStudioAnnotator.pull of N annotated tasks (since=None), then two incremental pulls after 100
  annotations changed (right after the bulk pull, whose cursor's 5 s overlap still covers the whole import;
  then in steady state), against one annotations.list per task (timed on a sample, extrapolated to N).

The annotated tasks of the pull are imported with their annotations in one untimed bulk call. The targets
(push 10,000 tasks <= 5 s, pull their annotations <= 10 s) are checked on the bulk rows, scaled linearly to
10,000 tasks when --tasks is different. The table is printed with rich, then again as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
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
PULL_STEPS = {"_changed_since": "list changed tasks", "_deleted": "check pending tasks still exist",
              "_export": "export changed tasks by ids", "_user": "resolve users"}
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

def bench_push(conn: Connection, n: int, rows: list[Row], breakdown: Breakdown) -> None:
    project = ensure_project(conn, "bench push bulk", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, text_column="text")
    requests = [e.request for e in make_examples(n, seed=1, prefix="push")]
    steps = breakdown.setdefault("bulk push", {})
    with profiled(annotator, PUSH_STEPS, steps):
        pushed = annotator.push(requests)
    if len(pushed) != n or len(set(pushed.values())) != n:
        raise RuntimeError(f"bulk push returned {len(pushed)} task ids ({len(set(pushed.values()))} distinct), "
                           f"expected {n}")
    rows.append(Row("push: LabelStudioAnnotator.push (bulk)", n, steps["total"],
                    "1 round = 1 import, with predictions", TARGET_PUSH_S))

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


def bench_pull(conn: Connection, n: int, rows: list[Row], breakdown: Breakdown) -> None:
    project = ensure_project(conn, "bench pull", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, text_column="text")
    examples = make_examples(n, seed=3, prefix="pull")
    start = time.perf_counter()
    pending: dict[str, str | None] = dict(import_annotated(conn, annotator, examples))
    imported = time.perf_counter()
    console.print(f"  (untimed) imported {n:,} annotated tasks in {imported - start:.1f} s")

    steps = breakdown.setdefault("bulk pull", {})
    with profiled(annotator, PULL_STEPS, steps):
        result = annotator.pull(pending, since=None)
    truth = {e.request.example_id: e.truth for e in examples}
    got = {a.example_id: a for a in result.annotations}
    wrong = sum(got[k].label != truth[k] for k in got)
    if len(result.annotations) != n or len(got) != n or wrong or result.removed or result.skipped:
        raise RuntimeError(f"bulk pull returned {len(result.annotations)} annotations for {len(got)} examples "
                           f"(expected {n}), {wrong} wrong labels, {len(result.removed)} removed, "
                           f"{len(result.skipped)} skipped")
    rows.append(Row("pull: LabelStudioAnnotator.pull (since=None)", n, steps["total"],
                    f"{len(result.annotations):,} annotations, all labels checked", TARGET_PULL_S))

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
            header = (f"Label Studio {server_version(server.url, token)} (local, SQLite, 127.0.0.1), "
                      f"label-studio-sdk {label_studio_sdk.__version__}, Python {platform.python_version()}, "
                      f"{os.cpu_count()} cores ({platform.machine()}, {platform.system()}); "
                      f"{args.tasks:,} tasks, {len(CLASSES)} classes, ~30 words each")
            console.print(header)
            console.print("push ...")
            bench_push(conn, args.tasks, rows, breakdown)
            console.print("pull ...")
            bench_pull(conn, args.tasks, rows, breakdown)
        finally:
            server.stop()
    print_rich(header, rows, breakdown)
    print()
    print(markdown(header, rows, breakdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
