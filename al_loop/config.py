"""Typed configuration read from YAML; every default lives here.

Relative paths inside a config file are resolved against the folder of that file, so a config
works the same from any working directory.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from al_loop.errors import ConfigError
from al_loop.redact import looks_like_token, redact, redact_value
from al_loop.selection import INITIAL_STRATEGIES, QUERY_STRATEGIES

STRATEGIES = QUERY_STRATEGIES  # the registry owns the names (al_loop.selection)
BUNDLED_DATASETS = ("digits", "breast_cancer", "wine")
MAX_SEED = 2**32 - 1  # scikit-learn's random_state and a legacy numpy seed are 32-bit
_ANNOTATOR_KINDS = ("simulated", "labelstudio")


def known_names(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    """The values, if each is one of `allowed`; else a ValueError naming the unknown ones and the choices."""
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; choose one of {', '.join(allowed)}")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(_Strict):
    """Where the pool comes from and which columns mean what."""

    path: Path | None = None
    name: Literal["digits", "breast_cancer", "wine"] | None = None
    id_column: str = "id"
    text_column: str | None = None
    feature_columns: list[str] | None = None
    label_column: str | None = "label"
    classes: list[str] | None = None
    test_path: Path | None = None
    test_size: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetConfig:
        if (self.path is None) == (self.name is None):
            raise ValueError("set exactly one of dataset.path (a CSV/Parquet/JSONL file) or dataset.name "
                             f"(a bundled dataset: {', '.join(BUNDLED_DATASETS)})")
        if self.path is not None and (self.text_column is None) == (self.feature_columns is None):
            raise ValueError("set exactly one of dataset.text_column or dataset.feature_columns")
        if self.feature_columns is not None and not self.feature_columns:
            raise ValueError("dataset.feature_columns is empty; list at least one numeric column")
        if self.classes is not None:
            if len(self.classes) < 2:
                raise ValueError("dataset.classes needs at least two class names")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("dataset.classes has duplicate names")
        return self

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return value


class FeaturesConfig(_Strict):
    """Featurization, fitted on the pool without labels: TF-IDF for text, standard scaling for numbers."""

    max_features: int | None = Field(20000, gt=0)
    min_df: int = Field(1, ge=1)
    ngram_max: int = Field(1, ge=1, le=3)
    sublinear_tf: bool = True
    stop_words: Literal["english"] | None = None


DEFAULT_ESTIMATOR = "sklearn.linear_model.LogisticRegression"
TEXT_POOL_C = 10  # LogisticRegression's C on a text pool when model.params is not written: docs/models.md


class ModelConfig(_Strict):
    """The scikit-learn estimator: import path and constructor parameters."""

    estimator: str = DEFAULT_ESTIMATOR
    params: dict[str, Any] = Field(default_factory=lambda: {"max_iter": 1000})
    warm_start: bool = Field(False, description="refit from the previous round's model where the estimator "
                                                "supports warm_start (faster; a resumed run refits from scratch)")
    calibration: Literal["none", "sigmoid", "isotonic"] = Field(
        "none", description="calibrate probabilities (CalibratedClassifierCV, 3 folds, ensemble=False) for "
                            "routing thresholds, or for an estimator without predict_proba (SVC, LinearSVC)")

    def use_pool_defaults(self, text: bool) -> None:
        """Defaults that depend on the pool: on a text pool, the default estimator gets C=10 when model.params is
        not written (TF-IDF rows are unit vectors, and C=1 leaves the probabilities nearly uniform; measured in
        docs/models.md). Written params are used as written, so such a config keeps its model and its identity."""
        if text and self.estimator == DEFAULT_ESTIMATOR and "params" not in self.model_fields_set:
            self.params = {**self.params, "C": TEXT_POOL_C}


class LoopConfig(_Strict):
    """How many labels, in which batches, picked by which strategy."""

    strategy: str = Field("auto", description="query strategy (al_loop.selection.QUERY_STRATEGIES)")
    initial_strategy: str = Field("random", description="how the initial set is picked: random or typical")
    batch_size: int = Field(10, gt=0)
    initial_size: int = Field(20, gt=0, description="size of the random seed set labeled first")
    budget: int | None = Field(200, gt=0, description="stop once this many labels are used")
    max_rounds: int | None = Field(None, gt=0, description="stop after this many query rounds")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        return known_names([value], QUERY_STRATEGIES, "strategy")[0]

    @field_validator("initial_strategy")
    @classmethod
    def _known_initial(cls, value: str) -> str:
        return known_names([value], tuple(INITIAL_STRATEGIES), "initial strategy")[0]

    @model_validator(mode="after")
    def _has_a_stop(self) -> LoopConfig:
        if self.budget is None and self.max_rounds is None:
            raise ValueError("set loop.budget or loop.max_rounds (or both) so the loop knows when to stop")
        return self

    def check_budget(self) -> None:
        """Refuse a budget below the initial set (checked when a run starts, after the batch sizes are checked
        against the pool, so that the first problem reported is the first one to fix)."""
        if self.budget is not None and self.budget < self.initial_size:
            raise ConfigError(f"loop.budget ({self.budget}) is below loop.initial_size ({self.initial_size}): the "
                              "initial set alone would exceed the budget; raise loop.budget or lower "
                              "loop.initial_size")


class SimulatedAnnotatorConfig(_Strict):
    """An oracle answering from the label column, optionally wrong at a given rate; or a simulated crowd."""

    kind: Literal["simulated"] = "simulated"
    noise: float = Field(0.0, ge=0, le=1, description="probability that an answer is a random wrong class")
    accuracy: list[float] | None = Field(None, min_length=1, description="a crowd: one simulated annotator "
                                         "(sim1, sim2, ...) per value, right with that probability")
    expert_accuracy: float = Field(1.0, ge=0, le=1, description="accuracy of the simulated specialist")

    @model_validator(mode="after")
    def _noise_or_crowd(self) -> SimulatedAnnotatorConfig:
        if self.accuracy is not None:
            if self.noise:
                raise ValueError("set annotator.noise (one oracle) or annotator.accuracy (a crowd), not both")
            if any(not 0 <= a <= 1 for a in self.accuracy):
                raise ValueError("annotator.accuracy values must be between 0 and 1")
        return self

    @property
    def annotators(self) -> int:
        return 1 if self.accuracy is None else len(self.accuracy)


class BotsConfig(_Strict):
    """Simulated annotators that answer pushed tasks through the Label Studio API, from the label column."""

    annotators: int = Field(1, ge=1, le=50, description="number of bot users")
    accuracy: list[float] = Field(default_factory=lambda: [1.0],
                                  description="accuracy of each bot (one value is used for all)")
    per_task: int = Field(1, ge=1, description="old name of quality.overlap (with overlap_share 1)")
    skip_rate: float = Field(0.0, ge=0, lt=1, description="probability that a bot skips a task")
    expert_accuracy: float = Field(1.0, ge=0, le=1, description="accuracy of the specialist bot")

    @model_validator(mode="after")
    def _consistent(self) -> BotsConfig:
        if len(self.accuracy) not in (1, self.annotators):
            raise ValueError(f"annotator.simulate.accuracy needs 1 or {self.annotators} values "
                             f"(one per bot), got {len(self.accuracy)}")
        if any(not 0 <= a <= 1 for a in self.accuracy):
            raise ValueError("annotator.simulate.accuracy values must be between 0 and 1")
        if self.per_task > self.annotators:
            raise ValueError(f"annotator.simulate.per_task ({self.per_task}) exceeds the number of bots "
                             f"({self.annotators})")
        return self

    def accuracy_of(self, bot: int) -> float:
        return self.accuracy[0] if len(self.accuracy) == 1 else self.accuracy[bot]


class LabelStudioAnnotatorConfig(_Strict):
    """Label Studio: a server (the local one by default), a project, and how to wait for answers."""

    kind: Literal["labelstudio"]
    url: str | None = Field(None, description="server URL; null = the local server al-loop starts itself")
    token_env: str = Field("LABEL_STUDIO_API_KEY", description="environment variable holding the API token "
                                                               "(legacy token or personal access token)")
    port: int = Field(8080, gt=0, lt=65536, description="port of the local server (127.0.0.1)")
    project_id: int | None = Field(None, gt=0)
    project_title: str | None = Field(None, min_length=1, max_length=50,  # Label Studio's limit
                                      description="default: al-loop <dataset> <strategy>-seed<seed>")
    poll_interval: float = Field(5.0, gt=0, description="seconds between two pulls while waiting")
    timeout: float = Field(3600.0, gt=0, description="seconds to wait for a batch before exiting")
    min_fraction: float = Field(1.0, gt=0, le=1, description="share of the batch answered before retraining")
    repush_skipped: bool = Field(False, description="put skipped examples back in the pool")
    max_retries: int = Field(4, ge=0, description="retries of transient errors (backoff in the SDK)")
    request_timeout: float = Field(120.0, gt=0, description="seconds per HTTP request")
    simulate: BotsConfig | None = None

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        # the value is never repeated: a token pasted here must not reach a terminal or a log
        if looks_like_token(value):
            raise ValueError("annotator.token_env looks like a token, not the NAME of an environment variable: "
                             "remove the token from the config (and revoke it if the file was shared), export it "
                             "in a variable and write that variable's name here (e.g. LABEL_STUDIO_API_KEY)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("annotator.token_env is the NAME of an environment variable (letters, digits and _, "
                             "e.g. LABEL_STUDIO_API_KEY), never the token itself")
        return value


class EvaluationConfig(_Strict):
    """Where accuracy is measured when the pool has no ground truth: a random sample labeled by people."""

    size: int = Field(0, ge=0, description="examples pushed first as evaluation tasks (0: off)")


class ComputeConfig(_Strict):
    """Where and how the pool is scored: in bounded-memory chunks locally, or on a Dask cluster."""

    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = Field(None, description="Dask scheduler address (tcp://host:8786); "
                                                    "null = a LocalCluster on this machine")
    n_workers: int = Field(2, ge=1, description="workers of the LocalCluster")
    chunk_rows: int = Field(65536, ge=1, description="pool rows scored at a time (bounds memory)")
    store_features: bool = Field(True, description="keep the pool's features on disk under output_dir/features")
    diversity_factor: int = Field(10, ge=1, description="margin_diverse: candidates = factor x batch size")
    ranked_batch_max_pool: int = Field(20000, gt=0, description="refuse ranked_batch above this many candidates")
    blas_threads: int | None = Field(None, description="BLAS threads of a round's fit, predictions and scoring; "
                                                       "auto/null = 1 (docs/performance.md); no effect on results")

    @field_validator("blas_threads", mode="before")
    @classmethod
    def _blas_threads(cls, value: Any) -> int | None:
        if value is None or value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("compute.blas_threads must be a whole number >= 1, or auto (null) for the default")
        return value


class RoutingConfig(_Strict):
    """Confidence routing: auto-accept predictions with confidence >= hi, send the rest to people."""

    hi: float | None = Field(None, gt=0, le=1, description="fixed threshold; null = calibrated for epsilon")
    epsilon: float = Field(0.02, gt=0, lt=1, description="target error rate among auto-accepted items")
    confidence_level: float = Field(0.95, gt=0.5, lt=1, description="confidence of the Clopper-Pearson bound")
    procedure: Literal["fallback", "fixed_sequence"] = Field(
        "fallback", description="multiple-testing procedure of the calibration (docs/routing.md)")


class CostsConfig(_Strict):
    """What a human label and an undetected error cost, and what an accuracy point is worth (break-even)."""

    per_label: float = Field(1.0, ge=0)
    per_error: float = Field(10.0, ge=0)
    per_accuracy_point: float | None = Field(None, ge=0, description="value of +1 point of accuracy; "
                                                                      "needed by the break_even stop rule")


class StoppingConfig(_Strict):
    """When to stop: the budget (always), or stabilizing predictions, or break-even."""

    rule: Literal["budget", "stabilizing", "break_even"] = "budget"
    stop_set_size: int = Field(1000, gt=0, description="fixed pool sample for stabilizing predictions")
    kappa: float = Field(0.99, gt=0, le=1)
    window: int = Field(3, ge=1)


class AdjudicationConfig(_Strict):
    """Disagreements go to specialists: a separate Label Studio project where the expert's label wins."""

    min_agreement: float | None = Field(None, gt=0, le=1, description="send a task to a specialist when its "
                                        "most common answer has less than this share of the answers (null: off)")
    project_title: str | None = Field(None, min_length=1, max_length=50,
                                      description="specialist project; default: <routine title> experts")
    project_id: int | None = Field(None, gt=0)


