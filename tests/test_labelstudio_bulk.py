"""Label Studio pulls in bulk, for real: the export-snapshot path returns what the by-ids export returns
(answers, skips, empty submissions, updated and deleted answers, who answered), and never leaves a snapshot
behind, also when the download fails. Every test talks to the session's real server; nothing is mocked."""

from __future__ import annotations

from pathlib import Path

import pytest

from al_loop.annotators.base import PullResult, TaskRequest
from al_loop.annotators.labelstudio import LabelStudioAnnotator
from al_loop.config import LabelStudioAnnotatorConfig
from al_loop.errors import ServiceError
from al_loop.labelstudio.connection import Connection, connect
from al_loop.labelstudio.project import ensure_project

from .conftest import TOKEN_ENV

pytestmark = pytest.mark.labelstudio
CLASSES = ["cat", "dog", "bird"]


@pytest.fixture
def conn(labelstudio, tmp_path: Path) -> Connection:
    return connect(LabelStudioAnnotatorConfig(kind="labelstudio", url=labelstudio.url, token_env=TOKEN_ENV),
                   tmp_path)


def _answer(conn: Connection, task_id: str, choice: str | None, user: int, cancelled: bool = False) -> int:
    result = [] if choice is None else [{"from_name": "label", "to_name": "text", "type": "choices",
                                         "value": {"choices": [choice]}}]
    return int(conn.client.annotations.create(id=int(task_id), result=result, was_cancelled=cancelled,
                                              lead_time=3.5, completed_by=user).id)


def _exports(conn: Connection, project: int) -> list[dict]:
    http = conn.client._client_wrapper.httpx_client
    response = http.request(f"api/projects/{project}/exports/", method="GET")
    assert response.status_code == 200
    return response.json()


