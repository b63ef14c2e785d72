"""Annotator quality end to end, in simulation: a crowd with one random annotator, overlap, consensus,
specialists, agreement in MLflow, and the audit export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from al_loop.cli import app
from al_loop.config import load_config
from al_loop.errors import ConfigError
from al_loop.ledger import Ledger
from al_loop.loop import run_loop
from al_loop.workspace import prepare

CROWD = [0.85, 0.8, 0.75, 0.1]  # sim4 answers at random (10 classes)


def _crowd_config(write_config: Callable[..., Path], **quality: object) -> Path:
    """Digits labeled by the whole crowd (overlap 4) unless `quality` says otherwise."""
    return write_config(loop={"batch_size": 20, "initial_size": 40, "budget": 200},
                        annotator={"kind": "simulated", "accuracy": CROWD, "expert_accuracy": 0.98},
                        quality={"overlap": 4, **quality})


def _truth(config) -> dict[str, str]:
    pool = prepare(config).splits.pool
    return dict(zip(pool.ids, pool.labels, strict=True))


def test_agreement_flags_the_random_annotator_and_consensus_beats_every_annotator(write_config, mlflow_uri):
    config = load_config(_crowd_config(write_config, consensus="dawid_skene"))
    result = run_loop(config)
    run = MlflowClient(mlflow_uri).get_run(result.run_id)
    metrics = run.data.metrics
    assert metrics["annotator/sim4/flagged"] == 1.0
    assert [metrics[f"annotator/sim{i}/flagged"] for i in (1, 2, 3)] == [0.0, 0.0, 0.0]
    accuracy = {i: metrics[f"annotator/sim{i}/accuracy"] for i in (1, 2, 3, 4)}
    assert accuracy[4] < 0.3 and accuracy[1] > 0.75, accuracy
    assert metrics["agreement/overall/consensus_accuracy"] > max(accuracy.values()) + 0.03
    kappas = {k: v for k, v in metrics.items() if k.startswith("agreement/overall/cohen_kappa/")}
    assert len(kappas) == 6
    assert all(v < 0.2 for k, v in kappas.items() if "sim4" in k)
    assert all(v > 0.4 for k, v in kappas.items() if "sim4" not in k), kappas  # expected ~0.55-0.7
    for name in ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa_mean"):
        assert 0 < metrics[f"agreement/overall/{name}"] < 1
        history = MlflowClient(mlflow_uri).get_metric_history(result.run_id, f"agreement/round/{name}")
        assert sorted(m.step for m in history) == list(range(40, 201, 20)), "logged every round, step = labels"
    assert run.data.tags["flagged_annotators"] == "sim4"

    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        rows = ledger.examples()
    truth = _truth(config)
    assert {r["label_method"] for r in rows} == {"dawid_skene"}
    assert all(r["required"] == 4 for r in rows)
    trained = sum(truth[r["id"]] == r["label"] for r in rows) / len(rows)
    assert trained == pytest.approx(metrics["agreement/overall/consensus_accuracy"])


def test_dawid_skene_beats_majority_when_an_adversary_votes(write_config, mlflow_uri):
    # two classes, two careful annotators and one who always answers wrong: whenever the careful ones split,
    # majority follows the adversary; Dawid-Skene learns that the adversary's answer is the other class
    scores = {}
    for method in ("majority", "dawid_skene"):
        config = load_config(write_config(dataset={"name": "breast_cancer"},
                                          loop={"batch_size": 20, "initial_size": 40, "budget": 200},
                                          annotator={"kind": "simulated", "accuracy": [0.8, 0.75, 0.0]},
                                          quality={"overlap": 3, "consensus": method}))
        config.output_dir = config.output_dir / method
        result = run_loop(config)
        scores[method] = MlflowClient(mlflow_uri).get_run(result.run_id).data.metrics[
            "agreement/overall/consensus_accuracy"]
    assert scores["majority"] < 0.75 and scores["dawid_skene"] > 0.95, scores


def test_splits_go_to_the_specialist_whose_label_wins_and_the_audit_shows_it(write_config, tmp_path: Path):
    config = load_config(_crowd_config(write_config, overlap=3, overlap_share=0.5,
                                       adjudication={"min_agreement": 0.7}))
    run_loop(config)
    truth = _truth(config)
    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        rows = {r["id"]: r for r in ledger.examples()}
        annotations = ledger.annotations()
    required = pd.Series([r["required"] for r in rows.values()]).value_counts().to_dict()
    assert set(required) == {1, 3} and 0.35 < required[3] / len(rows) < 0.65, required
    adjudicated = [r for r in rows.values() if r["adjudication"] == "expert"]
    assert adjudicated and all(r["label_method"] == "expert" and r["agreement"] < 0.7 for r in adjudicated)
    experts = {a["example_id"]: a for a in annotations if a["lane"] == "expert"}
    assert set(experts) == {r["id"] for r in adjudicated}, "only split examples reached the specialist"
    assert all(rows[e]["label"] == a["value"] for e, a in experts.items()), "the specialist's label wins"
    assert sum(truth[e] == rows[e]["label"] for e in experts) / len(experts) > 0.9

    runner = CliRunner()
    out = tmp_path / "audit" / "labels.parquet"
    result = runner.invoke(app, ["audit", str(_crowd_config_path(config)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(rows)} labels ({len(adjudicated)} decided by specialists)" in result.output
    table = pd.read_parquet(out)
    assert len(table) == len(rows) and set(table["example_id"]) == set(rows)
    one = table.set_index("example_id").loc[adjudicated[0]["id"]]
    assert one["adjudicated"] and one["consensus_method"] == "expert" and one["expert"] == "expert1"
    assert one["label"] == one["expert_label"] == rows[adjudicated[0]["id"]]["label"]
    answers = list(one["answers"])
    assert sorted(a["lane"] for a in answers) == ["expert", "routine", "routine", "routine"]
    stored = sorted((a["annotator"], a["value"]) for a in annotations if a["example_id"] == adjudicated[0]["id"])
    assert sorted((a["annotator"], a["label"]) for a in answers) == stored
    assert {"round", "model_version", "model_prediction", "model_confidence", "agreement"} <= set(table.columns)
    assert table["model_version"].notna().sum() == len(table) - 40, "all but the random initial set had a model"

    csv = tmp_path / "labels.csv"
    assert runner.invoke(app, ["audit", str(_crowd_config_path(config)), "--out", str(csv)]).exit_code == 0
    from_csv = pd.read_csv(csv, dtype={"example_id": str, "label": str})
    assert list(from_csv["example_id"]) == list(table["example_id"])
    assert [len(json.loads(a)) for a in from_csv["answers"]] == [len(a) for a in table["answers"]]


def _crowd_config_path(config) -> Path:
    return config.output_dir.parent / "config.yaml"


def test_the_same_seed_gives_the_same_answers_labels_and_metrics(write_config, mlflow_uri):
    results = []
    for copy in ("a", "b"):
        config = load_config(_crowd_config(write_config, overlap=3, overlap_share=0.5, consensus="dawid_skene",
                                           adjudication={"min_agreement": 0.7}))
        config.output_dir = config.output_dir / copy
        run = run_loop(config)
        with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
            labels = ledger.labels()
            answers = [(a["example_id"], a["annotator"], a["value"], a["lane"]) for a in ledger.annotations()]
        metrics = {k: v for k, v in MlflowClient(mlflow_uri).get_run(run.run_id).data.metrics.items()
                   if "seconds" not in k}
        results.append((labels, answers, metrics))
    assert results[0] == results[1]


def test_bad_quality_settings_are_refused_with_the_fix(write_config):
    with pytest.raises(ConfigError, match="needs at least that many annotators"):
        load_config(write_config(annotator={"kind": "simulated", "accuracy": [0.9, 0.8]}, quality={"overlap": 3}))
    with pytest.raises(ConfigError, match="not both"):
        load_config(write_config(annotator={"kind": "simulated", "noise": 0.1, "accuracy": [0.9, 0.8]}))
    with pytest.raises(ConfigError, match=r"quality\.overlap_share"):
        load_config(write_config(quality={"overlap_share": 0}))
    with pytest.raises(ConfigError, match=r"quality\.consensus"):
        load_config(write_config(quality={"consensus": "vote"}))
    with pytest.raises(ConfigError, match="min_agreement"):
        load_config(write_config(quality={"adjudication": {"min_agreement": 1.5}}))
    with pytest.raises(ConfigError, match=r"old name of quality\.overlap"):
        load_config(write_config(annotator={"kind": "labelstudio", "simulate": {"annotators": 3, "per_task": 2}},
                                 quality={"overlap": 3}))


def test_changing_the_quality_rules_of_a_started_run_is_refused(write_config):
    from al_loop.errors import LedgerMismatchError

    config = load_config(_crowd_config(write_config))
    config.loop.budget = 60
    run_loop(config)
    changed = load_config(_crowd_config(write_config, adjudication={"min_agreement": 0.7}))
    with pytest.raises(LedgerMismatchError, match="config_identity"):
        run_loop(changed)


def test_audit_of_a_run_that_does_not_exist_names_the_fix(write_config, tmp_path: Path):
    result = CliRunner().invoke(app, ["audit", str(write_config()), "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code != 0 and "run `al-loop run`" in result.output
    result = CliRunner().invoke(app, ["audit", str(write_config()), "--out", str(tmp_path / "x.xlsx")])
    assert result.exit_code != 0 and ".parquet or .csv" in result.output


@pytest.mark.parametrize("crash_on", ["push", "pull"])
def test_a_crash_in_the_specialist_lane_resumes_without_duplicates_or_lost_labels(write_config, tmp_path: Path,
                                                                                    crash_on: str):
    from al_loop.annotators.factory import build_specialists

    from .test_loop_e2e import _Crashing

    config = load_config(_crowd_config(write_config, overlap=3, adjudication={"min_agreement": 0.7}))
    reference = run_loop(config.model_copy(update={"output_dir": tmp_path / "uninterrupted"}))

    workspace = prepare(config)
    with Ledger.open(tmp_path / "scratch.sqlite") as scratch:
        experts = build_specialists(config, workspace, scratch)
    crashing = _Crashing(experts, crash_on, at_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_loop(config, workspace=workspace, specialists=crashing)
    result = run_loop(config, workspace=workspace)

    def trail(run_dir: Path) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
        with Ledger.read_only(run_dir / "ledger.sqlite") as ledger:
            return ledger.labels(), sorted((a["example_id"], a["annotator"], a["value"], a["lane"])
                                           for a in ledger.annotations())

    labels, answers = trail(result.run_dir)
    assert (labels, answers) == trail(reference.run_dir)
    experts_answers = [(e, who) for e, who, _, lane in answers if lane == "expert"]
    assert experts_answers and len(set(experts_answers)) == len(experts_answers), "no example adjudicated twice"


def test_a_round_waits_for_its_specialists_and_says_so(write_config):
    from al_loop.annotators.base import PullResult

    class Away:  # a specialist lane nobody works in yet
        name = "away"

        def push(self, tasks):
            return {t.example_id: f"x-{t.example_id}" for t in tasks}

        def pull(self, pending, since=None):
            return PullResult()

    config = load_config(_crowd_config(write_config, overlap=3, adjudication={"min_agreement": 0.7}))
    first = run_loop(config, specialists=Away(), wait=False)
    assert first.stopped_because.startswith("pushed round 0")
    waiting = run_loop(config, specialists=Away(), wait=False)
    with Ledger.read_only(config.output_dir / config.run_name / "ledger.sqlite") as ledger:
        escalated = len(ledger.escalations_pending())
        assert ledger.round_progress(0) == (40 - escalated, 40) and escalated > 0
    assert waiting.stopped_because == (f"waiting for annotators: {40 - escalated} of 40 tasks of round 0 done "
                                       f"({escalated} with a specialist)")
    assert not waiting.finished