class QualityConfig(_Strict):
    """Annotator quality: overlap, consensus, adjudication, and when to flag an annotator."""

    overlap: int = Field(1, ge=1, le=50, description="annotators per overlapped task (1: no overlap)")
    overlap_share: float = Field(1.0, gt=0, le=1, description="share of tasks that get `overlap` annotators "
                                                               "(picked by seed and example id); the rest get 1")
    consensus: Literal["majority", "dawid_skene"] = Field("majority", description="how answers become the "
                                                          "training label")
    flag_below: float = Field(0.5, ge=0, le=1, description="flag an annotator whose agreement with the "
                                                            "consensus of the others is below this")
    flag_min_tasks: int = Field(20, ge=1, description="judge an annotator on at least this many overlapped tasks")
    adjudication: AdjudicationConfig = Field(default_factory=AdjudicationConfig)


class TrackingConfig(_Strict):
    """MLflow: where runs go. Default store: sqlite under the output folder."""

    uri: str | None = None
    experiment: str = "al-loop"
    log_model: bool = True


class CompareConfig(_Strict):
    """Defaults for `al-loop compare`."""

    strategies: list[str] = Field(default_factory=lambda: ["auto", "margin", "random"])
    seeds: int = Field(3, gt=0)
    targets: list[float] = Field(default_factory=lambda: [0.95, 0.98])

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, value: list[str]) -> list[str]:
        return known_names(value, QUERY_STRATEGIES, "strategy")


