"""Label Studio for real: a server on 127.0.0.1, push, pull, resume, skip, update, delete, several
annotators, bots, errors. Every test talks to the session's real server; nothing is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from al_loop.annotators.base import TaskRequest
from al_loop.annotators.labelstudio import LabelStudioAnnotator
from al_loop.api import load_config, prepare, run_loop
from al_loop.config import LabelStudioAnnotatorConfig
from al_loop.errors import ServiceError, WaitTimeout
from al_loop.labelstudio.connection import Connection, connect
from al_loop.labelstudio.project import config_choices, ensure_project, labeling_config
from al_loop.ledger import Ledger

from .conftest import TOKEN_ENV

pytestmark = pytest.mark.labelstudio
CLASSES = [str(d) for d in range(10)]


def _settings(server, **extra) -> LabelStudioAnnotatorConfig:
    return LabelStudioAnnotatorConfig(kind="labelstudio", url=server.url, token_env=TOKEN_ENV, **extra)


@pytest.fixture
def conn(labelstudio, tmp_path: Path) -> Connection:
    return connect(_settings(labelstudio), tmp_path)


@pytest.fixture
def ls_config(write_config, labelstudio, request: pytest.FixtureRequest):
    """A digits config whose annotator is the session's server, with a project per test."""

    def make(simulate: dict | None = None, quality: dict | None = None, **annotator):
        settings = {"kind": "labelstudio", "url": labelstudio.url, "token_env": TOKEN_ENV, "poll_interval": 0.2,
                    "timeout": 60, "project_title": request.node.name[-50:], **annotator}
        if simulate is not None:
            settings["simulate"] = simulate
        return write_config(annotator=settings, loop={"budget": 40}, **({"quality": quality} if quality else {}))

    return make


def _tasks(conn: Connection, project_id: int) -> list:
    return list(conn.client.tasks.list(project=project_id, fields="all", page_size=1000))


def _ledger(config) -> Ledger:
    return Ledger.open(config.output_dir / config.run_name / "ledger.sqlite")


def _answer(conn: Connection, task_id: str | int, choice: str | None, *, user: int | None = None,
            cancelled: bool = False, lead_time: float = 4.5) -> int:
    result = [] if choice is None else [{"from_name": "label", "to_name": "text", "type": "choices",
                                         "value": {"choices": [choice]}}]
    kwargs = {"completed_by": user} if user is not None else {}
    created = conn.client.annotations.create(id=int(task_id), result=result, was_cancelled=cancelled,
                                             lead_time=lead_time, **kwargs)
    return int(created.id)


# -- project ------------------------------------------------------------------------------------------


def test_labeling_config_round_trips_awkward_class_names() -> None:
    classes = ['a "quoted" class', "R&D", "<tag>", "ünïcode"]
    assert config_choices(labeling_config(classes)) == classes


def test_project_is_created_then_reused_and_a_mismatch_is_refused(conn: Connection) -> None:
    first = ensure_project(conn, "reuse me", CLASSES)
    assert ensure_project(conn, "reuse me", list(reversed(CLASSES))) == first
    assert ensure_project(conn, "other title", CLASSES, project_id=first) == first
    project = conn.client.projects.get(id=first)
    assert project.sampling == "Uncertainty sampling"
    with pytest.raises(ServiceError, match="refusing to relabel") as error:
        ensure_project(conn, "reuse me", [*CLASSES[:-1], "ten"])
    assert "missing: ['ten']" in str(error.value) and "not in classes: ['9']" in str(error.value)
    with pytest.raises(ServiceError, match="has no project 999999"):
        ensure_project(conn, "x", CLASSES, project_id=999999)


# -- push -----------------------------------------------------------------------------------------------


def _requests(n: int, round_index: int = 1, start: int = 0) -> list[TaskRequest]:
    return [TaskRequest(example_id=f"ex{i}", round=round_index, rank=i - start + 1, data={"text": f"text {i}"},
                        predicted_label=CLASSES[i % 10], confidence=0.3 + 0.01 * i, ambiguity=0.9 - 0.01 * i,
                        model_version="run/round-0") for i in range(start, start + n)]


