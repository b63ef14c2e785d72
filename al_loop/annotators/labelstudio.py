"""The Label Studio annotator: push batches as tasks with the model's guess, pull answers incrementally.

Push is one bulk import per round, idempotent by example id: tasks carry `al_id` and `al_round`, and
before importing (or after a failed import) the round's existing tasks are looked up, so a crash between
the import and the ledger write never creates a task twice.

Each task's overlap (how many annotators answer it) is set on the task itself: Label Studio's labeling
stream keeps serving a task to other annotators until that many answered (community edition included).

Pull asks which tasks changed since the cursor (a cheap listing), exports just those with their
annotations, and reports deleted tasks. A first pull counts the answered tasks and exports them all. A
pull of more than `snapshot_threshold` tasks reads an export snapshot instead (created, downloaded, then
deleted: no query string of ids, no converter pass); smaller ones use the direct export. The cursor is the
newest task `updated_at` seen (deleting an annotation bumps it too) and the project's task count; each
pull re-reads a few seconds before it, and the ledger drops what it already has. Each task read reports
the answer ids it holds, so an answer deleted in Label Studio is retired. Whether tasks were deleted is
checked (an id-only listing) only when the task count differs from the last pull's plus this process's
imports: a deletion hidden by an import of foreign tasks in the same interval is caught at the next change
of the count.

The labeling stream ('Uncertainty sampling') serves the current model's tasks by lowest prediction score:
the score is derived from al-loop's order (`al_order` n -> n / (n + 1)), so rank 1 comes first; the model's
confidence is in the task data (`al_confidence`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from al_loop.annotators.base import Annotation, PullResult, TaskRequest
from al_loop.errors import ServiceError
from al_loop.labelstudio.bots import Bots
from al_loop.labelstudio.connection import Connection, call, dm_filters
from al_loop.labelstudio.project import CHOICES_NAME, PRIOR_NAME, TEXT_NAME
from al_loop.ledger import EMPTY

log = logging.getLogger(__name__)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the Data Manager's datetime filter accepts exactly this
_OVERLAP = timedelta(seconds=5)
_EXPORT_CHUNK = 500
_PAGE = 5000
_COUNT_MARK = " tasks="  # the cursor: '<updated_at> tasks=<count>'
SNAPSHOT_THRESHOLD = 1000  # changed tasks above which a pull reads an export snapshot instead of exporting by ids
SNAPSHOT_TIMEOUT = 600.0  # seconds to wait for a snapshot built in a background job
_SNAPSHOT_POLL = 0.5
_SNAPSHOT_TITLE = "al-loop pull "  # + a random tag: a snapshot whose id was lost is still found and deleted
# answered tasks only (skipped ones included), every annotation (skipped and ground truth too), ids instead of
# nested drafts, predictions and users, no history: what a pull reads, and nothing it does not
_SNAPSHOT_OPTIONS: dict[str, Any] = {
    "task_filter_options": {"only_with_annotations": True},
    "annotation_filter_options": {"usual": True, "ground_truth": True, "skipped": True},
    "serialization_options": {"drafts": {"only_id": True}, "predictions": {"only_id": True},
                              "annotations__completed_by": {"only_id": True}, "include_annotation_history": False,
                              "interpolate_key_frames": False},
}


class LabelStudioAnnotator:
    """Tasks in one Label Studio project; answers from its annotators (or from bots in simulation)."""

    name = "labelstudio"

    def __init__(self, conn: Connection, project_id: int, classes: Sequence[str], text_column: str | None,
                 bots: Bots | None = None, snapshot_threshold: int = SNAPSHOT_THRESHOLD,
                 snapshot_timeout: float = SNAPSHOT_TIMEOUT) -> None:
        self.conn = conn
        self.project_id = project_id
        self.classes = list(classes)
        self.text_column = text_column
        self.bots = bots
        self.snapshot_threshold = snapshot_threshold  # more changed tasks than this: one export snapshot
        self.snapshot_timeout = snapshot_timeout
        self._users: dict[int, str] = {}
        self._model_version: str | None = None
        self._default_overlap: int | None = None
        self._imported = 0  # tasks this process imported since its last pull (the task-count check)

    # -- push -------------------------------------------------------------------------------------

    def push(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        by_round: dict[int, list[TaskRequest]] = defaultdict(list)
        for task in tasks:
            by_round[task.round].append(task)
        pushed: dict[str, str] = {}
        for round_index, batch in sorted(by_round.items()):
            existing = self.tasks_of_round(round_index)
            pushed.update({t.example_id: existing[t.example_id] for t in batch if t.example_id in existing})
            new = [t for t in batch if t.example_id not in existing]
            if new:
                pushed.update(self._import(round_index, new))
            self._set_overlap(batch, pushed)
            self._set_model_version(batch)
        return pushed

    def _set_overlap(self, batch: Sequence[TaskRequest], task_ids: Mapping[str, str]) -> None:
        """Give each task the overlap it asks for. Imported tasks get the project's maximum annotations (the
        import ignores a per-task value), so only tasks asking for another count are updated, one call each;
        repeating it after a crash is harmless."""
        if self._default_overlap is None:
            project = call(lambda: self.conn.client.projects.get(id=self.project_id), self.conn.url,
                           "read the project")
            self._default_overlap = int(project.maximum_annotations or 1)
        for task in batch:
            if task.overlap != self._default_overlap:
                task_id = task_ids[task.example_id]
                self._request("PATCH", f"api/tasks/{task_id}", f"set the overlap of task {task_id}",
                              json={"overlap": task.overlap})

    def _import(self, round_index: int, batch: list[TaskRequest]) -> dict[str, str]:
        payload = [self.task_payload(t) for t in batch]
        try:
            # no automatic retry: a retried import whose first attempt succeeded would duplicate tasks
            response = self.conn.client.projects.import_tasks(
                id=self.project_id, request=payload, return_task_ids=True, request_options={"max_retries": 0})
            ids = list(response.task_ids or [])
        except Exception as error:  # any failure: the import may or may not have happened
            log.warning("import of round %d failed (%s); reconciling by example id", round_index, error)
            ids = []
        if len(ids) == len(batch):  # the server returns the new ids in the order of the payload
            self._imported += len(ids)
            return {t.example_id: str(i) for t, i in zip(batch, ids, strict=True)}
        existing = self.tasks_of_round(round_index)
        self._imported += len(existing)  # at most this many are new: an unexpected count means a full check
        missing = [t.example_id for t in batch if t.example_id not in existing]
        if missing:
            raise ServiceError(f"importing {len(batch)} tasks into project {self.project_id} on {self.conn.url} "
                               f"failed ({len(missing)} missing); re-run the command to retry (no duplicates)")
        return {t.example_id: existing[t.example_id] for t in batch}

    def task_payload(self, task: TaskRequest) -> dict[str, Any]:
        """One task: the text to label, al-loop's ids, rank and order, the model's confidence, and its guess as
        a prediction whose score puts the task in al-loop's order in the labeling stream (lowest first)."""
        data = {TEXT_NAME: self._text(task.data), "al_id": task.example_id, "al_round": task.round,
                "al_rank": task.rank, "al_purpose": task.purpose}
        if task.order is not None:
            data["al_order"] = task.order
        if task.ambiguity is not None:
            data["al_ambiguity"] = round(float(task.ambiguity), 6)
        if task.confidence is not None:
            data["al_confidence"] = round(float(task.confidence), 6)
        if task.prior_answers:
            data[PRIOR_NAME] = "\n".join(f"{who}: {label}" for who, label in task.prior_answers)
        payload: dict[str, Any] = {"data": data}
        if task.predicted_label is not None:
            score = task.confidence if task.order is None else task.order / (task.order + 1)
            payload["predictions"] = [{
                "model_version": task.model_version or "unknown",
                "score": None if score is None else float(score),
                "result": [{"from_name": CHOICES_NAME, "to_name": TEXT_NAME, "type": "choices",
                            "value": {"choices": [task.predicted_label]}}],
            }]
        return payload

    def _text(self, row: Mapping[str, Any]) -> str:
        if self.text_column is not None and self.text_column in row:
            return str(row[self.text_column])
        return "\n".join(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}"
                         for name, value in row.items())

    def _set_model_version(self, batch: Sequence[TaskRequest]) -> None:
        """Point the project at the newest model, so 'Uncertainty sampling' serves its tasks first."""
        version = next((t.model_version for t in batch if t.model_version and t.predicted_label is not None), None)
        if version and version != self._model_version:
            call(lambda: self.conn.client.projects.update(id=self.project_id, model_version=version),
                 self.conn.url, "set the project's model version")
            self._model_version = version

    def tasks_of_round(self, round_index: int) -> dict[str, str]:
        """Existing tasks of a round in the project: example id -> task id."""
        query = dm_filters([("filter:tasks:data.al_round", "equal", "Number", round_index)])
        tasks = call(lambda: list(self.conn.client.tasks.list(project=self.project_id, query=query,
                                                              fields="task_only", include="id,data",
                                                              page_size=1000)),
                     self.conn.url, "list the round's tasks")
        return {str(t.data["al_id"]): str(t.id) for t in tasks if t.data and "al_id" in t.data}

    # -- pull -------------------------------------------------------------------------------------

    def pull(self, pending: Mapping[str, str | None], since: str | None = None,
             closed: Mapping[str, str] | None = None) -> PullResult:
        if self.bots is not None:
            self.bots.answer(pending)
        stamp, known_count = _parse_cursor(since)
        listed: list[dict[str, Any]] | None = None
        if stamp is None:  # first pull: every answered task (a snapshot when there are many)
            answered = self._answered_count()
            tasks = [] if answered == 0 else self._snapshot() if answered > self.snapshot_threshold else \
                self._export(None)
        else:  # later pulls: what changed since the cursor (a few seconds before it)
            start = (datetime.strptime(stamp, _TIME_FORMAT) - _OVERLAP).strftime(_TIME_FORMAT)
            if self._count(_changed_filter(start), "count changed tasks") > self.snapshot_threshold:
                # many: a snapshot of all answered tasks, kept to the changed ones, and a listing of the changed
                # tasks without any answer left (their answers were deleted); no listing of every changed task
                tasks = [t for t in self._snapshot() if t.get("updated_at") and _stamp(t["updated_at"]) > start]
                listed = self._list_tasks(_changed_filter(start, unanswered=True), "id,updated_at",
                                          "list changed tasks without answers")
            else:  # a cheap listing of what changed, then an export of just those with answers
                listed = self._list_tasks(_changed_filter(start), "id,updated_at,total_annotations,"
                                          "cancelled_annotations", "list changed tasks")
                tasks = self._export([str(t["id"]) for t in listed if (t.get("total_annotations") or 0)
                                      + (t.get("cancelled_annotations") or 0) > 0])
        result = PullResult(cursor=since)
        problems: list[str] = []
        for task in tasks:
            self._read_task(task, pending, result, problems)
        if problems:
            raise ServiceError("annotations with a choice that is not in dataset.classes (fix them in Label "
                               "Studio, or the project's labeling config, then re-run): " + "; ".join(problems[:10]))
        exported = {str(task.get("id")) for task in tasks}
        for task in listed or []:  # changed and holding no answer: any answer pulled from it was deleted
            if str(task["id"]) not in exported:
                result.held[str(task["id"])] = frozenset()
        stamps = [_stamp(task["updated_at"]) for task in [*tasks, *(listed or [])] if task.get("updated_at")]
        if stamps or stamp:
            stamp = max([*stamps, stamp] if stamp else stamps)
        count = self._task_count()
        if known_count is None or count != known_count + self._imported:  # tasks may have been deleted
            answered = {a.example_id for a in result.annotations} | set(result.cancelled) | set(result.removed)
            check = {**{e: t for e, t in pending.items() if e not in answered}, **(closed or {})}
            result.removed += self._deleted(check)
        self._imported = 0
        result.cursor = None if stamp is None else f"{stamp}{_COUNT_MARK}{count}"
        return result

    def _task_count(self) -> int:
        """How many tasks the project holds (one Data Manager page of one task: its `total`)."""
        response = self._request("GET", "api/tasks/", "count the project's tasks", past_the_end=True, params={
            "project": self.project_id, "fields": "all", "include": "id", "page": 1, "page_size": 1})
        body = response.json() if response.status_code == 200 else {}
        return int(body.get("total", 0)) if isinstance(body, dict) else len(body)

    def _answered_count(self) -> int:
        """How many tasks hold an answer or a skip."""
        return self._count(dm_filters([("filter:tasks:total_annotations", "greater", "Number", 0),
                                       ("filter:tasks:cancelled_annotations", "greater", "Number", 0)],
                                      conjunction="or"), "count the answered tasks")

    def _count(self, query: str, doing: str) -> int:
        """How many tasks a Data Manager query selects (one page of one task: its `total`)."""
        response = self._request("GET", "api/tasks/", doing, past_the_end=True, params={
            "project": self.project_id, "fields": "all", "include": "id", "query": query, "page": 1,
            "page_size": 1})
        body = response.json() if response.status_code == 200 else {}
        return int(body.get("total", 0)) if isinstance(body, dict) else len(body)

    def requeue(self, overlaps: Mapping[str, int]) -> None:
        """Ask more annotators for these tasks (task id -> overlap): Label Studio counts a submission without
        a choice as done, so the task's overlap is raised and it is marked unlabeled (a PATCH does not
        recompute that), and the labeling stream serves it to annotators who have not submitted it yet.
        Setting absolute values makes a repeat harmless."""
        for task_id, overlap in overlaps.items():
            self._request("PATCH", f"api/tasks/{task_id}", f"requeue task {task_id}",
                          json={"overlap": int(overlap), "is_labeled": False})

    def _list_tasks(self, query: str, include: str, doing: str) -> list[dict[str, Any]]:
        """All pages of a Data Manager listing, as plain dicts (skipping the SDK's model parsing: ~20% faster)."""
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self._request("GET", "api/tasks/", doing, past_the_end=page > 1, params={
                "project": self.project_id, "fields": "all", "include": include, "query": query,
                "page": page, "page_size": _PAGE})
            if response.status_code == 404:  # past the last page
                return tasks
            body = response.json()
            batch = body.get("tasks", []) if isinstance(body, dict) else body
            tasks += batch
            if len(batch) < _PAGE or len(tasks) >= int(body.get("total", len(tasks))):
                return tasks
            page += 1

    def _export(self, task_ids: list[str] | None) -> list[dict[str, Any]]:
        """Answered tasks with their annotations: all of them (None), or these ids (in chunks of 500: the
        server rejects query strings of 1,000 fields). Raw request, because the SDK's `download_sync` sends
        `ids` where the server reads `ids[]`, and would silently export everything."""
        chunks = [None] if task_ids is None else [task_ids[i:i + _EXPORT_CHUNK]
                                                   for i in range(0, len(task_ids), _EXPORT_CHUNK)]
        exported: list[dict[str, Any]] = []
        for chunk in chunks:
            params: dict[str, Any] = {"exportType": "JSON", "download_all_tasks": "false"}
            if chunk is not None:
                params["ids[]"] = chunk
            exported += self._request("GET", f"api/projects/{self.project_id}/export",
                                      f"export annotations from project {self.project_id}", params=params).json()
        return exported

    def _snapshot(self) -> list[dict[str, Any]]:
        """Every answered task with its annotations, through an export snapshot: create it (built in the request,
        or in a background job on a server with Redis/RQ: then polled), download its JSON, delete it; deleted
        also when anything fails, and found by its title when its id was lost (a request that timed out)."""
        base = f"api/projects/{self.project_id}/exports"
        title = f"{_SNAPSHOT_TITLE}{uuid.uuid4().hex[:12]}"
        snapshot: int | None = None
        try:
            created = self._request("POST", f"{base}/", f"create an export snapshot of project {self.project_id}",
                                    json={"title": title, **_SNAPSHOT_OPTIONS},
                                    request_options={"max_retries": 0, "timeout_in_seconds": self.snapshot_timeout})
            body = created.json()
            snapshot = int(body["id"])
            self._await_snapshot(base, snapshot, str(body.get("status")))
            # no exportType: the snapshot's own JSON file (exportType=JSON may run the converter over it)
            return self._request("GET", f"{base}/{snapshot}/download",
                                 f"download export snapshot {snapshot} of project {self.project_id}",
                                 request_options={"timeout_in_seconds": self.snapshot_timeout}).json()
        finally:
            self._delete_snapshots(base, title, snapshot)

    def _await_snapshot(self, base: str, snapshot: int, status: str) -> None:
        deadline = time.monotonic() + self.snapshot_timeout
        while status != "completed":
            if status == "failed":
                raise ServiceError(f"Label Studio at {self.conn.url} failed to build export snapshot {snapshot} of "
                                   f"project {self.project_id} (see the server's log); re-run the command to retry")
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"export snapshot {snapshot} of project {self.project_id} on {self.conn.url} is still "
                    f"{status!r} after {self.snapshot_timeout:.0f} s. A server that builds snapshots in background "
                    "jobs (Redis/RQ) needs a running worker for its 'default' queue: start one (e.g. `python "
                    "label_studio/manage.py rqworker default` beside the server), or wait and re-run the command")
            time.sleep(_SNAPSHOT_POLL)
            status = str(self._request("GET", f"{base}/{snapshot}", f"read export snapshot {snapshot}").json()
                         .get("status"))

    def _delete_snapshots(self, base: str, title: str, snapshot: int | None) -> None:
        """Delete this pull's snapshot; never raises (a failure here must not hide the pull's own error)."""
        try:
            doomed = {snapshot} if snapshot is not None else set()
            if snapshot is None:  # the creation failed or its answer was lost: look for it by title
                listed = self._request("GET", f"{base}/", f"list export snapshots of project {self.project_id}")
                doomed |= {int(e["id"]) for e in listed.json() if e.get("title") == title}
            for pk in doomed:
                self._request("DELETE", f"{base}/{pk}", f"delete export snapshot {pk}", past_the_end=True)
        except Exception as error:  # reported, never raised
            log.warning("could not delete export snapshot %s of project %s (%s); delete it in Label Studio "
                        "(project settings -> Export)", snapshot or title, self.project_id, error)

    def _request(self, method: str, path: str, doing: str, past_the_end: bool = False,
                 **kwargs: Any) -> httpx.Response:
        """A raw API request (where the SDK is slower or wrong); anything but 2xx is a ServiceError, except a
        404 when `past_the_end` (a listing asked for the page after its last; an object already gone)."""
        http = self.conn.client._client_wrapper.httpx_client
        response = call(lambda: http.request(path, method=method, **kwargs), self.conn.url, doing)
        if not 200 <= response.status_code < 300 and not (past_the_end and response.status_code == 404):
            raise ServiceError(f"Label Studio at {self.conn.url} failed to {doing} (HTTP {response.status_code}: "
                               f"{response.text[:200]}); re-run the command to retry")
        return response

    def _deleted(self, pending: Mapping[str, str | None]) -> list[str]:
        """Examples whose task no longer exists (an id-only listing over the range of their task ids)."""
        by_task = {int(t): e for e, t in pending.items() if t is not None and str(t).isdigit()}
        if not by_task:
            return []
        query = dm_filters([("filter:tasks:id", "in", "Number", {"min": min(by_task), "max": max(by_task)})])
        present = {int(t["id"]) for t in self._list_tasks(query, "id", "check pending tasks")}
        return [e for t, e in by_task.items() if t not in present]

    def _read_task(self, task: dict[str, Any], pending: Mapping[str, str | None], result: PullResult,
                   problems: list[str]) -> None:
        example_id = str((task.get("data") or {}).get("al_id", ""))
        if not example_id:
            return  # a task al-loop did not create
        if example_id in pending and str(pending[example_id]) != str(task.get("id")):
            return  # an older task of an example picked again (its task was deleted, or it was skipped)
        answered_by: set[str] = set()
        result.held[str(task.get("id"))] = frozenset(f"ls-{a.get('id')}" for a in task.get("annotations") or [])
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            choice = _choice(annotation.get("result") or [])
            who = self._user(annotation.get("completed_by"))
            if choice is not None and choice not in self.classes:
                problems.append(f"task {task.get('id')} (example {example_id}) by {who}: {choice!r}")
                continue
            if choice is not None:
                answered_by.add(str(annotation.get("completed_by")))
            result.annotations.append(Annotation(  # submitted without a choice: kept, and counts for nothing
                example_id=example_id, label=EMPTY if choice is None else choice, annotator=who,
                created_at=str(annotation.get("created_at")), updated_at=annotation.get("updated_at"),
                lead_time=annotation.get("lead_time"), external_id=f"ls-{annotation.get('id')}"))
        if example_id in pending:  # who skipped and has not answered since (a skip can be answered later)
            skipped_by = {str(a.get("completed_by")) for a in task.get("annotations") or [] if a.get("was_cancelled")}
            result.cancelled[example_id] = len(skipped_by - answered_by)

    def _user(self, user: Any) -> str:
        if isinstance(user, dict):
            return str(user.get("email") or user.get("id"))
        if user is None:
            return "unknown"
        if int(user) not in self._users:
            users = call(lambda: list(self.conn.client.users.list()), self.conn.url, "list users")
            self._users = {int(u.id): (u.email or u.username or str(u.id)) for u in users}
        return self._users.get(int(user), f"user-{user}")


