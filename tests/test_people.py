"""People in Label Studio, for real: what annotators and reviewers do through the API (as the UI does) after
al-loop pulled their work: delete an answer, delete an answered task, correct a label after the run
finished, submit without a choice, and take the next task from the labeling stream. Nothing is mocked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from al_loop.annotators.base import TaskRequest
from al_loop.annotators.labelstudio import LabelStudioAnnotator
from al_loop.api import load_config, prepare, run_loop
from al_loop.audit import audit_table
from al_loop.cli import app
from al_loop.errors import WaitTimeout
from al_loop.labelstudio.connection import Connection, connect
from al_loop.labelstudio.project import ensure_project
from al_loop.ledger import Ledger
from al_loop.loop import FINAL_MODEL

from .conftest import TOKEN_ENV

pytestmark = pytest.mark.labelstudio
CLASSES = [str(d) for d in range(10)]


@pytest.fixture
def ls_config(write_config, labelstudio, request: pytest.FixtureRequest):
    """A digits config (initial 20, batches of 10, budget 40) whose annotator is the session's server."""

    def make(simulate: dict | None = None, budget: int = 40, **annotator):
        settings = {"kind": "labelstudio", "url": labelstudio.url, "token_env": TOKEN_ENV, "poll_interval": 0.2,
                    "timeout": 60, "project_title": request.node.name[-50:], **annotator}
        if simulate is not None:
            settings["simulate"] = simulate
        return write_config(annotator=settings, loop={"budget": budget})

    return make


def _http(server) -> httpx.Client:
    """The API as the UI calls it (the session's admin token)."""
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Token {os.environ[TOKEN_ENV]}"},
                        timeout=60)


def _ledger(config) -> Ledger:
    return Ledger.open(config.output_dir / config.run_name / "ledger.sqlite")


def _answer(conn: Connection, task_id: str | int, choice: str | None, user: int | None = None) -> int:
    """One submitted annotation (`choice` None: submitted without a choice)."""
    result = [] if choice is None else [{"from_name": "label", "to_name": "text", "type": "choices",
                                         "value": {"choices": [choice]}}]
    kwargs = {"completed_by": user} if user is not None else {}
    return int(conn.client.annotations.create(id=int(task_id), result=result, lead_time=3.0, **kwargs).id)


def _round_zero_answered(ls_config, **annotator):
    """Push the initial 20 tasks, have a person answer them all from the truth, and sync: round 0 is
    trained and round 1 pushed. Returns config, conn, project, user (id), pending (round 0's example ->
    task), annotations (example -> annotation id), truth."""
    config = load_config(ls_config(**annotator))
    first = run_loop(config, wait=False)
    conn = connect(config.annotator, config.output_dir)
    project = int(first.labelstudio["labelstudio_project"])
    tag = config.annotator.project_title[-20:]
    user = conn.client.users.create(username=f"p-{tag}", email=f"p-{project}@example.com").id
    with _ledger(config) as ledger:
        pending = ledger.pending()
    pool = prepare(config).splits.pool
    truth = dict(zip(pool.ids, pool.labels, strict=True))
    annotations = {e: _answer(conn, pending[e], truth[e], user=user) for e in sorted(pending)}
    assert run_loop(config, wait=False).stopped_because == "pushed round 1 (10 tasks)"
    return SimpleNamespace(config=config, conn=conn, project=project, user=user, pending=pending,
                           annotations=annotations, truth=truth)


# -- 1. a deleted answer --------------------------------------------------------------------------------


def test_a_deleted_answer_is_retired_and_its_example_waits_again_on_its_task(ls_config, labelstudio) -> None:
    run = _round_zero_answered(ls_config)
    config, conn, user, pending, annotations, truth = (run.config, run.conn, run.user, run.pending,
                                                       run.annotations, run.truth)
    victim = sorted(pending)[0]
    task = pending[victim]
    with _http(labelstudio) as http:
        before = http.get(f"/api/tasks/{task}").json()
        assert http.delete(f"/api/annotations/{annotations[victim]}/").status_code == 204
        after = http.get(f"/api/tasks/{task}").json()
    assert (before["is_labeled"], after["is_labeled"], after["total_annotations"]) == (True, False, 0), \
        "Label Studio shows 0 answers and serves the task again"
    assert after["updated_at"] > before["updated_at"], "deleting an annotation bumps the task's updated_at"

    run_loop(config, wait=False)  # round 1 is not answered: a pull, nothing more
    with _ledger(config) as ledger:
        assert victim not in ledger.labels(), "a deleted answer no longer trains the model"
        assert ledger.pending()[victim] == task, "the example waits again, on its same task"
        row = next(a for a in ledger.annotations() if a["example_id"] == victim)
        assert row["deleted_at"] is not None and row["superseded_by"] is None, "retired, kept in the trail"
        assert len(ledger.labels()) == 19

    _answer(conn, task, truth[victim], user=user)  # the task is served again and answered again
    run_loop(config, wait=False)
    with _ledger(config) as ledger:
        assert ledger.labels()[victim] == truth[victim]
    table = audit_table(config).set_index("example_id")
    answers = table.loc[victim, "answers"]
    assert [a["deleted"] for a in answers] == [True, False] and not any(a["superseded"] for a in answers)
    assert table.loc[victim, "n_answers"] == 1