def test_push_is_one_import_with_predictions_ranks_and_is_idempotent(conn: Connection) -> None:
    project = ensure_project(conn, "push", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, "text")
    first = annotator.push(_requests(5))
    tasks = {str(t.id): t for t in _tasks(conn, project)}
    assert set(first.values()) == set(tasks)
    for example_id, task_id in first.items():
        task = tasks[task_id]
        assert task.data["al_id"] == example_id
        i = int(example_id[2:])
        assert (task.data["al_round"], task.data["al_rank"]) == (1, i + 1)
        assert task.data["al_ambiguity"] == pytest.approx(0.9 - 0.01 * i)
        (prediction,) = task.predictions
        assert prediction.model_version == "run/round-0"
        assert prediction.score == pytest.approx(0.3 + 0.01 * i)
        assert prediction.result[0]["value"]["choices"] == [CLASSES[i % 10]]
    assert conn.client.projects.get(id=project).model_version == "run/round-0"
    again = annotator.push(_requests(7))  # the first five exist already: only two new tasks
    assert {k: again[k] for k in first} == first
    assert len(_tasks(conn, project)) == 7


def test_an_import_that_fails_after_creating_tasks_is_reconciled(conn: Connection,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project = ensure_project(conn, "flaky import", CLASSES)
    annotator = LabelStudioAnnotator(conn, project, CLASSES, "text")
    real_import = conn.client.projects.import_tasks

    def import_then_time_out(**kwargs):
        real_import(**kwargs)
        raise httpx.ReadTimeout("the answer was lost on the way back")

    monkeypatch.setattr(conn.client.projects, "import_tasks", import_then_time_out)
    pushed = annotator.push(_requests(4))
    tasks = {str(t.id): t.data["al_id"] for t in _tasks(conn, project)}
    assert len(tasks) == 4
    assert {tasks[t]: t for t in tasks} == pushed


# -- the loop through Label Studio ---------------------------------------------------------------------


class _CrashAfterImport(LabelStudioAnnotator):
    """Imports the batch, then dies before the ledger learns the task ids."""

    def push(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        super().push(tasks)
        raise RuntimeError("killed between import and ledger write")


def test_crash_between_import_and_ledger_write_creates_no_duplicates(ls_config, labelstudio) -> None:
    config = load_config(ls_config())
    workspace = prepare(config)
    conn = connect(config.annotator, config.output_dir)
    project = ensure_project(conn, config.annotator.project_title, workspace.classes)
    crashing = _CrashAfterImport(conn, project, workspace.classes, None)
    with pytest.raises(RuntimeError, match="killed"):
        run_loop(config, workspace=workspace, annotator=crashing, wait=False)
    with _ledger(config) as ledger:
        assert len(ledger.unpushed()) == 20, "the ledger never learned the task ids"
    result = run_loop(config, workspace=workspace, wait=False)
    assert result.stopped_because.startswith("pushed") or result.stopped_because.startswith("waiting")
    tasks = _tasks(conn, project)
    assert len(tasks) == 20, "no task was imported twice"
    with _ledger(config) as ledger:
        assert ledger.unpushed() == []
        assert ledger.pending() == {t.data["al_id"]: str(t.id) for t in tasks}


def test_pull_keeps_who_when_and_time_spent_then_skips_updates_and_deletes(ls_config, labelstudio) -> None:
    config = load_config(ls_config())
    first = run_loop(config, wait=False)  # pushes the initial 20, nobody has answered
    assert first.stopped_because == "pushed round 0 (20 tasks)" and not first.finished
    conn = connect(config.annotator, config.output_dir)
    project = int(first.labelstudio["labelstudio_project"])
    annotator_user = conn.client.users.create(username="ann", email=f"ann-{project}@example.com").id
    with _ledger(config) as ledger:
        pending = ledger.pending()
        truth = dict(zip(prepare(config).splits.pool.ids, prepare(config).splits.pool.labels, strict=True))
    ids = sorted(pending)
    answered, skipped, deleted = ids[:17], ids[17], ids[18]
    annotation_of = {e: _answer(conn, pending[e], truth[e], user=annotator_user, lead_time=7.25) for e in answered}
    _answer(conn, pending[skipped], None, cancelled=True)
    conn.client.tasks.delete(id=pending[deleted])

    waiting = run_loop(config, wait=False)  # 17 answered + 1 skipped of 19: not enough (min_fraction 1.0)
    assert waiting.stopped_because == "waiting for annotators: 18 of 19 tasks of round 0 done"
    with _ledger(config) as ledger:
        rows = {a["example_id"]: a for a in ledger.annotations()}
        assert set(rows) == set(answered)
        row = rows[answered[0]]
        assert row["annotator"] == f"ann-{project}@example.com"
        assert row["lead_time"] == pytest.approx(7.25)
        assert row["external_id"] == f"ls-{annotation_of[answered[0]]}"
        assert row["created_at"] and row["updated_at"] and row["round"] == 0
        assert ledger.status_counts() == {"labeled": 17, "skipped": 1, "unlabeled": 1, "queued": 1}
        assert deleted not in ledger.used_ids(), "a deleted task returns its example to the pool"

    _answer(conn, pending[ids[19]], truth[ids[19]], user=annotator_user)
    wrong = next(c for c in CLASSES if c != truth[answered[0]])
    conn.client.annotations.update(id=annotation_of[answered[0]], result=[
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [wrong]}}])
    resumed = run_loop(config, wait=False)  # round 0 done: train, log, push round 1
    assert resumed.stopped_because == "pushed round 1 (10 tasks)"
    with _ledger(config) as ledger:
        history = [a for a in ledger.annotations() if a["example_id"] == answered[0]]
        assert [h["value"] for h in history] == [truth[answered[0]], wrong], "the update is kept with its history"
        assert history[0]["superseded_by"] == history[1]["seq"]
        assert ledger.labels()[answered[0]] == wrong
        round_one = {e for e, _ in ledger.pending().items()}
        assert skipped not in round_one, "a skipped example is not pushed again"
        assert ledger.rounds()[0].n_labels == 18
    round_one_tasks = [t for t in _tasks(conn, project) if t.data["al_round"] == 1]
    assert len(round_one_tasks) == 10 and all(len(t.predictions) == 1 for t in round_one_tasks)
    ranks = sorted((t.data["al_rank"], t.predictions[0].score) for t in round_one_tasks)
    assert [r for r, _ in ranks] == list(range(1, 11))


