"""One day of the closed loop, in stages shared by `recflow simulate` and `recflow replay`.

Both replay a history day by day through the platform's own stages: the day's batch is validated
(Great Expectations) into the validated store, its drift is checked against the champion's training
window (Evidently, calibrated), a challenger is trained on a window of the newest days when the loop
says so, gated against the champion (`monitoring.gate.compare_packages`, the one gate), stored in the
model store either way and promoted only if it wins. `flows.simulate` drives them on the synthetic
shop with injected drift; `flows.policies` on a dated log under a retraining policy.

A model trains on a window of days in a home of its own (`window_home`): the window's validated
batches linked in, the first of them carrying the catalogue and the users as of its day (batches
hold upserts, so a window that starts after the first day would otherwise miss every product that
did not change inside it).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from recflow.data.batches import list_batches
from recflow.settings import Settings

if TYPE_CHECKING:
    from models.config import PipelineConfig
    from models.train import TrainResult


@dataclass
class Champion:
    """The serving model of a replayed loop: its store tag, package and the days it learned."""

    tag: str
    bundle_path: Path
    window: list[date]
    bundle: object = None


@dataclass(frozen=True)
class GateOutcome:
    """A retraining and its gate: the decision, the challenger's tag and, on a promotion, the new champion."""

    decision: object  # monitoring.gate.GateDecision
    tag: str
    challenger: Champion
    promoted: bool
    seconds: dict[str, float] = field(default_factory=dict)
    """wall time by step: the training's (`train_on_window`) and `gate` (the comparison and the model store)."""


# ---------------------------------------------------------------- stages (tasks)


@task(name="land history", cache_policy=NO_CACHE)
def land_history(settings: Settings) -> list:
    """Raw batches of every day of the configured source (synthetic, amazon:DIR, completejourney[:DIR])."""
    from recflow.data.sources import land_batches

    return land_batches(settings)


@task(name="validate day", cache_policy=NO_CACHE)
def validate_day(settings: Settings, validator, batch) -> bool:
    """Great Expectations on one raw batch: valid rows into the validated store."""
    return validate_day_outcome(settings, validator, batch).success


def validate_day_outcome(settings: Settings, validator, batch):
    """`validate_day` with the whole `features.validation.BatchOutcome` (rows in, valid, quarantined)."""
    from features.validation import validate_batch

    outcome = validate_batch(validator, batch, settings)
    if not outcome.success:
        get_run_logger().error("batch %s quarantined: %s", outcome.day, outcome.reason)
    return outcome


@task(name="train challenger", cache_policy=NO_CACHE)
def train_on_window(
    settings: Settings,
    window: list[date],
    name: str,
    home: Path | None = None,
    tuned: PipelineConfig | None = None,
) -> TrainResult:
    """Train on `window` in a home of its own; its newest `settings.data.holdout_days` days are the
    training run's own holdout, which the validation package never learns: its choices (epochs,
    half-life, whether the ranker ships) are made on them and the gate compares on them.

    Args:
        settings: the loop's settings (its validated store holds every day of `window`).
        window: the days to learn, oldest first.
        name: the training home's name under `<home>/training` (replaced if it exists).
        home: where that folder goes instead of `settings.home` (a policy of `recflow replay`).
        tuned: a `models.config.PipelineConfig` whose searched hyperparameters the training keeps
            (`models.train.train_models`); None: it searches them.

    Returns:
        The `models.train.TrainResult`; its `stage_seconds` start with `store` (the window's feature
        store).
    """
    from features.store import prepare_feature_store
    from models.train import train_models

    start = time.perf_counter()
    train = window_home(settings, window, (home or settings.home) / "training" / name)
    store = prepare_feature_store(train)
    store_seconds = round(time.perf_counter() - start, 1)
    result = train_models(train, store, verbose=0, tuned=tuned)
    return replace(result, stage_seconds={"store": store_seconds, **result.stage_seconds})


@task(name="check drift", cache_policy=NO_CACHE)
def check_drift(
    settings: Settings, window: list[date], day: date, detailed: bool = True, reports: Path | None = None
):
    """Evidently drift of `day` against the champion's training window.

    `detailed`: the preset's HTML table of every column (see `monitoring.drift.drift_report`);
    `reports`: the folder the day's report goes under (default `settings.reports_dir`).
    """
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days

    reference, current = frames_for_days(settings, window, [day])
    when = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return detect_drift(
        reference,
        current,
        settings,
        (reports or settings.reports_dir) / "drift" / day.isoformat(),
        timestamp=when,
        detailed=detailed,
    )


