"""`al-loop compare` and single runs as the MLflow UI shows them, on the default store (no tracking.uri): children
beside their parent, the training view, summary metrics on every run, only metrics that mean something, and the
CLI's table equal to the one recomputed from MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from al_loop.api import compare_view, load_config, open_store, run_loop, suite_from_mlflow
from al_loop.cli import app
from al_loop.curves import aubc, labels_to_target
from al_loop.tracking import EXPERIMENT_KIND_TAG, TRAINING_KIND, Tracker

pytestmark = pytest.mark.e2e


def small_config(folder: Path, **sections: object) -> Path:
    """A digits config with no tracking.uri: the MLflow store follows output_dir, as in configs/quickstart.yaml."""
    config = {"dataset": {"name": "digits", "test_size": 0.3},
              "loop": {"strategy": "margin", "batch_size": 10, "initial_size": 20, "budget": 60},
              "tracking": {"experiment": "cmp", "log_model": False}, "seed": 0, "output_dir": str(folder / "runs"),
              "compare": {"targets": [0.8, 0.9]}, **sections}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table printed to a file: cells between the vertical bars."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in output.splitlines()
            if line.strip().startswith("│") and "│" in line.strip()[1:]]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("compare")
    path = small_config(folder)
    result = CliRunner().invoke(app, ["compare", str(path), "--strategies", "margin,random", "--seeds", "2"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    config = load_config(path)
    return config, result.output, MlflowClient(config.tracking_uri)


def _parent_and_children(client: MlflowClient):
    experiment = client.get_experiment_by_name("cmp")
    parent = client.search_runs([experiment.experiment_id], filter_string="tags.`al_loop.kind` = 'compare'")[0]
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return experiment, parent, children


def test_compare_children_share_the_parents_default_store(compared) -> None:
    config, _, client = compared
    assert config.tracking.uri is None, "the default: the store follows output_dir"
    _, parent, children = _parent_and_children(client)
    assert sorted((c.data.tags["strategy"], c.data.tags["seed"]) for c in children) == [
        ("margin", "0"), ("margin", "1"), ("random", "0"), ("random", "1")]
    assert all(c.info.status == "FINISHED" for c in [parent, *children])
    stores = sorted(p.relative_to(config.output_dir) for p in config.output_dir.rglob("mlflow.db"))
    assert stores == [Path("mlflow.db")], "one store: no mlflow.db beside the children's ledgers"


def test_experiments_open_in_the_training_view_also_ones_made_elsewhere(compared, tmp_path: Path) -> None:
    _, _, client = compared
    experiment, _, _ = _parent_and_children(client)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    made = MlflowClient(uri).create_experiment("made-elsewhere")
    Tracker(uri, "made-elsewhere")
    assert MlflowClient(uri).get_experiment(made).tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    MlflowClient(uri).set_experiment_tag(made, EXPERIMENT_KIND_TAG, "genai_development")
    Tracker(uri, "made-elsewhere")
    assert MlflowClient(uri).get_experiment(made).tags[EXPERIMENT_KIND_TAG] == "genai_development", "a choice is kept"


def test_every_child_logs_its_aubc_full_pool_accuracy_and_labels_to_each_target(compared) -> None:
    _, _, client = compared
    _, parent, children = _parent_and_children(client)
    full = {}
    for child in children:
        history = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, "accuracy"))
        steps, accuracy = [s for s, _ in history], [v for _, v in history]
        metrics = child.data.metrics
        assert metrics["aubc"] == pytest.approx(aubc(steps, accuracy))
        share = np.array(accuracy) / metrics["full_pool_accuracy"]
        for target, key in ((0.8, "labels_to_80pct"), (0.9, "labels_to_90pct")):
            assert metrics.get(key) == labels_to_target(steps, share, target)
        assert any(k.startswith("labels_to_") for k in metrics), "digits reaches 80% of the full pool within 60"
        full.setdefault(child.data.tags["seed"], set()).add(metrics["full_pool_accuracy"])
    assert all(len(v) == 1 for v in full.values()), "one full-pool accuracy per seed, shared by the strategies"
    assert parent.data.metrics["table/full_pool_accuracy.digits.margin"] == pytest.approx(np.mean(
        [next(iter(v)) for v in full.values()]))


def test_compare_prints_a_line_per_finished_run_and_the_table_mlflow_gives_back(compared) -> None:
    config, output, client = compared
    finished = [line for line in output.splitlines() if line.startswith("finished digits")]
    assert len(finished) == 4 and all("labels, final acc" in line and "AUBC" in line for line in finished)
    _, parent, _ = _parent_and_children(client)
    stored = suite_from_mlflow(open_store(config.tracking_uri, "cmp"), parent.info.run_id)
    shown = compare_view(stored.table)
    assert table_rows(output) == shown.astype(str).values.tolist()
    assert list(shown.columns) == ["strategy", "seeds", "final acc", "AUBC", "labels→80%", "labels→90%",
                                   "speed-up 80%", "speed-up 90%"]
    folder = next(config.output_dir.glob("compare-*"))
    assert (folder / "comparison.md").read_text().startswith(stored.markdown())


def test_a_lone_run_logs_only_metrics_that_mean_something_for_its_settings(tmp_path: Path) -> None:
    # three simulated annotators, one answer per task: no agreement to measure; no routing, costs or break-even set
    config = load_config(small_config(tmp_path, annotator={"kind": "simulated", "accuracy": [1.0, 0.9, 0.8]},
                                      loop={"strategy": "margin", "batch_size": 10, "initial_size": 20, "budget": 40}))
    result = run_loop(config)
    metrics = MlflowClient(config.tracking_uri).get_run(result.run_id).data.metrics
    assert {"accuracy", "aubc", "full_pool_accuracy", "annotator/sim1/answers", "annotator/sim2/accuracy"} <= set(
        metrics)
    assert not [k for k in metrics if k.startswith(("agreement/", "route_", "cost_", "next_batch", "curve_"))
                or k.endswith("/flagged") or k == "reviewed_routed_labels"], sorted(metrics)

    routed = load_config(small_config(tmp_path, routing={"epsilon": 0.05}, output_dir=str(tmp_path / "routed"),
                                      loop={"strategy": "margin", "batch_size": 10, "initial_size": 20, "budget": 30}))
    metrics = MlflowClient(routed.tracking_uri).get_run(run_loop(routed).run_id).data.metrics
    assert {"route_hi", "route_share_automated", "reviewed_routed_labels"} <= set(metrics)
