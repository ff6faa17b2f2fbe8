"""The closed loop, replayed day by day on synthetic data: drift -> retrain -> gate -> promote -> serve.

`recflow simulate --days 30 --drift-day 15 --json OUT` lands a synthetic history with drift injected
from `--drift-day`, trains the first champion on the first `window` days, then for every later day:

1. validates the day's batch (Great Expectations) into the validated store;
2. serves the champion's top-K to the users who come back that day, through the one scoring path
   (`monitoring.quality.day_evaluation`: history, seen filter and online features as of the day's
   start), measures its hit rate and NDCG on what they did that day (the feedback) and the drift of
   its two-tower scores against those it served on its first day (prediction drift);
3. checks drift of the day against the champion's training window (Evidently, calibrated);
   snapshots go to the Evidently workspace;
4. on drift (outside the cool-down after a promotion), or when the weekly schedule is due, trains a
   challenger on the newest `window` days up to today (today held out for its validation package,
   then refit), and gates it against the champion on today (`monitoring.gate.compare_packages`); the
   challenger is stored either way, promoted only if it wins.

At the end a model trained from scratch on the shifted days only is compared with the champion that
served the last day, on that day. The JSON and a PNG chart (drift share and hit rate per day) are written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from prefect import flow

from flows.loop import (
    Champion,
    check_drift,
    land_history,
    load_bundle,
    retrain_and_gate,
    train_on_window,
    training_window,
    validate_day,
    validated_days,
)
from recflow.settings import Settings


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
    champion_ndcg: float | None = None
    challenger_ndcg: float | None = None
    gate_reason: str | None = None
    retrain_reason: str | None = None
    prediction_drift: float | None = None
    prediction_drift_detected: bool | None = None

    def to_dict(self, k: int) -> dict:
        d = asdict(self)
        for name in ("champion_hr", "challenger_hr", "champion_ndcg", "challenger_ndcg"):
            d[f"{name}@{k}"] = d.pop(name)
        return d


def simulation_settings(settings: Settings, days: int, drift_day: int | None) -> Settings:
    """The settings of the simulated world: its own home under `settings.home / "simulate"`; a training
    holds out its window's newest day (the gate compares on it)."""
    base = settings.model_dump()
    base["home"] = settings.home / "simulate"
    base["data"] = {**base["data"], "n_days": days, "drift_day": drift_day, "holdout_days": 1}
    return type(settings).model_validate(base)


# ---------------------------------------------------------------- helpers


def fresh_world(sim: Settings, window: int) -> tuple[list, object, list[date], object]:
    """A new simulated world in `sim.home` (an old one is deleted): its history landed, the first
    `window` days validated, and a first package trained on them.

    Returns:
        `(batches, validator, window_days, trained)`: every landed batch, the Great Expectations
        validator for the days to come, the days trained on, and `train_on_window`'s result.
    """
    from features.validation import Validator

    if sim.home.exists():
        shutil.rmtree(sim.home)
    batches = land_history(sim)
    validator = Validator(sim)
    for batch in batches[:window]:
        validate_day(sim, validator, batch)
    first = validated_days(sim)[:window]
    return batches, validator, first, train_on_window(sim, first, "initial")


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
    from features.store import prepare_feature_store
    from monitoring.quality import day_evaluation, prediction_drift
    from monitoring.workspace import log_batch
    from serving.package import promote, save_to_model_store

    if not 2 <= window < drift_day < days:
        raise ValueError(f"Need 2 <= window ({window}) < drift_day ({drift_day}) < days ({days})")
    sim = simulation_settings(settings, days, drift_day)
    k = sim.train.k
    batches, validator, first, trained = fresh_world(sim, window)
    tag = save_to_model_store(
        sim, trained.bundle_path, {"simulation": {"trained_on": [d.isoformat() for d in first]}}
    )
    promote(sim, tag)
    champion = Champion(tag, trained.bundle_path, first, load_bundle(trained.bundle_path))
    score_reference = None  # the champion's two-tower scores on its first serving day
    last_promotion, last_training, follow_up = None, first[-1], None
    records: list[DayRecord] = []

    for index, batch in enumerate(batches[window:], start=window):
        day = batch.day
        validate_day(sim, validator, batch)
        store = prepare_feature_store(sim)  # features as of each day's start, for the served lists
        quality, served = day_evaluation(sim, store, champion.bundle, day, k)
        scores = served.served["retrieval_score"].dropna()
        if score_reference is None:
            score_reference = scores
        served_drift = prediction_drift(score_reference, scores, sim)
        drift = check_drift(sim, champion.window, day)
        log_batch(
            sim,
            drift,
            quality,
            timestamp=datetime.combine(day, datetime.min.time(), tzinfo=UTC),
            name=str(day),
        )
        record = DayRecord(
            str(day), drift.share, drift.detected, False, False, champion.tag, quality.hit_rate, None
        )
        record.champion_ndcg = quality.ndcg
        served_by = champion.tag  # the package that served this day (a promotion only serves from tomorrow)
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
            train_window = training_window(validated_days(sim), day, window + 1)
            outcome = retrain_and_gate(sim, store, champion, train_window, f"day{index:03d}")
            decision = outcome.decision
            record.retrained = True
            if decision.challenger is not None:
                record.challenger_hr = decision.challenger[f"hr@{k}"]
                record.challenger_ndcg = decision.challenger[f"ndcg@{k}"]
            record.gate_reason = decision.reason
            print(f"{day}: {record.retrain_reason} retrain -> challenger {outcome.tag}: {decision.reason}")
            if outcome.promoted:
                champion = outcome.challenger
                score_reference = None
                last_promotion = day
                record.promoted, record.serving_model = True, outcome.tag
        if day == follow_up:
            follow_up = None  # done; a later alarm starts a new episode
        records.append(record)

    final = _final_comparison(sim, store, drift_day, records[-1], served_by)
    final["final_champion"] = champion.tag
    return {
        "drift_day": drift_day,
        "profile": sim.profile,
        "window": window,
        "days": [r.to_dict(k) for r in records],
        "final": final,
    }


def _final_comparison(sim: Settings, store, drift_day: int, last_record: DayRecord, served_by: str) -> dict:
    """On the last day: the package that served it against one trained from scratch on the shifted days.

    The scratch model is judged by its validation package (fitted before the last day); the package
    that served the last day learned nothing of it either.
    """
    from monitoring.quality import day_quality

    k = sim.train.k
    days = validated_days(sim)
    shifted, last = days[drift_day:], days[-1]
    scratch = train_on_window(sim, shifted, "scratch")
    scratch_quality = day_quality(sim, store, load_bundle(scratch.validation_path), last, k)
    return {
        "day": str(last),
        "champion": served_by,
        f"champion_hit_rate@{k}": last_record.champion_hr,
        f"champion_ndcg@{k}": last_record.champion_ndcg,
        f"scratch_hit_rate@{k}": scratch_quality.hit_rate,
        f"scratch_ndcg@{k}": scratch_quality.ndcg,
        "champion_over_scratch": (
            last_record.champion_ndcg / scratch_quality.ndcg if scratch_quality.ndcg else None
        ),
    }


# ---------------------------------------------------------------- outputs


def write_outputs(result: dict, json_out: Path, k: int) -> Path:
    """Write the JSON and a PNG chart (drift share and hit rate per day) beside it; return the PNG path."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

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
    save_figure(fig, png)
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