class ServeConfig(_Strict):
    """`al-loop serve`: the run's model as a Label Studio ML backend, and webhooks that drive the loop."""

    host: str = Field("127.0.0.1", description="address to listen on (127.0.0.1: this machine only)")
    port: int = Field(9090, gt=0, lt=65536, description="port to listen on")
    url: str | None = Field(None, description="the URL Label Studio calls; null = http://<host>:<port>")
    connect: bool = Field(False, description="register the ML backend and the webhook on the project")
    secret_env: str = Field("AL_LOOP_SERVE_SECRET", description="environment variable holding the shared secret; "
                                                                "unset = one generated under output_dir/serve")
    debounce: float = Field(1.0, ge=0, description="seconds of quiet after a webhook before a sync")
    fallback_interval: float = Field(60.0, ge=0, description="seconds between syncs without any webhook (a lost "
                                                             "webhook is caught by the next one); 0 = off")
    max_request_mb: float = Field(32.0, gt=0, description="largest request body accepted, in MB")

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if looks_like_token(value) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("serve.secret_env is the NAME of an environment variable (letters, digits and _, e.g. "
                             "AL_LOOP_SERVE_SECRET), never the secret itself")
        return value

    @property
    def base_url(self) -> str:
        """What Label Studio calls: serve.url, else this server's address."""
        return (self.url or f"http://{self.host}:{self.port}").rstrip("/")