# -- 2. a deleted answered task -------------------------------------------------------------------------


def test_deleting_an_answered_task_returns_its_example_to_the_pool(ls_config, labelstudio) -> None:
    run = _round_zero_answered(ls_config)
    config, conn, pending = run.config, run.conn, run.pending
    victim = sorted(pending)[1]
    conn.client.tasks.delete(id=int(pending[victim]))
    run_loop(config, wait=False)
    with _ledger(config) as ledger:
        assert victim not in ledger.used_ids(), "back in the pool: it can be picked again"
        assert victim not in ledger.labels()
        (row,) = [a for a in ledger.annotations() if a["example_id"] == victim]
        assert row["deleted_at"] is not None, "its answer is retired, kept in the trail"
        assert ledger.status_counts()["labeled"] == 19


def test_the_deleted_task_check_runs_only_when_the_task_count_changes(labelstudio, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from al_loop.config import LabelStudioAnnotatorConfig

    conn = connect(LabelStudioAnnotatorConfig(kind="labelstudio", url=labelstudio.url, token_env=TOKEN_ENV),
                   tmp_path)
    project = ensure_project(conn, "deleted task check", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, "text")
    pushed = annotator.push([TaskRequest(example_id=f"ex{i}", round=0, rank=i + 1, data={"text": f"t{i}"})
                             for i in range(4)])
    _answer(conn, pushed["ex0"], "1")
    closed = {"ex0": pushed["ex0"]}
    pending = {e: t for e, t in pushed.items() if e != "ex0"}
    checks: list[int] = []
    real = annotator._deleted
    monkeypatch.setattr(annotator, "_deleted", lambda ids: checks.append(len(ids)) or real(ids))
    cursor = annotator.pull(pending, None, closed={}).cursor
    assert cursor and checks == [3], "the first pull checks (nothing known yet)"
    cursor = annotator.pull(pending, cursor, closed=closed).cursor
    assert checks == [3], "same task count as the last pull: no listing"
    conn.client.tasks.delete(id=int(pushed["ex0"]))
    result = annotator.pull(pending, cursor, closed=closed)
    assert checks == [3, 4] and result.removed == ["ex0"], "one task fewer: checked, the answered one found gone"


# -- 3. a label corrected after the run finished --------------------------------------------------------


def test_a_label_corrected_after_the_run_finished_is_pulled_and_the_run_finishes_again(
        ls_config, labelstudio, mlflow_uri: str) -> None:
    path = ls_config(simulate={"annotators": 1}, budget=30)
    config = load_config(path)
    done = run_loop(config)
    assert done.finished and done.stopped_because == "budget of 30 labels reached"
    conn = connect(config.annotator, config.output_dir)
    with _ledger(config) as ledger:
        labeled = ledger.examples(("labeled",))
    example = labeled[0]
    wrong = next(c for c in CLASSES if c != example["label"])
    (annotation,) = conn.client.tasks.get(id=int(example["task_id"])).annotations
    conn.client.annotations.update(id=int(annotation["id"]), result=[
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [wrong]}}])
    other = labeled[1]  # and a reviewer deletes another answer
    (deleted,) = conn.client.tasks.get(id=int(other["task_id"])).annotations
    conn.client.annotations.delete(id=int(deleted["id"]))

    with _ledger(config) as ledger:
        first_model = json.loads(ledger.get_meta(FINAL_MODEL))["model_id"]
    synced = CliRunner().invoke(app, ["sync", str(path)])
    assert synced.exit_code == 0, synced.output
    assert "2 labels changed since the run finished" in synced.output
    assert f"{example['id']}: {example['label']} → {wrong}" in synced.output
    assert f"{other['id']}: {other['label']} → waiting again" in synced.output
    assert "done: budget of 30 labels reached" in synced.output
    with _ledger(config) as ledger:
        assert ledger.labels()[str(example["id"])] == wrong and str(other["id"]) not in ledger.labels()
    client = MlflowClient(mlflow_uri)
    history = client.get_metric_history(done.run_id, "accuracy")
    assert [m.step for m in history] == [20, 30, 29], "the final metrics again, on the labels there are now"
    assert client.get_run(done.run_id).data.metrics["relabeled_after_finish"] == 2

    # the bot takes the task served again (at the next pull): that label counts too, and then nothing changes
    answered = CliRunner().invoke(app, ["sync", str(path)])
    assert answered.exit_code == 0, answered.output
    assert f"1 label changed since the run finished: {other['id']}: none → {other['label']}" in answered.output
    assert [m.step for m in client.get_metric_history(done.run_id, "accuracy")] == [20, 30, 29, 30]
    final = CliRunner().invoke(app, ["sync", str(path)])
    assert final.exit_code == 0 and "changed since the run finished" not in final.output, "said once"
    with _ledger(config) as ledger:
        assert ledger.labels()[str(other["id"])] == other["label"] and len(ledger.labels()) == 30
        last_model = json.loads(ledger.get_meta(FINAL_MODEL))["model_id"]
    # as many labels as at the first finish, one of them corrected: a model of these labels, not the first one
    assert last_model != first_model