def test_an_unknown_choice_stops_with_a_message_and_records_nothing(ls_config, labelstudio) -> None:
    config = load_config(ls_config())
    run_loop(config, wait=False)
    conn = connect(config.annotator, config.output_dir)
    with _ledger(config) as ledger:
        task = next(iter(ledger.pending().values()))
    _answer(conn, task, "banana")
    with pytest.raises(ServiceError, match="banana"):
        run_loop(config, wait=False)
    with _ledger(config) as ledger:
        assert ledger.annotations() == [] and ledger.get_meta("pull_cursor") is None


def test_bots_with_overlap_run_the_whole_loop_and_log_to_mlflow(ls_config, labelstudio, mlflow_uri: str) -> None:
    config = load_config(ls_config(simulate={"annotators": 3, "accuracy": [1.0, 1.0, 0.0], "per_task": 3}))
    result = run_loop(config)
    assert result.finished and result.stopped_because == "budget of 40 labels reached"
    conn = connect(config.annotator, config.output_dir)
    tasks = _tasks(conn, int(result.labelstudio["labelstudio_project"]))
    assert len(tasks) == 40 and all(len(t.annotations) == 3 for t in tasks)
    workspace = prepare(config)
    truth = dict(zip(workspace.splits.pool.ids, workspace.splits.pool.labels, strict=True))
    with _ledger(config) as ledger:
        annotations = ledger.annotations()
        assert len(annotations) == 120
        by_bot: dict[str, list[bool]] = {}
        for a in annotations:
            by_bot.setdefault(a["annotator"], []).append(a["value"] == truth[a["example_id"]])
        assert sorted(sum(v) for v in by_bot.values()) == [0, 40, 40], "the third bot is always wrong"
        assert all(label == truth[e] for e, label in ledger.labels().items()), "the majority outvotes it"
    history = MlflowClient(mlflow_uri).get_metric_history(result.run_id, "accuracy")
    assert sorted(m.step for m in history) == [20, 30, 40]


def test_an_unbiased_evaluation_set_is_labeled_first_and_never_trained_on(ls_config, labelstudio,
                                                                          mlflow_uri: str) -> None:
    config = load_config(ls_config(simulate={"annotators": 1}))
    config.evaluation.size = 30
    result = run_loop(config)
    with _ledger(config) as ledger:
        eval_ids = set(ledger.labels(purpose="eval"))
        assert len(eval_ids) == 30
        assert eval_ids.isdisjoint(ledger.labels()), "evaluation examples are never training labels"
        assert len(ledger.labels()) == 40
    conn = connect(config.annotator, config.output_dir)
    purposes = [t.data["al_purpose"] for t in _tasks(conn, int(result.labelstudio["labelstudio_project"]))]
    assert purposes.count("eval") == 30 and purposes.count("train") == 40
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.data.metrics["eval_size"] == 30
    assert "test_accuracy" in run.data.metrics, "in simulation the held-out split is logged beside it"