class Config(_Strict):
    """The whole run configuration."""

    dataset: DatasetConfig
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    annotator: SimulatedAnnotatorConfig | LabelStudioAnnotatorConfig = Field(
        default_factory=SimulatedAnnotatorConfig, discriminator="kind")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    stopping: StoppingConfig = Field(default_factory=StoppingConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    seed: int = Field(0, description=f"0 to {MAX_SEED}: numpy and scikit-learn take 32-bit seeds")
    output_dir: Path = Path("runs")

    @field_validator("seed")
    @classmethod
    def _seed_fits_32_bits(cls, value: int) -> int:
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED} (scikit-learn and numpy take 32-bit seeds); "
                             "pick a smaller one")
        return value

    @model_validator(mode="before")
    @classmethod
    def _annotator_kind_defaults_to_simulated(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("annotator"), dict) and "kind" not in data["annotator"]:
            data = {**data, "annotator": {"kind": "simulated", **data["annotator"]}}
        return data

    @model_validator(mode="after")
    def _model_defaults_of_the_pool(self) -> Config:
        self.model.use_pool_defaults(text=self.dataset.text_column is not None)
        return self

    @model_validator(mode="after")
    def _break_even_needs_a_value(self) -> Config:
        if self.stopping.rule == "break_even" and self.costs.per_accuracy_point is None:
            raise ValueError("stopping.rule: break_even needs costs.per_accuracy_point (the value of one point "
                             "of accuracy, in the same unit as costs.per_label)")
        return self

    @model_validator(mode="after")
    def _overlap_fits_the_annotators(self) -> Config:
        bots = getattr(self.annotator, "simulate", None)
        if bots is not None and bots.per_task > 1:  # the setting of al-loop 0.1 for what is now quality.overlap
            if self.quality.overlap not in (1, bots.per_task):
                raise ValueError(f"annotator.simulate.per_task ({bots.per_task}) is the old name of quality.overlap"
                                 f" ({self.quality.overlap}); remove per_task")
            self.quality.overlap = bots.per_task
        simulated = (bots.annotators if bots is not None else self.annotator.annotators
                     if isinstance(self.annotator, SimulatedAnnotatorConfig) else None)
        if simulated is not None and self.quality.overlap > simulated:
            raise ValueError(f"quality.overlap ({self.quality.overlap}) needs at least that many annotators; the "
                             f"simulation has {simulated} (annotator.accuracy / annotator.simulate.annotators)")
        return self

    @property
    def overlapped(self) -> bool:
        """Whether some tasks are answered by more than one annotator."""
        return self.quality.overlap > 1

    def required_answers(self, example_id: str) -> int:
        """How many annotators answer this example: quality.overlap for a share of examples (a fixed draw by
        seed and example id, so a resumed run asks the same), else one."""
        quality = self.quality
        if quality.overlap == 1:
            return 1
        if quality.overlap_share >= 1:
            return quality.overlap
        digest = hashlib.sha256(f"overlap:{self.seed}:{example_id}".encode()).digest()
        return quality.overlap if int.from_bytes(digest[:8], "little") / 2**64 < quality.overlap_share else 1

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: the configured one, else a sqlite store in the output folder."""
        return self.tracking.uri or f"sqlite:///{self.output_dir.resolve() / 'mlflow.db'}"

    @property
    def dataset_label(self) -> str:
        """A short name of the dataset: the bundled name or the pool file's stem."""
        if self.dataset.name:
            return self.dataset.name
        return self.dataset.path.name.split(".")[0] if self.dataset.path else "pool"

    @property
    def run_name(self) -> str:
        """Name of one loop run: strategy and seed (its ledger lives in a folder of that name)."""
        return f"{self.loop.strategy}-seed{self.seed}"

    def identity(self) -> Identity:
        """Hash of everything that decides the picks; a resumed run must match it.

        Budget and max_rounds are left out on purpose: extending a finished run is a normal thing to do. Input
        files count by their content, not their location, so a run folder, a config or a repository can move;
        `legacy` is the hash of earlier versions (absolute paths), `settings` what is hashed, by config key.
        """
        keep = {
            "dataset": self.dataset.model_dump(mode="json"),
            "features": self.features.model_dump(mode="json"),
            "model": self.model.model_dump(mode="json", exclude={"warm_start", "calibration"}),
            "strategy": self.loop.strategy,
            "batch_size": self.loop.batch_size,
            "initial_size": self.loop.initial_size,
            "annotator": self._annotator_identity(),
            "seed": self.seed,
        }
        # Settings added in later versions count only when they differ from their default, so a ledger
        # started by an earlier version still resumes after an upgrade.
        later = {"evaluation": (self.evaluation.size, 0), "warm_start": (self.model.warm_start, False),
                 "calibration": (self.model.calibration, "none"),
                 "chunk_rows": (self.compute.chunk_rows, 65536),
                 "diversity_factor": (self.compute.diversity_factor, 10),
                 "overlap": ((self.quality.overlap, self.quality.overlap_share), (self._old_overlap(), 1.0)),
                 "consensus": (self.quality.consensus, "majority"),
                 "adjudication": (self.quality.adjudication.min_agreement, None),
                 "initial_strategy": (self.loop.initial_strategy, "random")}
        keep |= {key: value for key, (value, default) in later.items() if value != default}
        portable = {**keep, "dataset": {**keep["dataset"], **{
            key: _content_digest(path) for key, path in (("path", self.dataset.path),
                                                         ("test_path", self.dataset.test_path)) if path is not None}}}
        settings: dict[str, str] = {}
        _flatten({_IDENTITY_KEYS.get(key, key): value for key, value in portable.items()}, "", settings)
        return Identity(_digest(portable), legacy=_digest(keep),
                        settings={k: "***" if _looks_secret(k) else v for k, v in settings.items()})

    def _old_overlap(self) -> int:
        """The overlap the annotator identity already holds: with bots and every task overlapped, it is written
        as annotator.simulate.per_task (the setting of al-loop 0.1), so per_task: 3 and quality.overlap: 3
        name the same run."""
        bots = getattr(self.annotator, "simulate", None)
        return self.quality.overlap if bots is not None and self.quality.overlap_share >= 1 else 1

    def _annotator_identity(self) -> dict[str, Any]:
        """What of the annotator decides the labels: the simulated noise, or the bots' settings."""
        later = {"accuracy": None, "expert_accuracy": 1.0}  # added later: counted only when not default
        if isinstance(self.annotator, SimulatedAnnotatorConfig):
            return _dump_without_defaults(self.annotator, later)
        bots = self.annotator.simulate
        if bots is None:
            return {"kind": self.annotator.kind, "simulate": None}
        return {"kind": self.annotator.kind,
                "simulate": {**_dump_without_defaults(bots, later), "per_task": self._old_overlap()}}

    def with_overrides(self, *, strategy: str | None = None, seed: int | None = None) -> Config:
        """A copy with the strategy and/or seed replaced (validated like the file)."""
        data = self.model_dump()
        if strategy is not None:
            data["loop"]["strategy"] = strategy
        if seed is not None:
            data["seed"] = seed
        given = [f"--{name} {value}" for name, value in (("strategy", strategy), ("seed", seed)) if value is not None]
        return _validate(data, source=f"command-line options {' '.join(given)}".strip())

    def flat_params(self) -> dict[str, str]:
        """The config flattened to `section.key: value` strings, for MLflow params (no secrets)."""
        flat: dict[str, str] = {}
        _flatten(self.model_dump(mode="json", exclude={"serve"}), "", flat)  # how it is served: no setting of the run
        return {k: redact_value(v) for k, v in flat.items() if not _looks_secret(k)}


