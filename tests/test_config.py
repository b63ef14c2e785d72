"""Config errors name the key at fault; valid configs load with their paths resolved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from al_loop.config import config_from_dict, load_config
from al_loop.errors import ConfigError

from .conftest import REPO


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_config_loads_as_shipped() -> None:
    config = load_config(REPO / "configs" / "quickstart.yaml")
    assert config.dataset.path == REPO / "data" / "newsgroups6-raw-pool.csv.gz"
    assert config.dataset.test_path is not None and config.dataset.test_path.exists()
    assert config.output_dir == REPO / "runs" / "quickstart"
    assert config.tracking_uri == f"sqlite:///{REPO / 'runs' / 'quickstart' / 'mlflow.db'}"


def test_annotator_quality_config_loads_as_shipped() -> None:
    config = load_config(REPO / "configs" / "annotator_quality.yaml")
    assert config.quality.overlap == 3 and config.quality.adjudication.min_agreement == 0.6
    assert config.annotator.port != load_config(REPO / "configs" / "quickstart.yaml").annotator.port, \
        "its local server has its own data folder, so it needs its own port"
    assert {config.required_answers(f"example-{i}") for i in range(100)} == {3}
    config.quality.overlap_share = 0.3
    required = [config.required_answers(f"example-{i}") for i in range(2000)]
    assert set(required) == {1, 3} and 0.27 < required.count(3) / 2000 < 0.33
    assert required == [config.required_answers(f"example-{i}") for i in range(2000)], "a fixed draw"


def test_ledgers_of_the_previous_version_still_resume_and_per_task_is_quality_overlap() -> None:
    # identities computed by al-loop at commit 4fa2a8f (before the quality section) for these configs; margin was
    # the default strategy then (a config that names none now runs `auto`, in a folder of its own: auto-seed0)
    bots = {"kind": "labelstudio", "simulate": {"annotators": 3, "accuracy": [1.0, 1.0, 0.0], "per_task": 3}}
    margin = {"strategy": "margin"}
    old = {"dataset": {"name": "digits"}, "annotator": bots, "loop": margin}
    assert config_from_dict(old, REPO, "test").identity() == "c32f361dbb9c97e2"
    crowd = {"kind": "labelstudio", "simulate": {"annotators": 3, "accuracy": [0.98, 0.95, 0.9]}}
    assert config_from_dict({"dataset": {"name": "digits"}, "annotator": crowd, "loop": margin}, REPO,
                            "test").identity() == "55e6541fa5234221"
    renamed = {"dataset": {"name": "digits"}, "quality": {"overlap": 3}, "loop": margin,
               "annotator": {"kind": "labelstudio", "simulate": {"annotators": 3, "accuracy": [1.0, 1.0, 0.0]}}}
    assert config_from_dict(renamed, REPO, "test").identity() == "c32f361dbb9c97e2", "the new name, the same run"


def test_identity_ignores_quality_defaults_and_counts_quality_rules() -> None:
    base = {"dataset": {"name": "digits"}}
    plain = config_from_dict(base, REPO, "test").identity()
    assert config_from_dict({**base, "quality": {"flag_below": 0.3}}, REPO, "test").identity() == plain
    for quality in ({"overlap": 1, "overlap_share": 1.0, "consensus": "majority"},):
        assert config_from_dict({**base, "quality": quality}, REPO, "test").identity() == plain
    crowd = {**base, "annotator": {"accuracy": [0.9, 0.8, 0.7]}}
    changed = {config_from_dict({**crowd, "quality": q}, REPO, "test").identity()
               for q in ({}, {"overlap": 2}, {"overlap": 2, "overlap_share": 0.5}, {"consensus": "dawid_skene"},
                         {"adjudication": {"min_agreement": 0.6}})}
    assert len(changed) == 5


@pytest.mark.parametrize(("data", "expected"), [
    ({"dataset": {"name": "digits"}, "loop": {"batchsize": 5}}, "loop.batchsize: unknown key"),
    ({"dataset": {"name": "digits"}, "loop": {"batch_size": "ten"}}, "loop.batch_size"),
    ({"dataset": {"name": "digits"}, "loop": {"batch_size": 0}}, "loop.batch_size"),
    ({"dataset": {"name": "digits"}, "loop": {"strategy": "smartest"}}, "loop.strategy"),
    ({"dataset": {"name": "digits"}, "colour": "blue"}, "colour: unknown key"),
    ({"loop": {"batch_size": 5}}, "dataset: required key is missing"),
    ({"dataset": {"name": "digits", "path": "x.csv"}}, "exactly one of dataset.path"),
    ({"dataset": {"path": "x.csv", "text_column": "t"}}, "dataset.path: file not found"),
    ({"dataset": {"name": "digits"}, "loop": {"budget": None}}, "loop.budget or loop.max_rounds"),
    ({"dataset": {"name": "digits"}, "annotator": {"noise": 1.5}}, "annotator.noise"),
    ({"dataset": {"name": "digits"}, "model": {"estimator": "sklearn.nope.Model"}}, "model.estimator: cannot import"),
    ({"dataset": {"name": "digits"}, "model": {"estimator": "sklearn.svm.LinearSVC", "params": {}}},
     "has no predict_proba"),
    ({"dataset": {"name": "digits"}, "model": {"params": {"max_iterations": 3}}}, "model.params"),
    ({"dataset": {"name": "digits", "classes": ["a"]}}, "at least two class names"),
    ({"dataset": {"name": "digits"}, "annotator": {"kind": "labelstudio", "token_env": "abc-123-secret"}},
     "NAME of an environment variable"),
    ({"dataset": {"name": "digits"}, "annotator": {"kind": "labelstudio", "project_title": "x" * 51}},
     "annotator.project_title"),
    ({"dataset": {"name": "digits"}, "annotator": {"kind": "labelstudio", "simulate": {"annotators": 2,
                                                                                      "accuracy": [1, 1, 1]}}},
     "needs 1 or 2 values"),
    ({"dataset": {"name": "digits"}, "stopping": {"rule": "break_even"}}, "costs.per_accuracy_point"),
])
def test_bad_config_names_the_key(tmp_path: Path, data: object, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, data))
    assert expected in str(error.value)


def test_missing_config_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "pool.csv").write_text("id,text,label\na,x,0\nb,y,1\n")
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"path": "../pool.csv", "text_column": "text"},
                                    "output_dir": "../out"}))
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.dataset.path == tmp_path / "pool.csv"
    assert config.output_dir == tmp_path / "out"


def test_overrides_are_validated_and_identity_tracks_the_picks(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, {"dataset": {"name": "digits"}}))
    other = config.with_overrides(strategy="random", seed=3)
    assert (other.loop.strategy, other.seed, other.run_name) == ("random", 3, "random-seed3")
    assert other.identity() != config.identity()
    longer = config.model_copy(update={"loop": config.loop.model_copy(update={"budget": 999})})
    assert longer.identity() == config.identity(), "extending the budget must not look like another run"
    with pytest.raises(ConfigError, match=r"loop\.strategy"):
        config.with_overrides(strategy="nope")


def test_flat_params_never_carry_secrets(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, {"dataset": {"name": "digits"},
                                           "tracking": {"uri": "postgresql://alice:s3cr3t@127.0.0.1/mlflow"}}))
    params = config.flat_params()
    assert params["loop.strategy"] == "auto"
    assert params["dataset.name"] == "digits"
    assert "s3cr3t" not in " ".join(params.values())
    assert params["tracking.uri"] == "postgresql://***@127.0.0.1/mlflow"


def test_identity_is_stable_across_versions_for_default_settings(tmp_path: Path) -> None:
    """A ledger started before evaluation sets, warm start and chunking existed must still resume."""
    # margin was the default strategy then (a config that names none now runs auto, in its own folder)
    config = load_config(_write(tmp_path, {"dataset": {"name": "digits"}, "loop": {"strategy": "margin"}}))
    assert config.identity() == "aeb30f3bb3b46b80"  # what al-loop computed at commit aadcebc (issue 2)
    changed = config.model_copy(update={"compute": config.compute.model_copy(update={"chunk_rows": 100})})
    assert changed.identity() != config.identity(), "a chunking that can change the picks changes the identity"