def test_waiting_times_out_with_a_message_and_resumes(ls_config, labelstudio) -> None:
    config = load_config(ls_config(timeout=1.0))
    with pytest.raises(WaitTimeout, match="0 of 20 tasks answered"):
        run_loop(config)
    with _ledger(config) as ledger:
        assert len(ledger.pending()) == 20 and ledger.unpushed() == []


# -- errors and secrets -------------------------------------------------------------------------------


def test_a_bad_token_and_an_unreachable_server_are_clear_errors(labelstudio, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG_TOKEN", "0" * 40)
    with pytest.raises(ServiceError, match="refused the token"):
        connect(LabelStudioAnnotatorConfig(kind="labelstudio", url=labelstudio.url, token_env="WRONG_TOKEN"),
                tmp_path)
    with pytest.raises(ServiceError, match="cannot reach Label Studio"):
        connect(LabelStudioAnnotatorConfig(kind="labelstudio", url="http://127.0.0.1:9", token_env="WRONG_TOKEN",
                                           max_retries=0), tmp_path)
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    with pytest.raises(Exception, match="UNSET_TOKEN"):
        connect(LabelStudioAnnotatorConfig(kind="labelstudio", url=labelstudio.url, token_env="UNSET_TOKEN"),
                tmp_path)


def test_cli_no_wait_then_sync_and_the_token_never_leaks(ls_config, labelstudio, mlflow_uri: str,
                                                        tmp_path: Path) -> None:
    path = ls_config(simulate={"annotators": 2, "per_task": 1})
    script = Path(sys.executable).with_name("al-loop")
    env = {**os.environ, "COLUMNS": "200"}
    outputs = []
    for command in (["run", "--no-wait"], ["sync"], ["sync"], ["run"]):
        done = subprocess.run([str(script), *command, str(path)], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    assert "paused: pushed round 0 (20 tasks)" in outputs[0]
    assert "round   0 · labels    20" in outputs[1] and "paused: pushed round 1 (10 tasks)" in outputs[1]
    assert "round   1 · labels    30" in outputs[2]
    assert "done: budget of 40 labels reached" in outputs[3]
    assert f"{labelstudio.url}/projects/" in outputs[3]
    token = os.environ[TOKEN_ENV]
    config = load_config(path)
    with _ledger(config) as ledger:
        run = MlflowClient(mlflow_uri).get_run(ledger.get_meta("mlflow_run_id"))
        stored = json.dumps({"params": run.data.params, "tags": run.data.tags}) + "".join(
            str(v) for v in ledger._db.execute("SELECT * FROM meta").fetchall())
    assert run.data.params["annotator.token_env"] == TOKEN_ENV
    for text in [*outputs, stored]:
        assert token not in text


def test_a_personal_access_token_works_like_a_legacy_token(conn: Connection, labelstudio, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    personal = conn.client.tokens.create().token
    assert personal.count(".") == 2, "a personal access token is a JWT (refresh token)"
    monkeypatch.setenv("MY_PAT", personal)
    via_pat = connect(LabelStudioAnnotatorConfig(kind="labelstudio", url=labelstudio.url, token_env="MY_PAT"),
                      tmp_path)
    assert via_pat.user_id == conn.user_id
    project = ensure_project(via_pat, "via a personal token", CLASSES)
    pushed = LabelStudioAnnotator(via_pat, project, CLASSES, "text").push(_requests(3))
    assert len(pushed) == 3


def test_a_pool_without_ground_truth_is_measured_on_the_annotated_evaluation_set(
        labelstudio, tmp_path: Path, mlflow_uri: str) -> None:
    import numpy as np
    import pandas as pd
    import yaml

    rng = np.random.default_rng(0)
    n = 60
    truth = {f"row{i}": ("big" if i % 2 else "small") for i in range(n)}
    frame = pd.DataFrame({"id": list(truth), "size": [(5.0 if truth[k] == "big" else 1.0) + rng.normal(0, 0.3)
                                                      for k in truth], "noise": rng.normal(size=n)})
    frame.to_csv(tmp_path / "pool.csv", index=False)  # no label column at all
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump({
        "dataset": {"path": "pool.csv", "feature_columns": ["size", "noise"], "label_column": None,
                    "classes": ["small", "big"]},
        "loop": {"batch_size": 5, "initial_size": 10, "budget": 15},
        "annotator": {"kind": "labelstudio", "url": labelstudio.url, "token_env": TOKEN_ENV,
                      "project_title": "campaign without ground truth"},
        "evaluation": {"size": 10},
        "tracking": {"uri": mlflow_uri, "experiment": "campaign"}, "output_dir": "out"}))
    config = load_config(path)
    conn = connect(config.annotator, config.output_dir)
    project = None
    for expected in ("pushed round 0 (10 tasks)", "pushed round 1 (10 tasks)", "pushed round 2 (5 tasks)",
                     "budget of 15 labels reached"):
        result = run_loop(config, wait=False)
        assert result.stopped_because == expected
        project = int(result.labelstudio["labelstudio_project"])
        for task in _tasks(conn, project):  # a person answers whatever is open, from the truth
            if not task.annotations:
                assert "size:" in task.data["text"], "numeric rows are shown as readable lines"
                _answer(conn, task.id, truth[task.data["al_id"]])
    with _ledger(config) as ledger:
        assert len(ledger.labels(purpose="eval")) == 10 and len(ledger.labels()) == 15
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    assert run.data.metrics["eval_size"] == 10
    assert run.data.metrics["accuracy"] >= 0.8, "two well separated classes, measured on the evaluation set"
    assert "test_accuracy" not in run.data.metrics


def test_routing_round_trips_through_label_studio_and_the_reviews_train_the_next_model(
        ls_config, labelstudio, tmp_path: Path, mlflow_uri: str) -> None:
    import pandas as pd

    from al_loop.route import route

    path = ls_config(simulate={"annotators": 1})
    config = load_config(path)
    run_loop(config)  # 40 labels through Label Studio; the finished run logs its model
    workspace = prepare(config)
    test = workspace.splits.test
    traffic = test.inputs.iloc[:25].assign(id=[f"new-{i}" for i in range(25)])
    traffic.to_csv(tmp_path / "new.csv", index=False)
    config.routing.hi = 0.9
    result = route(config, tmp_path / "new.csv")
    assert result.auto + result.review == 25 and result.review == result.pushed > 0
    decisions = pd.read_csv(result.decisions)
    assert set(decisions["decision"]) <= {"auto", "review"}
    assert (decisions["confidence"] >= 0.9).sum() == result.auto
    assert route(config, tmp_path / "new.csv").pushed == 0, "routing the same rows again pushes nothing twice"

    conn = connect(config.annotator, config.output_dir)
    with _ledger(config) as ledger:
        project = int(ledger.get_meta("labelstudio_project"))
    review_tasks = [t for t in _tasks(conn, project) if t.data["al_purpose"] == "review"]
    assert len(review_tasks) == result.review
    assert all(t.data["al_round"] == -1 and len(t.predictions) == 1 for t in review_tasks)
    truth = dict(zip(traffic["id"], test.labels[:25], strict=True))
    for task in review_tasks:  # a person reviews them
        _answer(conn, task.id, str(truth[task.data["al_id"]]))

    config.loop.budget = 50
    resumed = run_loop(config)
    last = resumed.rounds[-1].metrics
    assert last["reviewed_routed_labels"] == result.review, "the reviews trained the next model"
    with _ledger(config) as ledger:
        assert len(ledger.routed_labels()) == result.review and ledger.routed_pending() == {}


def test_overlap_disagreements_and_specialists_through_label_studio(ls_config, labelstudio, mlflow_uri: str,
                                                                    tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from al_loop.cli import app

    path = ls_config(simulate={"annotators": 4, "accuracy": [0.95, 0.9, 0.85, 0.1], "expert_accuracy": 1.0},
                     quality={"overlap": 3, "overlap_share": 0.5, "adjudication": {"min_agreement": 0.7},
                              "flag_min_tasks": 8})
    config = load_config(path)
    result = run_loop(config)
    assert result.finished
    conn = connect(config.annotator, config.output_dir)
    routine = int(result.labelstudio["labelstudio_project"])
    experts = int(result.labelstudio["labelstudio_expert_project"])
    assert routine != experts, "specialists work in their own project; the routine queue stays routine"
    with _ledger(config) as ledger:
        rows = {r["id"]: r for r in ledger.examples(("labeled", "queued", "skipped"))}
        annotations = ledger.annotations()

    tasks = _tasks(conn, routine)
    assert len(tasks) == len(rows) == 40
    for task in tasks:  # the overlap is set on each task in Label Studio, and that many bots answered
        assert task.overlap == rows[task.data["al_id"]]["required"]
        assert len(task.annotations) == task.overlap and task.is_labeled
    assert {t.overlap for t in tasks} == {1, 3}

    adjudicated = {e for e, r in rows.items() if r["adjudication"] == "expert"}
    assert adjudicated, "with a random bot in the crowd some 3-way tasks split"
    expert_tasks = _tasks(conn, experts)
    assert {t.data["al_id"] for t in expert_tasks} == adjudicated
    assert "prior" in conn.client.projects.get(id=experts).label_config
    by_example: dict[str, list[dict]] = {}
    for a in annotations:
        by_example.setdefault(a["example_id"], []).append(a)
    for task in expert_tasks:
        example = task.data["al_id"]
        routine_answers = [a for a in by_example[example] if a["lane"] == "routine"]
        assert all(f"{a['annotator']}: {a['value']}" in task.data["prior"] for a in routine_answers), \
            "the specialist sees every earlier answer and who gave it"
        (expert,) = [a for a in by_example[example] if a["lane"] == "expert"]
        assert expert["annotator"] == "expert1@bots.al-loop.local"
        assert rows[example]["label"] == expert["value"] and rows[example]["label_method"] == "expert"

    metrics = MlflowClient(mlflow_uri).get_run(result.run_id).data.metrics
    assert metrics["annotator/bot4_bots.al-loop.local/flagged"] == 1.0
    assert metrics["consensus/adjudicated"] == len(adjudicated)

    out = tmp_path / "labels.csv"
    cli = CliRunner().invoke(app, ["audit", str(path), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    text = out.read_text()
    assert os.environ[TOKEN_ENV] not in text and "password" not in text.lower() and "token" not in text.lower()
    import pandas as pd

    table = pd.read_csv(out, dtype={"example_id": str})
    assert len(table) == 40 and table["adjudicated"].sum() == len(adjudicated)
    answered = table.set_index("example_id")["answers"].map(json.loads)
    some = next(iter(adjudicated))
    assert {a["annotator"] for a in answered[some]} == {a["annotator"] for a in by_example[some]}
    assert all(a["seconds"] and a["created_at"] for a in answered[some]), "when, and seconds spent, per answer"


def test_people_with_overlap_skips_answers_after_a_skip_and_a_task_short_of_its_overlap(ls_config,
                                                                                         labelstudio) -> None:
    config = load_config(ls_config(quality={"overlap": 2}, timeout=1, poll_interval=0.2))
    first = run_loop(config, wait=False)  # pushes the initial 20 tasks, two annotators each
    conn = connect(config.annotator, config.output_dir)
    project = int(first.labelstudio["labelstudio_project"])
    assert conn.client.projects.get(id=project).maximum_annotations == 2
    tag = config.annotator.project_title[-12:]
    ann1 = conn.client.users.create(username=f"p1-{tag}", email=f"p1-{project}@example.com").id
    ann2 = conn.client.users.create(username=f"p2-{tag}", email=f"p2-{project}@example.com").id
    with _ledger(config) as ledger:
        pending = ledger.pending()
    a, b, c, *rest = sorted(pending)
    _answer(conn, pending[a], None, user=ann1, cancelled=True)  # skips; the other one answers
    _answer(conn, pending[a], "3", user=ann2)
    _answer(conn, pending[b], None, user=ann1, cancelled=True)  # skips, then answers after all
    _answer(conn, pending[b], "4", user=ann1)
    _answer(conn, pending[c], "5", user=ann1)  # answer 1 of 2 only
    _answer(conn, pending[c], "5", user=ann2)
    for example in rest:
        _answer(conn, pending[example], "1", user=ann1)
        _answer(conn, pending[example], "2", user=ann2)
    with pytest.raises(WaitTimeout, match="1 of them have some but fewer answers than their overlap asks"):
        run_loop(config)
    with _ledger(config) as ledger:
        rows = {r["id"]: r for r in ledger.examples(("labeled", "queued"))}
    assert (rows[a]["status"], rows[a]["label"], rows[a]["label_method"]) == ("labeled", "3", "single")
    assert rows[b]["status"] == "queued" and rows[b]["skips"] == 0, "a skip answered later is not a skip"
    assert (rows[c]["label"], rows[c]["label_method"], rows[c]["agreement"]) == ("5", "majority", 1.0)
    assert all(rows[e]["label"] == "1" and rows[e]["agreement"] == 0.5 for e in rest), "a tie: the first answer"
    _answer(conn, pending[b], "4", user=ann2)
    assert run_loop(config, wait=False).stopped_because == "pushed round 1 (10 tasks)"