class Identity(str):
    """A config's identity hash, with what it hashes (`settings`, by config key, to name a difference) and the hash
    earlier versions computed for the same config (`legacy`, so that their ledgers still resume)."""

    settings: dict[str, str]
    legacy: str

    def __new__(cls, value: str, *, legacy: str, settings: dict[str, str]) -> Identity:
        identity = super().__new__(cls, value)
        identity.legacy, identity.settings = legacy, settings
        return identity


# the identity's names of settings, as config keys (for messages)
_IDENTITY_KEYS = {"strategy": "loop.strategy", "batch_size": "loop.batch_size", "initial_size": "loop.initial_size",
                  "evaluation": "evaluation.size", "warm_start": "model.warm_start",
                  "calibration": "model.calibration", "chunk_rows": "compute.chunk_rows",
                  "diversity_factor": "compute.diversity_factor", "overlap": "quality.overlap/overlap_share",
                  "consensus": "quality.consensus", "adjudication": "quality.adjudication.min_agreement",
                  "initial_strategy": "loop.initial_strategy"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _content_digest(path: Path) -> str:
    """`sha256:<hex>` of a file's bytes (remembered per path, size and modification time); its path if unreadable."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            digest = hashlib.sha256()
            with path.open("rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
            _DIGESTS[key] = f"sha256:{digest.hexdigest()[:16]}"
        return _DIGESTS[key]
    except OSError:
        return str(path)


def _dump_without_defaults(model: BaseModel, defaults: dict[str, Any]) -> dict[str, Any]:
    """A model as JSON, leaving out the listed fields while they hold their default."""
    dump = model.model_dump(mode="json")
    return {k: v for k, v in dump.items() if k not in defaults or v != defaults[k]}


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    if lowered.endswith("_env"):  # the NAME of an environment variable, not its value
        return False
    return any(word in lowered for word in ("token", "password", "secret", "api_key"))


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}{key}.", out)
    else:
        out[prefix.rstrip(".")] = json.dumps(value) if isinstance(value, list | dict) else str(value)


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for item in error.errors():
        # drop the union tag pydantic inserts (annotator.labelstudio.url -> annotator.url)
        parts = [str(p) for i, p in enumerate(item["loc"])
                 if not (i == 1 and item["loc"][0] == "annotator" and p in _ANNOTATOR_KINDS)]
        key = ".".join(parts) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check its spelling; see the config reference in README.md)")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {message}{_shown_input(key, item.get('input'))}")
    return "\n".join(lines)


def _shown_input(key: str, value: Any) -> str:
    """` (got ...)` for a validation message, unless the value may be a secret (URLs lose their credentials)."""
    if key.endswith("_env") or _looks_secret(key) or (isinstance(value, str) and looks_like_token(value)):
        return ""
    return f" (got {redact(repr(value))})"


def _validate(data: Any, source: str) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config ({source}): expected a mapping of keys at the top level")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def _resolve(base: Path, path: Path | None, key: str, must_exist: bool) -> Path | None:
    if path is None:
        return None
    resolved = path if path.is_absolute() else (base / path)
    resolved = resolved.resolve()
    if must_exist and not resolved.exists():
        raise ConfigError(f"{key}: file not found: {resolved} (relative paths are resolved against the "
                          f"config file's folder, {base})")
    return resolved


def check_estimator(model: ModelConfig) -> type:
    """Import the estimator class, check it is a scikit-learn classifier class and that its parameters are
    known and valid, and that it gives probabilities: its own predict_proba, or calibrated ones
    (model.calibration) from its decision function. Nothing is called before the class is checked."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils._param_validation import InvalidParameterError

    module_name, _, class_name = model.estimator.rpartition(".")
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"model.estimator: cannot import {model.estimator!r}; give a full import path "
                          "such as sklearn.linear_model.LogisticRegression") from None
    # checked before calling it: a scikit-learn estimator's constructor does nothing but store its parameters
    if not (isinstance(estimator_class, type) and issubclass(estimator_class, BaseEstimator)
            and issubclass(estimator_class, ClassifierMixin)):
        raise ConfigError(f"model.estimator: {model.estimator} is not a scikit-learn classifier class; give the "
                          "import path of one, such as sklearn.linear_model.LogisticRegression")
    try:
        known = estimator_class._get_param_names()  # read from the constructor's signature, without calling it
    except RuntimeError:  # a constructor taking *args: not a scikit-learn estimator
        raise ConfigError(f"model.estimator: {model.estimator} does not list its parameters in its constructor "
                          "(*args); give a scikit-learn classifier class") from None
    unknown = sorted(set(model.params) - set(known))
    if unknown:
        raise ConfigError(f"model.params: {model.estimator} has no parameter {', '.join(map(repr, unknown))}; "
                          f"its parameters are {', '.join(known)}")
    try:
        estimator = estimator_class(**model.params)
        if hasattr(estimator, "_validate_params"):  # scikit-learn's own checks, otherwise made at the first fit
            estimator._validate_params()
    except InvalidParameterError as error:
        name = next((p for p in model.params if f"'{p}' parameter" in str(error)), None)
        key = f"model.params.{name}" if name else "model.params"
        raise ConfigError(f"{key}: {error} Fix it in the config (nothing was run yet)") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model.params: {model.estimator} does not accept these parameters: {error}") from None
    if not hasattr(estimator, "predict_proba"):
        if not hasattr(estimator, "decision_function"):
            raise ConfigError(f"model.estimator: {model.estimator} has neither predict_proba nor decision_function; "
                              "uncertainty sampling needs class probabilities")
        if model.calibration == "none":
            raise ConfigError(f"model.estimator: {model.estimator} has no predict_proba; uncertainty sampling needs "
                              "class probabilities: set model.calibration: sigmoid (or isotonic) to calibrate its "
                              "decision function")
    return estimator_class


