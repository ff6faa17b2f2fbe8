"""The closed loop, replayed day by day on synthetic data: drift -> retrain -> gate -> promote -> serve.

`recflow simulate --days 30 --drift-day 15 --json OUT` lands a synthetic history with drift injected
from `--drift-day`, trains the first champion on the first `window` days, then for every later day:

1. validates the day's batch (Great Expectations) into the validated store;
2. serves the champion's top-K to the day's active users (from their history before the day),
   measures its hit rate on what they did that day (the feedback) and the drift of its served
   scores against the scores it served on its own holdout day (prediction drift);
3. checks drift of the day against the champion's training window (Evidently, calibrated);
   snapshots go to the Evidently workspace;
4. on drift (outside the cool-down after a promotion), or when the weekly schedule is due, retrains a
   challenger on the newest `window` days before today, then gates it against the champion on today (the latest holdout) and on the
   fixed golden day; the challenger is stored either way, promoted only if it wins.

At the end a model trained from scratch on the shifted days only is compared with the final champion
on the last day. The JSON and a PNG chart (drift share and hit rate per day) are written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from recflow.data.batches import list_batches, read_events
from recflow.settings import Settings


@dataclass
class Champion:
    """The serving model in the simulation: its store tag, bundle and training window."""

    tag: str
    bundle_path: Path
    window: list[date]
    bundle: object = None


@dataclass
class DayRecord:
    """One line of the simulation's JSON (keys as the issue names them).

    `serving_model` is the model serving at the end of the day (the challenger on a promotion day).
    """

    day: str
    drift_share: float | None
    drift_detected: bool
    retrained: bool
    promoted: bool
    serving_model: str
    champion_hr: float | None
    challenger_hr: float | None
    gate_reason: str | None = None
    retrain_reason: str | None = None
    prediction_drift: float | None = None
    prediction_drift_detected: bool | None = None

    def to_dict(self, k: int) -> dict:
        d = asdict(self)
        d[f"champion_hr@{k}"] = d.pop("champion_hr")
        d[f"challenger_hr@{k}"] = d.pop("challenger_hr")
        return d


def simulation_settings(settings: Settings, days: int, drift_day: int) -> Settings:
    """The settings of the simulated world: its own home under `settings.home / "simulate"`."""
    base = settings.model_dump()
    base["home"] = settings.home / "simulate"
    base["data"] = {**base["data"], "n_days": days, "drift_day": drift_day}
    return type(settings).model_validate(base)


# ---------------------------------------------------------------- stages (tasks)


@task(name="land synthetic history", cache_policy=NO_CACHE)
def land_history(sim: Settings) -> list:
    """Raw batches of every simulated day (each day is generated independently of the others)."""
    from recflow.data.sources import land_batches

    return land_batches(sim)


@task(name="validate day", cache_policy=NO_CACHE)
def validate_day(sim: Settings, validator, batch) -> bool:
    """Great Expectations on one raw batch: valid rows into the validated store."""
    from features.validation import validate_batch

    outcome = validate_batch(validator, batch, sim)
    if not outcome.success:
        get_run_logger().error("batch %s quarantined: %s", outcome.day, outcome.reason)
    return outcome.success


@task(name="train challenger", cache_policy=NO_CACHE)
def train_on_window(sim: Settings, window: list[date], name: str):
    """Train on `window` (its last day is the training run's own holdout) in a home of its own."""
    from features.store import prepare_feature_store
    from models.train import train_models

    home = sim.home / "training" / name
    if home.exists():
        shutil.rmtree(home)
    train = type(sim).model_validate(
        {**sim.model_dump(), "home": home, "data": {**sim.data.model_dump(), "holdout_days": 1}}
    )
    train.validated_dir.mkdir(parents=True)
    for day in window:
        (train.validated_dir / day.isoformat()).symlink_to((sim.validated_dir / day.isoformat()).resolve())
    store = prepare_feature_store(train)
    return train_models(train, store, verbose=0)


@task(name="check drift", cache_policy=NO_CACHE)
def check_drift(sim: Settings, window: list[date], day: date):
    """Evidently drift of `day` against the champion's training window."""
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days

    reference, current = frames_for_days(sim, window, [day])
    when = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return detect_drift(reference, current, sim, sim.reports_dir / "drift" / day.isoformat(), timestamp=when)


# ---------------------------------------------------------------- serving and feedback


def serve_day(bundle, sim: Settings, day: date, k: int) -> pd.DataFrame:
    """The top-K the model serves to each user active on `day`, from their history before the day.

    Returns:
        One row per recommendation: `user_id`, `item_id`, `rank`, `score`.
    """
    history = read_events(sim.validated_dir, [d for d in _days(sim) if d < day])
    today = read_events(sim.validated_dir, [day])
    users = list_batches(sim.validated_dir)
    snapshot = next(b for b in users if b.day == day).read("users").set_index("user_id")
    active = sorted(today["user_id"].astype(str).unique())
    recent = history.groupby(history["user_id"].astype(str))["item_id"].agg(lambda s: list(s.astype(str)))
    n = sim.features.sequence_length
    queries = [
        {
            "user_id": u,
            "recent_items": recent.get(u, [])[-n:],
            "region": snapshot["region"].get(u),
            "age_band": snapshot["age_band"].get(u),
        }
        for u in active
    ]
    if not queries:
        return pd.DataFrame(columns=["user_id", "item_id", "rank", "score"])
    scores = bundle.query_embedding(queries) @ bundle.item_embeddings.T
    top = np.argsort(-scores, axis=1)[:, :k]
    rows = [
        (u, str(bundle.item_ids[j]), r + 1, float(scores[i, j]))
        for i, u in enumerate(active)
        for r, j in enumerate(top[i])
    ]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank", "score"])


def day_quality(bundle, sim: Settings, day: date, training_days: list[date]):
    """Served lists of `day` judged by that day's events (`monitoring.quality`)."""
    from monitoring.quality import recommendation_quality

    k = sim.train.k
    served = serve_day(bundle, sim, day, k)
    feedback = read_events(sim.validated_dir, [day])
    catalogue = next(b for b in list_batches(sim.validated_dir) if b.day == day).read("items")["item_id"]
    training = read_events(sim.validated_dir, training_days)
    return recommendation_quality(served, feedback, training, catalogue, k)


def _days(sim: Settings) -> list[date]:
    return [b.day for b in list_batches(sim.validated_dir)]


def _load(path: Path):
    from models.bundle import ModelBundle

    return ModelBundle.load(path)


# ---------------------------------------------------------------- the flow


@flow(name="recflow-simulate", log_prints=True)
def simulate_flow(
    settings: Settings,
    days: int = 30,
    drift_day: int = 15,
    window: int = 7,
    cooldown: int = 2,
    retrain_every: int | None = None,
) -> dict:
    """Replay `days` synthetic days with drift from `drift_day` through the closed loop.

    Args:
        settings: platform settings (profile sizes, monitoring thresholds, promotion margin).
        days: simulated days.
        drift_day: first drifted day (0-based).
        window: days a model trains on (the newest before the retraining day).
        cooldown: days after a promotion during which drift does not retrain again (the drift
            reference is the new champion's window, which still holds pre-drift days).
        retrain_every: days between scheduled retrains (the weekly deployment), counted from the
            last training; None (default) replays the drift-driven loop alone.

    A drift episode also schedules one follow-up retrain `window` days after its first alarm, when
    the training window holds only post-drift days: the alarm itself fades as soon as the
    champion's reference window holds enough post-drift days, before the model has fully caught up.

    Returns:
        `{"drift_day", "days": [...], "final": {...}}` (see `DayRecord`).
    """
    from features.validation import Validator
    from monitoring.gate import decide_promotion
    from monitoring.quality import prediction_drift
    from monitoring.workspace import log_batch
    from serving.package import promote, save_to_model_store

    if not 2 <= window < drift_day < days:
        raise ValueError(f"Need 2 <= window ({window}) < drift_day ({drift_day}) < days ({days})")
    sim = simulation_settings(settings, days, drift_day)
    if sim.home.exists():
        shutil.rmtree(sim.home)
    k = sim.train.k
    metric = f"hit_rate@{k}"
    batches = land_history(sim)
    validator = Validator(sim)
    for batch in batches[:window]:
        validate_day(sim, validator, batch)

    first = _days(sim)[:window]
    trained = train_on_window(sim, first, "initial")
    tag = save_to_model_store(
        sim, trained.bundle_path, {"simulation": {"trained_on": [d.isoformat() for d in first]}}
    )
    promote(sim, tag)
    champion = Champion(tag, trained.bundle_path, first[:-1], _load(trained.bundle_path))
    golden_day = first[-1]  # never trained on by the first champion; fixed for the whole simulation
    golden = {champion.tag: day_quality(champion.bundle, sim, golden_day, champion.window).to_dict()}
    score_reference = serve_day(champion.bundle, sim, golden_day, k)["score"]  # the champion's own scores
    last_promotion, last_training, follow_up = None, first[-1], None
    records: list[DayRecord] = []

    for index, batch in enumerate(batches[window:], start=window):
        day = batch.day
        validate_day(sim, validator, batch)
        quality = day_quality(champion.bundle, sim, day, champion.window)
        champion_hr = quality.to_dict()[metric]
        served_drift = prediction_drift(
            score_reference, serve_day(champion.bundle, sim, day, k)["score"], sim
        )
        drift = check_drift(sim, champion.window, day)
        log_batch(
            sim,
            drift,
            quality,
            timestamp=datetime.combine(day, datetime.min.time(), tzinfo=UTC),
            name=str(day),
        )
        record = DayRecord(
            str(day), drift.share, drift.detected, False, False, champion.tag, champion_hr, None
        )
        record.prediction_drift, record.prediction_drift_detected = served_drift.score, served_drift.detected
        cooling = last_promotion is not None and (day - last_promotion).days <= cooldown
        if drift.detected and follow_up is None:
            follow_up = day + timedelta(days=window)
        scheduled = retrain_every is not None and (day - last_training).days >= retrain_every
        reason = (
            "drift"
            if drift.detected and not cooling
            else "post-drift follow-up"
            if day == follow_up
            else "schedule"
            if scheduled
            else None
        )
        if reason is not None:
            last_training, record.retrain_reason = day, reason
            train_window = [d for d in _days(sim) if day - timedelta(days=window) <= d <= day]
            challenger = train_on_window(sim, train_window, f"day{index:03d}")
            bundle = _load(challenger.bundle_path)
            challenger_quality = day_quality(bundle, sim, day, train_window[:-1])
            golden_challenger = day_quality(bundle, sim, golden_day, train_window[:-1]).to_dict()
            decision = decide_promotion(
                quality.to_dict(),
                challenger_quality.to_dict(),
                golden[champion.tag],
                golden_challenger,
                sim.monitoring.promotion_margin,
                metric=metric,
                golden_tolerance=sim.monitoring.golden_tolerance,
            )
            new_tag = save_to_model_store(sim, challenger.bundle_path, {"gate": decision.to_dict()})
            record.retrained, record.challenger_hr = True, challenger_quality.to_dict()[metric]
            record.gate_reason = decision.reason
            print(f"{day}: {record.retrain_reason} retrain -> challenger {new_tag}: {decision.reason}")
            if decision.promote:
                promote(sim, new_tag)
                champion = Champion(new_tag, challenger.bundle_path, train_window[:-1], bundle)
                golden[new_tag] = golden_challenger
                score_reference = serve_day(bundle, sim, day, k)["score"]
                last_promotion = day
                record.promoted, record.serving_model = True, new_tag
        if day == follow_up:
            follow_up = None  # done; a later alarm starts a new episode
        records.append(record)

    final = _final_comparison(sim, champion, drift_day)
    return {
        "drift_day": drift_day,
        "profile": sim.profile,
        "window": window,
        "days": [r.to_dict(k) for r in records],
        "final": final,
    }


def _final_comparison(sim: Settings, champion: Champion, drift_day: int) -> dict:
    """The final champion against a model trained from scratch on the shifted days, on the last day."""
    metric = f"hit_rate@{sim.train.k}"
    days = _days(sim)
    shifted = days[drift_day:]
    last = days[-1]
    scratch = train_on_window(sim, shifted, "scratch")
    scratch_hr = day_quality(_load(scratch.bundle_path), sim, last, shifted[:-1]).to_dict()[metric]
    champion_hr = day_quality(champion.bundle, sim, last, champion.window).to_dict()[metric]
    return {
        "day": str(last),
        "champion": champion.tag,
        f"champion_{metric}": champion_hr,
        f"scratch_{metric}": scratch_hr,
        "champion_over_scratch": champion_hr / scratch_hr if scratch_hr else None,
    }


# ---------------------------------------------------------------- outputs


def write_outputs(result: dict, json_out: Path, k: int) -> Path:
    """Write the JSON and a PNG chart (drift share and hit rate per day) beside it; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    days = result["days"]
    x = [d["day"][5:] for d in days]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(x, [d["drift_share"] for d in days], marker="o", label="drift share")
    alarms = [i for i, d in enumerate(days) if d["drift_detected"]]
    top.scatter(
        [x[i] for i in alarms], [days[i]["drift_share"] for i in alarms], color="red", zorder=3, label="alarm"
    )
    top.set_ylabel("drifted columns (share)")
    top.legend(loc="upper left")
    bottom.plot(x, [d[f"champion_hr@{k}"] for d in days], marker="o", label=f"champion hit rate@{k}")
    retrained = [i for i, d in enumerate(days) if d["retrained"]]
    bottom.scatter(
        [x[i] for i in retrained],
        [days[i][f"challenger_hr@{k}"] for i in retrained],
        marker="x",
        color="black",
        label="challenger",
    )
    for i, d in enumerate(days):
        if d["promoted"]:
            for ax in (top, bottom):
                ax.axvline(x[i], color="green", linestyle=":", linewidth=1)
    drift_index = result["drift_day"] - result["window"]
    if 0 <= drift_index < len(x):
        for ax in (top, bottom):
            ax.axvline(x[drift_index], color="red", linestyle="--", linewidth=1)
    bottom.set_ylabel("hit rate")
    bottom.legend(loc="lower left")
    bottom.tick_params(axis="x", rotation=60)
    fig.suptitle(f"recflow closed loop: drift from day {result['drift_day']} (red), promotions (green)")
    fig.tight_layout()
    png = json_out.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def run_simulation(settings: Settings, days: int, drift_day: int, json_out: Path, window: int = 7) -> dict:
    """Run the simulation flow, write its JSON and chart, print one line per day."""
    (settings.home / "prefect").mkdir(parents=True, exist_ok=True)  # PREFECT_HOME of the CLI
    result = simulate_flow(settings, days=days, drift_day=drift_day, window=window)
    png = write_outputs(result, json_out, settings.train.k)
    k = settings.train.k
    for d in result["days"]:
        print(
            f"{d['day']}  drift {d['drift_share']:.2f}{' ALARM' if d['drift_detected'] else '      '}  "
            f"champion hr@{k} {d[f'champion_hr@{k}']:.3f}"
            + (f"  retrained, challenger {d[f'challenger_hr@{k}']:.3f}" if d["retrained"] else "")
            + ("  PROMOTED" if d["promoted"] else "")
        )
    print(f"final: {json.dumps(result['final'])}")
    print(f"wrote {json_out} and {png}")
    return result