# ---------------------------------------------------------------- helpers


def window_home(settings: Settings, days: Sequence[date], home: Path) -> Settings:
    """Settings of a fresh home (`home`, replaced) whose validated store holds only `days`.

    Every day is linked to the loop's validated batch, except the first: a folder of its own with the
    day's events linked and its catalogue and users as of that day (`read_snapshot`: a full snapshot is
    a valid upsert), hard-linked to a file written once per state under `<settings.home>/snapshots`
    (`snapshot_file`: a loop builds a window home a day).
    """
    from recflow.data.batches import snapshot_file

    if not days:
        raise ValueError(f"Cannot build a home for an empty window under {home}")
    if home.exists():
        shutil.rmtree(home)
    out = settings.with_home(home)
    out.validated_dir.mkdir(parents=True)
    first, *rest = sorted(days)
    source = settings.validated_dir
    folder = out.validated_dir / first.isoformat()
    folder.mkdir()
    (folder / "events.parquet").symlink_to((source / first.isoformat() / "events.parquet").resolve())
    for table in ("items", "users"):
        cached = snapshot_file(source, table, first, settings.home / "snapshots")
        try:  # a hard link: the window keeps its file when the cache drops it
            os.link(cached, folder / f"{table}.parquet")
        except OSError:  # another file system
            shutil.copyfile(cached, folder / f"{table}.parquet")
    for day in rest:
        (out.validated_dir / day.isoformat()).symlink_to((source / day.isoformat()).resolve())
    return out


def validated_days(settings: Settings) -> list[date]:
    """The days in the validated store, oldest first."""
    return [b.day for b in list_batches(settings.validated_dir)]


def training_window(days: Sequence[date], day: date, length: int) -> list[date]:
    """The validated days of the `length` days ending with `day` (`day` included)."""
    return [d for d in days if day - timedelta(days=length - 1) <= d <= day]


def load_bundle(path: Path):
    """A `models.bundle.ModelBundle` from its folder."""
    from models.bundle import ModelBundle

    return ModelBundle.load(path)


def retrain_and_gate(
    settings: Settings,
    store,
    champion: Champion,
    window: list[date],
    name: str,
    model_settings: Settings | None = None,
    metadata: dict | None = None,
    reason: str | None = None,
) -> GateOutcome:
    """Train a challenger on `window`, gate it against `champion`, store it, promote it if it wins.

    Args:
        settings: the loop's settings (validated store, gate margin, serving settings).
        store: the Feast store the gate reads features from, or a function of the first compared day
            returning one (`monitoring.gate.compare_packages`).
        champion: the serving model.
        window: the days the challenger learns; its newest `settings.data.holdout_days` are held out
            for its validation package, which the gate scores against the champion on those days.
        name: the training run's folder name.
        model_settings: whose model store and champion pointer (`settings.bentoml_home`) take the
            challenger, and whose home its training goes under (default `settings`).
        metadata: recorded with the challenger in the model store, beside the gate's decision.
        reason: why it retrains (`age`, `drift`, `weekly`...): a reason in `settings.train.keep_tuning_on`
            keeps the champion's searched hyperparameters (`train_on_window`).
    """
    from monitoring.gate import compare_packages
    from serving.package import promote, save_to_model_store

    owner = model_settings or settings
    tuned = champion.bundle.config if reason in settings.train.keep_tuning_on else None
    trained = train_on_window(settings, window, name, home=owner.home, tuned=tuned)
    t = time.perf_counter()
    decision = compare_packages(settings, store, champion.bundle, load_bundle(trained.validation_path))
    tag = save_to_model_store(owner, trained.bundle_path, {**(metadata or {}), "gate": decision.to_dict()})
    challenger = Champion(tag, trained.bundle_path, list(window), load_bundle(trained.bundle_path))
    if decision.promote:
        promote(owner, tag)
    seconds = {**trained.stage_seconds, "gate": round(time.perf_counter() - t, 1)}
    return GateOutcome(decision, tag, challenger, decision.promote, seconds)