def read_yaml(path: str | Path) -> tuple[dict[str, Any], Path]:
    """The mapping in a YAML file and the folder its relative paths are resolved against."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError(f"config file {where} is not valid YAML: {problem}. Fix the syntax there (indent with "
                          "spaces, close brackets and quotes, put a space after each colon)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        raise ConfigError(f"config file {path} is empty; it needs at least a dataset section, e.g. "
                          "`dataset: {name: digits}` (see configs/quickstart.yaml and the config reference in "
                          "README.md)")
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config ({path}): expected a mapping of keys at the top level")
    return data, path.resolve().parent


def config_from_dict(data: dict[str, Any], base: Path, source: str) -> Config:
    """Validate a config mapping and resolve its relative paths against `base`."""
    config = _validate(data, source=source)
    config.dataset.path = _resolve(base, config.dataset.path, "dataset.path", must_exist=True)
    config.dataset.test_path = _resolve(base, config.dataset.test_path, "dataset.test_path", must_exist=True)
    config.output_dir = _resolve(base, config.output_dir, "output_dir", must_exist=False)
    check_estimator(config.model)
    return config


def load_config(path: str | Path) -> Config:
    """Read a YAML config, validate it, and resolve its paths; errors name the key at fault."""
    data, base = read_yaml(path)
    return config_from_dict(data, base, source=str(path))