# -- 4. a submission without a choice -------------------------------------------------------------------


def test_an_empty_submission_is_named_and_can_be_requeued_for_someone_else(ls_config, labelstudio) -> None:
    path = ls_config(timeout=1)
    config = load_config(path)
    first = run_loop(config, wait=False)
    conn = connect(config.annotator, config.output_dir)
    project = int(first.labelstudio["labelstudio_project"])
    ann = conn.client.users.create(username=f"e-{project}", email=f"empty-{project}@example.com").id
    with _ledger(config) as ledger:
        pending = ledger.pending()
    pool = prepare(config).splits.pool
    truth = dict(zip(pool.ids, pool.labels, strict=True))
    blank, *rest = sorted(pending)
    for example in rest:
        _answer(conn, pending[example], truth[example], user=ann)
    _answer(conn, pending[blank], None, user=ann)  # the API accepts it; Label Studio counts the task as done
    with _http(labelstudio) as http:
        assert http.get(f"/api/tasks/{pending[blank]}").json()["is_labeled"] is True

    named = f"task {pending[blank]} (example {blank}) by empty-{project}@example.com"
    with pytest.raises(WaitTimeout) as waited:
        run_loop(config)
    assert named in str(waited.value) and "--requeue-empty" in str(waited.value)
    synced = CliRunner().invoke(app, ["sync", str(path)])
    assert synced.exit_code == 0, synced.output
    assert "waiting for annotators: 19 of 20" in synced.output
    assert f"task {pending[blank]} (example {blank}, round 0) by empty-{project}@example.com" in synced.output

    requeued = CliRunner().invoke(app, ["sync", str(path), "--requeue-empty"])
    assert requeued.exit_code == 0, requeued.output
    with _http(labelstudio) as http:
        task = http.get(f"/api/tasks/{pending[blank]}").json()
        assert (task["overlap"], task["is_labeled"]) == (2, False)
        served = http.get(f"/api/projects/{project}/next").json()
    assert served["id"] == int(pending[blank]), "the labeling stream serves it to someone else"
    _answer(conn, pending[blank], truth[blank])  # the admin, who had not seen it
    assert run_loop(config, wait=False).stopped_because == "pushed round 1 (10 tasks)"
    with _ledger(config) as ledger:
        assert ledger.labels()[blank] == truth[blank] and ledger.empty_submissions() == []
        assert [a["value"] for a in ledger.annotations() if a["example_id"] == blank] == ["", truth[blank]]
    assert 'required="true"' in conn.client.projects.get(id=project).label_config, "the UI asks for a choice"


# -- 6. the order annotators get ------------------------------------------------------------------------


def test_the_labeling_stream_serves_al_loops_order_and_al_order_sorts_across_rounds(ls_config,
                                                                                     labelstudio) -> None:
    run = _round_zero_answered(ls_config)
    config, conn, project, truth = run.config, run.conn, run.project, run.truth
    with _http(labelstudio) as http:
        served = []
        for _ in range(3):  # a person takes the next task, answers it, takes the next
            task = http.get(f"/api/projects/{project}/next").json()
            served.append(task["data"]["al_rank"])
            _answer(conn, task["id"], truth[task["data"]["al_id"]])
    assert served == [1, 2, 3], "the stream serves al-loop's rank 1 first"
    tasks = list(conn.client.tasks.list(project=project, fields="all", page_size=1000))
    with _ledger(config) as ledger:
        rows = {r["id"]: r for r in ledger.examples(("labeled", "queued"))}
    orders = sorted(t.data["al_order"] for t in tasks)
    assert orders == list(range(1, 31)), "one order across rounds: sortable in the Data Manager"
    for task in tasks:
        data = task.data
        assert data["al_order"] == (0 if data["al_round"] == 0 else 20) + data["al_rank"]
        if data["al_round"] == 1:
            assert data["al_confidence"] == pytest.approx(rows[data["al_id"]]["confidence"], abs=1e-6)
            (prediction,) = task.predictions
            assert prediction.score == pytest.approx(data["al_order"] / (data["al_order"] + 1))
