"""End to end: the loop and the comparison against a real MLflow store, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from al_loop.annotators import PullResult, SimulatedAnnotator, TaskRequest
from al_loop.api import compare, load_config, prepare, run_loop
from al_loop.curves import aubc
from al_loop.ledger import Ledger

pytestmark = pytest.mark.e2e


def _picks(run_dir: Path) -> list[tuple[int, int, str]]:
    with Ledger.open(run_dir / "ledger.sqlite") as ledger:
        return ledger._db.execute("SELECT round, rank, id FROM examples ORDER BY round, rank").fetchall()


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    history = client.get_metric_history(run_id, key)
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {sorted(steps)}"
    return {m.step: m.value for m in history}


def test_run_logs_each_round_at_step_labels_used(write_config, mlflow_uri: str) -> None:
    config = load_config(write_config())
    result = run_loop(config)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {k: run.data.tags[k] for k in ("strategy", "dataset", "seed")} == {
        "strategy": "margin", "dataset": "digits", "seed": "0"}
    assert run.data.params["loop.batch_size"] == "10"
    assert run.data.params["dataset.name"] == "digits"

    accuracy = _history(client, result.run_id, "accuracy")
    assert sorted(accuracy) == [20, 30, 40, 50, 60]
    ledger_accuracy = {r.n_labels: r.metrics["accuracy"] for r in result.rounds}
    assert accuracy == pytest.approx(ledger_accuracy)
    assert accuracy[60] > accuracy[20] + 0.1, "sixty labels should beat the twenty random ones on digits"
    assert sorted(_history(client, result.run_id, "pick_ambiguity")) == [30, 40, 50, 60]
    for key in ("macro_f1", "log_loss", "round_seconds"):
        assert sorted(_history(client, result.run_id, key)) == [20, 30, 40, 50, 60]

    assert "learning_curve.png" in [a.path for a in client.list_artifacts(result.run_id)]
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert len(models) == 1
    mlflow.set_tracking_uri(mlflow_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{models[0].model_id}")
    test = prepare(config).splits.test
    predicted = pipeline.predict(test.inputs)
    assert np.mean(predicted == test.labels) == pytest.approx(accuracy[60])


@pytest.mark.parametrize("strategy", ["entropy", "auto"])
def test_same_config_and_seed_give_the_same_picks_and_metrics(write_config, tmp_path: Path, strategy: str) -> None:
    config = load_config(write_config(loop={"strategy": strategy}))
    first = run_loop(config)
    second = run_loop(config.model_copy(update={"output_dir": tmp_path / "again"}))
    assert _picks(first.run_dir) == _picks(second.run_dir)
    assert [r.metrics["accuracy"] for r in first.rounds] == [r.metrics["accuracy"] for r in second.rounds]
    other_seed = run_loop(config.with_overrides(seed=1))
    assert _picks(other_seed.run_dir) != _picks(first.run_dir)


class _Crashing(SimulatedAnnotator):
    """Dies once, at a chosen call: the way a killed process would leave the ledger."""

    def __init__(self, base: SimulatedAnnotator, crash_on: str, at_call: int) -> None:
        self.__dict__.update(base.__dict__)
        self.crash_on, self.at_call, self.calls = crash_on, at_call, 0
        self.pushed: list[list[str]] = []

    def push(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        self.pushed.append([t.example_id for t in tasks])
        result = super().push(tasks)
        self._maybe_crash("push")
        return result

    def pull(self, pending: Mapping[str, str | None], since: str | None = None) -> PullResult:
        self._maybe_crash("pull")
        return super().pull(pending, since)

    def _maybe_crash(self, where: str) -> None:
        if where == self.crash_on:
            self.calls += 1
            if self.calls == self.at_call:
                raise RuntimeError(f"simulated crash in {where}")


@pytest.mark.parametrize(("crash_on", "strategy"), [("push", "margin"), ("pull", "margin"), ("pull", "auto")])
def test_a_crash_anywhere_resumes_without_duplicates_or_lost_labels(write_config, tmp_path: Path, mlflow_uri: str,
                                                                    crash_on: str, strategy: str) -> None:
    config = load_config(write_config(loop={"strategy": strategy}))
    workspace = prepare(config)
    reference = run_loop(config.model_copy(update={"output_dir": tmp_path / "uninterrupted"}), workspace=workspace)

    plain = SimulatedAnnotator(dict(zip(workspace.splits.pool.ids, workspace.splits.pool.labels, strict=True)),
                               workspace.classes)
    crashing = _Crashing(plain, crash_on, at_call=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_loop(config, workspace=workspace, annotator=crashing)
    client = MlflowClient(mlflow_uri)
    with Ledger.open(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        run_id = ledger.get_meta("mlflow_run_id")
        assert ledger.pending(), "the crash left a round waiting"
    assert client.get_run(run_id).info.status == "FAILED"

    resumed = SimulatedAnnotator(plain._truth, workspace.classes)
    again = _Crashing(resumed, "never", at_call=0)
    result = run_loop(config, workspace=workspace, annotator=again)
    assert result.run_id == run_id, "the resumed loop continues the same MLflow run"
    if crash_on == "push":  # the batch whose push was not recorded is pushed again, not a new one
        assert again.pushed[0] == crashing.pushed[-1]
    picks = _picks(result.run_dir)
    assert len({p[2] for p in picks}) == len(picks) == 60
    assert picks == _picks(reference.run_dir)
    assert _history(client, run_id, "accuracy") == _history(client, reference.run_id, "accuracy")
    assert client.get_run(run_id).info.status == "FINISHED"


def test_the_default_strategy_is_auto_and_logs_its_choices_to_mlflow_and_the_ledger(write_config, tmp_path: Path,
                                                                                  mlflow_uri: str) -> None:
    path = write_config(loop={"batch_size": 10, "initial_size": 20, "budget": 80})
    raw = yaml.safe_load(path.read_text())
    del raw["loop"]["strategy"]  # what a user gets without choosing
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.loop.strategy == "auto" and config.run_name == "auto-seed0"
    result = run_loop(config)
    client = MlflowClient(mlflow_uri)
    query_steps = [30, 40, 50, 60, 70, 80]
    arm_names = ("margin", "margin_diverse", "random")
    chances = {arm: _history(client, result.run_id, f"auto/p_{arm}") for arm in arm_names}
    assert all(sorted(c) == query_steps for c in chances.values())
    for step in query_steps:
        assert sum(c[step] for c in chances.values()) == pytest.approx(1.0)
    arms = _history(client, result.run_id, "auto/arm")
    assert sorted(arms) == query_steps and set(arms.values()) <= {0.0, 1.0, 2.0}
    assert _history(client, result.run_id, "auto/rewarded_rounds")[80] >= 3, "later rounds are judged by probes"
    with Ledger.open(result.run_dir / "ledger.sqlite") as ledger:
        for round_index in range(1, 7):
            record = json.loads(ledger.get_meta(f"strategy/auto/round/{round_index}"))
            assert record["arm"] == arm_names[int(arms[20 + 10 * round_index])]
            assert len(record["probes"]) == 1
            probe = str(prepare(config).splits.pool.ids[record["probes"][0]])
            rank, strategy = ledger._db.execute("SELECT e.rank, r.strategy FROM examples e JOIN rounds r "
                                                "ON r.round = e.round WHERE e.id = ?", (probe,)).fetchone()
            assert (rank, strategy) == (10, "auto"), "the probe is the round's last pick"


def test_a_typical_initial_set_is_one_central_row_per_cluster_and_names_another_run(write_config) -> None:
    plain = load_config(write_config(loop={"budget": 40}))
    typical = load_config(write_config(loop={"budget": 40, "initial_strategy": "typical"}))
    assert typical.identity() != plain.identity(), "another initial set is another run"
    result = run_loop(typical)
    assert result.rounds[0].strategy == "initial-typical" and result.rounds[1].strategy == "margin"
    initial = [p[2] for p in _picks(result.run_dir) if p[0] == 0]
    workspace = prepare(typical)
    labels = workspace.splits.pool.labels[workspace.rows(initial)]
    assert len(initial) == 20 and len(set(labels)) >= 9, "20 typical rows of digits cover (nearly) every class"


def test_budget_can_be_extended_on_a_finished_run(write_config) -> None:
    path = write_config(loop={"budget": 40})
    first = run_loop(load_config(path))
    longer = load_config(path)
    longer.loop.budget = 60
    second = run_loop(longer)
    assert second.run_id == first.run_id
    assert [r.n_labels for r in second.rounds] == [20, 30, 40, 50, 60]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("al-loop")
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def test_cli_run_and_a_second_concurrent_run_is_refused(write_config, tmp_path: Path) -> None:
    path = write_config(loop={"budget": 30})
    config = load_config(path)
    with Ledger.open(config.output_dir / config.run_name / "ledger.sqlite"):
        busy = _cli("run", str(path), cwd=tmp_path)
    assert busy.returncode == 3
    assert "another al-loop process is using the ledger" in busy.stderr
    done = _cli("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "round   1 · labels    30" in done.stdout
    assert "budget of 30 labels reached" in done.stdout


@pytest.mark.parametrize(("sections", "message"), [
    ({"loop": {"batch_size": 2000}}, "loop.batch_size (2000) is larger than what is left"),
    ({"loop": {"initial_size": 5000}}, "loop.initial_size (5000) is larger than the pool"),
    ({"loop": {"batchsize": 3}}, "loop.batchsize: unknown key"),
    ({"evaluation": {"size": 5000}}, "evaluation.size (5000) leaves nothing of the pool"),
    ({"loop": {"strategy": "ranked_batch"}, "compute": {"ranked_batch_max_pool": 100}},
     "ranked_batch cannot run on 1237 candidates (its limit is 100); use margin_diverse for large pools "
     "(compute.ranked_batch_max_pool)"),
    ({"compute": {"engine": "dask", "store_features": False}}, "set compute.store_features: true"),
])
def test_cli_bad_input_exits_2_with_a_message(write_config, tmp_path: Path, sections: dict, message: str) -> None:
    result = _cli("run", str(write_config(**sections)), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_compare_logs_a_parent_with_a_child_per_strategy_and_seed(write_config, mlflow_uri: str) -> None:
    config = load_config(write_config())
    result = compare(config, strategies=["margin", "random"], seeds=2)
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted((c.data.tags["strategy"], c.data.tags["seed"]) for c in children) == [
        ("margin", "0"), ("margin", "1"), ("random", "0"), ("random", "1")]
    # the table is recomputed from what MLflow holds
    table = result.table.set_index("strategy")
    for strategy in ("margin", "random"):
        curves = []
        for child in (c for c in children if c.data.tags["strategy"] == strategy):
            history = _history(client, child.info.run_id, "accuracy")
            curves.append((list(history), list(history.values())))
        expected = np.mean([aubc(x, y) for x, y in curves])
        assert table.loc[strategy, "aubc"] == pytest.approx(expected)
        assert parent.data.metrics[f"table/aubc.digits.{strategy}"] == pytest.approx(expected)
    assert table.loc["random", "speedup_95pct"] in (1.0, None) or np.isnan(table.loc["random", "speedup_95pct"])
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"comparison.csv", "comparison.md", "learning_curves.png"} <= artifacts
    assert sorted(pd.read_csv(result.folder / "comparison.csv")["strategy"]) == ["margin", "random"]
    # initial sets are paired: same seed, same first 20 picks for every strategy
    first = {s: _picks(result.folder / f"{s}-seed0")[:20] for s in ("margin", "random")}
    assert first["margin"] == first["random"]


def test_artifacts_go_beside_the_tracking_store_not_into_the_working_directory(write_config, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    store = tmp_path / "store"
    store.mkdir()
    config = load_config(write_config(tracking={"uri": f"sqlite:///{store / 'mlflow.db'}", "experiment": "where"},
                                      loop={"budget": 30}))
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = run_loop(config)
    uri = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(result.run_id).info.artifact_uri
    assert uri.startswith((store / "mlartifacts").as_uri())
    assert (store / "mlartifacts").is_dir() and not (workdir / "mlruns").exists()


def test_route_refuses_bad_input_with_a_message(write_config, tmp_path: Path) -> None:
    from al_loop.errors import AlLoopError
    from al_loop.route import route

    config = load_config(write_config(loop={"budget": 30}))
    pool = prepare(config).splits.pool
    traffic = pool.inputs.iloc[:3].assign(id=list(pool.ids[:3]))
    traffic.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(AlLoopError, match="no loop run at"):
        route(config, tmp_path / "new.csv")
    run_loop(config)
    with pytest.raises(AlLoopError, match="3 id\\(s\\) are pool ids"):
        route(config, tmp_path / "new.csv")
    traffic.assign(id=["n1", "n2", "n3"]).to_csv(tmp_path / "fresh.csv", index=False)
    result = route(config, tmp_path / "fresh.csv")  # the simulated annotator: decisions only, nothing pushed
    assert result.auto + result.review == 3 and result.pushed == 0 and result.decisions.exists()