def _changed_filter(start: str, unanswered: bool = False) -> str:
    """Tasks updated after `start` (a task whose answers were all deleted too: deleting an annotation bumps
    the task's `updated_at`); with `unanswered`, only those holding no answer and no skip."""
    items: list[tuple[str, str, str, Any]] = [("filter:tasks:updated_at", "greater", "Datetime", start)]
    if unanswered:
        items += [("filter:tasks:total_annotations", "equal", "Number", 0),
                  ("filter:tasks:cancelled_annotations", "equal", "Number", 0)]
    return dm_filters(items)


def _choice(result: list[dict[str, Any]]) -> str | None:
    for region in result:
        if region.get("from_name") == CHOICES_NAME and region.get("type") == "choices":
            choices = (region.get("value") or {}).get("choices") or []
            return str(choices[0]) if choices else None
    return None


def _parse_cursor(cursor: str | None) -> tuple[str | None, int | None]:
    """(newest updated_at seen, the project's task count then); cursors written before the count: (stamp, None)."""
    if not cursor:
        return None, None
    stamp, _, count = cursor.partition(_COUNT_MARK)
    return stamp, int(count) if count.isdigit() else None


def _stamp(value: str) -> str:
    """A server timestamp in the cursor format ('2026-11-24T22:42:18.281203Z'; some have no fraction)."""
    text = value.replace("+00:00", "Z")
    if "." not in text:
        text = text.replace("Z", ".000000Z")
    return datetime.strptime(text, _TIME_FORMAT).strftime(_TIME_FORMAT)