class _Counting(LabelStudioAnnotator):
    """The real annotator, counting which export path each pull took."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.snapshots = 0
        self.exports = 0

    def _snapshot(self):
        self.snapshots += 1
        return super()._snapshot()

    def _export(self, task_ids):
        self.exports += 1
        return super()._export(task_ids)


def _pull_both(conn: Connection, project: int, pending: dict[str, str | None], since: str | None
               ) -> tuple[PullResult, PullResult]:
    """The same pull through the by-ids export and through a snapshot (threshold 0 forces it)."""
    by_ids = _Counting(conn, project, CLASSES, "text", snapshot_threshold=10**9)
    snapshot = _Counting(conn, project, CLASSES, "text", snapshot_threshold=0)
    first, second = by_ids.pull(pending, since=since), snapshot.pull(pending, since=since)
    assert (by_ids.snapshots, by_ids.exports) == (0, 1)
    assert (snapshot.snapshots, snapshot.exports) == (1, 0), "threshold 0 must take the snapshot path"
    return first, second


def _same(a: PullResult, b: PullResult) -> None:
    key = lambda x: x.external_id  # noqa: E731
    assert sorted(a.annotations, key=key) == sorted(b.annotations, key=key)
    assert (a.cancelled, a.held, sorted(a.removed), a.skipped, a.cursor) == \
           (b.cancelled, b.held, sorted(b.removed), b.skipped, b.cursor)


def test_a_snapshot_pull_reads_what_the_by_ids_export_reads_and_is_deleted_afterwards(conn: Connection) -> None:
    project = ensure_project(conn, "snapshot pull", CLASSES)
    pusher = LabelStudioAnnotator(conn, project, CLASSES, "text")
    pending: dict[str, str | None] = dict(pusher.push([
        TaskRequest(example_id=f"e{i}", round=0, rank=i + 1, data={"text": f"animal {i}"},
                    predicted_label=CLASSES[i % 3], confidence=0.5, model_version="m0") for i in range(7)]))
    alice = int(conn.client.users.create(username=f"alice{project}", email=f"alice-{project}@example.com").id)
    bob = int(conn.client.users.create(username=f"bob{project}", email=f"bob-{project}@example.com").id)
    _answer(conn, pending["e0"], "cat", alice)
    _answer(conn, pending["e1"], None, alice, cancelled=True)  # skipped
    doomed = _answer(conn, pending["e2"], "bird", bob)  # deleted after the first pull
    corrected = _answer(conn, pending["e3"], "dog", alice)  # updated after the first pull
    _answer(conn, pending["e4"], None, bob)  # an empty submission
    _answer(conn, pending["e5"], "dog", alice)
    _answer(conn, pending["e5"], "cat", bob)  # two answers on one task

    reference, snapshot = _pull_both(conn, project, pending, since=None)
    _same(reference, snapshot)
    labels = {(a.example_id, a.annotator): a.label for a in snapshot.annotations}
    assert labels == {("e0", f"alice-{project}@example.com"): "cat", ("e2", f"bob-{project}@example.com"): "bird",
                      ("e3", f"alice-{project}@example.com"): "dog", ("e4", f"bob-{project}@example.com"): "",
                      ("e5", f"alice-{project}@example.com"): "dog", ("e5", f"bob-{project}@example.com"): "cat"}
    assert all(a.lead_time == pytest.approx(3.5) and a.created_at and a.updated_at for a in snapshot.annotations)
    assert snapshot.cancelled == {"e0": 0, "e1": 1, "e2": 0, "e3": 0, "e4": 0, "e5": 0}
    assert snapshot.held[pending["e2"]] == frozenset({f"ls-{doomed}"})
    assert pending["e6"] not in snapshot.held, "an unanswered task is not exported"
    assert snapshot.cursor and snapshot.removed == []
    assert _exports(conn, project) == [], "the snapshot is deleted after the pull"

    conn.client.annotations.delete(id=doomed)
    conn.client.annotations.update(id=corrected, result=[{"from_name": "label", "to_name": "text",
                                                          "type": "choices", "value": {"choices": ["bird"]}}])
    _answer(conn, pending["e6"], "bird", bob)
    reference, snapshot = _pull_both(conn, project, pending, since=snapshot.cursor)
    _same(reference, snapshot)
    latest = {a.external_id: a.label for a in snapshot.annotations}
    assert latest[f"ls-{corrected}"] == "bird", "the corrected answer comes back with its new label"
    assert f"ls-{doomed}" not in latest and snapshot.held[pending["e2"]] == frozenset(), "the deleted answer is gone"
    assert {a.example_id for a in snapshot.annotations} >= {"e3", "e6"}
    assert _exports(conn, project) == []


def test_a_failed_download_still_deletes_the_snapshot_and_a_stuck_one_says_what_to_do(
        conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    project = ensure_project(conn, "snapshot cleanup", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, "text", snapshot_threshold=0)
    pending = dict(annotator.push([TaskRequest(example_id="x", round=0, rank=1, data={"text": "a bird"})]))
    _answer(conn, pending["x"], "bird", conn.user_id)
    real = annotator._request

    def download_fails(method, path, doing, *args, **kwargs):
        if path.endswith("/download"):
            raise ServiceError("the download broke")
        return real(method, path, doing, *args, **kwargs)

    monkeypatch.setattr(annotator, "_request", download_fails)
    with pytest.raises(ServiceError, match="the download broke"):
        annotator.pull(pending)
    assert _exports(conn, project) == [], "deleted although the download failed"
    monkeypatch.undo()

    base = f"api/projects/{project}/exports"
    created = annotator._request("POST", f"{base}/", "create", json={"title": "stuck"}).json()
    annotator._await_snapshot(base, int(created["id"]), "in_progress")  # polls once: built in the request
    annotator.snapshot_timeout = 0.0
    with pytest.raises(ServiceError, match="rqworker") as error:
        annotator._await_snapshot(base, int(created["id"]), "in_progress")
    assert f"export snapshot {created['id']}" in str(error.value)
    annotator._delete_snapshots(base, "stuck", None)  # found by its title
    assert _exports(conn, project) == []
    annotator.snapshot_timeout = 60.0
    assert len(annotator.pull(pending).annotations) == 1
    assert _exports(conn, project) == []
