"""`recflow replay`: a dated log replayed day by day through the closed loop under retraining policies.

Not the live `recflow up --replay` (`flows.replay`, a running platform fed a day every few seconds):
this is an offline backtest that answers "on my shop's real calendar, does drift-triggered retraining
keep quality up, at what cost in retrains, compared with a weekly cron or retraining every day?".

`recflow replay --data completejourney --start 2017-10-01 --end 2017-11-15 --policy drift --json OUT`
lands the source's days as raw batches, validates every day before `start` (one pass), trains the
first champion on the `train_days` days before `start`, then for every day from `start` to `end`:

1. validates the day's batch (Great Expectations) into the validated store;
2. updates the feature store (the newest `feature_days` days: the longest feature window is 30 days);
3. **scores every policy's champion on the day before learning from it** (prequential): the households
   that shop that day and shopped before are served through the one scoring path
   (`monitoring.quality.day_evaluation`: history, seen filter and features as of the day's start in the
   shop's time zone) and judged on the items they bought that day, as one basket: next-basket
   Recall@10 (hits / basket size) and NDCG@10 (ideal over the whole basket), as the next-basket
   benchmark measures them (`models.evaluate.basket_metrics`);
4. checks the day's drift against each champion's training window (Evidently, calibrated thresholds);
5. retrains as the policy says (`Policy.retrain_reason`) on the `train_days` days up to today (the
   newest `holdout_days`, a week by default, held out for the challenger's validation package), gates
   the challenger against the champion on the held-out days the champion never learned
   (`monitoring.gate.compare_packages`, with the features as of the first of them), stores it and
   promotes it if it wins: from tomorrow on it is the champion that gets scored.

Policies: `drift` retrains on an alarm outside the cool-down (`cooldown` days after its last retrain:
an alarm persists until a new champion's window has caught up, and one retrain per episode is the
point), and when `max_age` days have passed since its last retrain without one (reason `age`: a
champion goes stale without any feature drifting, see docs/replay.md; the platform's
`monitoring.max_champion_age_days`, 0 or `--max-age 0` for alarms only; an age retrain keeps the
champion's searched hyperparameters, `train.keep_tuning_on`); `weekly` every 7 days;
`daily` every day; `never` keeps the first champion. `all` runs the four
side by side over the same validated days and feature store.

**False alarm.** An alarm day D is *judged* when the policy retrained on D; the retrain is what an alarm
asks for. It is a false alarm when the model retrained on D (the challenger's serving package, which
learned D) does not score a higher next-basket NDCG@10 on day D+1 than the model that served D:
neither learned D+1, so this is the quality gain the retrain could have bought the day after the alarm,
whether or not the gate promoted it. Alarms without a retrain (in the cool-down, or under a policy that
does not act on alarms) are counted in `alarms` but not judged; `judged_alarms` says how many were.

Each day's record: the policy, the day, the served households, recall and NDCG, the drift share, the
alarm, the retrain and its reason, the gate's figures and reason, the promotion, the model serving at
the end of the day, the retrain's steps in seconds (`retrain_seconds`: the window's feature store,
training data, co-occurrence, buy-again, two-tower, ranker, report, refit, save, gate; summed per
policy in the summary), and the seconds spent (validation and features shared by the policies, split
evenly; `shared_seconds` is that shared part whole, what one policy alone would spend on it). With
several policies (`all`, or a list such as `drift,weekly`) the command also writes a Markdown table and
a PNG chart, and logs the first policy's days (drift and quality snapshots, stamped with the day) into
the Evidently workspace of the replay's home.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.loop import (
    Champion,
    check_drift,
    land_history,
    load_bundle,
    retrain_and_gate,
    train_on_window,
    training_window,
    validated_days,
    window_home,
)
from recflow.settings import REPLAY_HOLDOUT_DAYS, Settings

POLICIES: tuple[str, ...] = ("drift", "weekly", "daily", "never")
REPLAY_DIR = "policy-replay"


@dataclass(frozen=True)
class Policy:
    """When a retraining policy retrains.

    Attributes:
        name: `drift`, `weekly`, `daily` or `never`.
        every: days between scheduled retrains (`weekly`).
        cooldown: days after a retrain during which an alarm does not retrain again (`drift`).
        max_age: days without a retrain after which `drift` retrains without an alarm (reason `age`);
            None or 0: alarms only. The platform's `monitoring.max_champion_age_days`.
    """

    name: str
    every: int = 7
    cooldown: int = 7
    max_age: int | None = None

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(
                f"Unknown policy {self.name!r}: expected one of {', '.join(POLICIES)} (or 'all')"
            )

    def retrain_reason(self, day: date, alarm: bool, last_training: date) -> str | None:
        """Why the policy retrains on `day` (None: it does not).

        Args:
            day: the day just landed and scored.
            alarm: whether the day's drift check alarmed.
            last_training: the newest day the policy last trained on (the first champion's last day).
        """
        since = (day - last_training).days
        if self.name == "daily":
            return "daily"
        if self.name == "weekly":
            return "weekly" if since >= self.every else None
        if self.name == "drift":
            if alarm and since > self.cooldown:
                return "drift"
            return "age" if age_due(since, self.max_age) else None
        return None


def age_due(since: int | None, max_age: int | None) -> bool:
    """Whether `since` days without a retrain call for one at a maximum age of `max_age` days (None or 0:
    no maximum): the `age` rule of the replay's `drift` policy and of the served daily flow alike."""
    return bool(max_age) and since is not None and since >= max_age


@dataclass
class DayRecord:
    """One day of one policy (the JSON's `days`)."""

    policy: str
    day: str
    users: int
    recall: float | None
    ndcg: float | None
    drift_share: float | None  # None: a day without events, nothing to check
    alarm: bool
    retrained: bool = False
    retrain_reason: str | None = None
    promoted: bool = False
    serving_model: str = ""
    gate_champion_ndcg: float | None = None
    gate_challenger_ndcg: float | None = None
    gate_reason: str | None = None
    false_alarm: bool | None = None
    seconds: float = 0.0
    shared_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    retrain_seconds: dict[str, float] = field(default_factory=dict)  # a retrain's steps (GateOutcome.seconds)

    def to_dict(self, k: int) -> dict:
        d = asdict(self)
        d[f"recall@{k}"], d[f"ndcg@{k}"] = d.pop("recall"), d.pop("ndcg")
        return d


@dataclass
class PolicyRun:
    """The state of one policy through the replay."""

    policy: Policy
    settings: Settings  # its own home: model store, champion pointer, training runs, drift reports
    champion: Champion
    last_training: date
    records: list[DayRecord] = field(default_factory=list)
    pending: tuple[DayRecord, object] | None = None  # an alarm day's record and the retrained model


def policy_names(policy: str) -> list[str]:
    """The policies a `--policy` value names: one, several separated by commas, or `all` (the four).

    Raises:
        ValueError: naming an unknown policy.
    """
    if policy == "all":
        return list(POLICIES)
    names = [Policy(name.strip()).name for name in policy.split(",") if name.strip()]
    if not names:
        raise ValueError(f"No policy in {policy!r}: expected one of {', '.join(POLICIES)} or 'all'")
    return list(dict.fromkeys(names))


SERVING_FEATURE_DAYS = 2
"""Daily feature rows the replay's serving store keeps: it is only asked as of the newest day's start."""
REPLAY_NEGATIVES = 2048
REPLAY_MAX_EPOCHS = 8


def replay_settings(settings: Settings, holdout_days: int = REPLAY_HOLDOUT_DAYS) -> Settings:
    """The replay's world: home `<home>/policy-replay`, `holdout_days` held-out days per training.

    A training holds out its window's newest `holdout_days` days: its validation package's choices
    (two-tower epochs, buy-again half-life, whether the ranker ships) are made on them and the gate
    compares on them. On a shop's calendar one day is one weekday, holiday or promotion day and a few
    hundred households: a week (the default) holds every weekday and about four times the households,
    so neither the ranker's ship test nor the gate is hostage to one day (docs/replay.md).

    A retrain's cost is bounded: the two-tower trains with a sampled softmax of `REPLAY_NEGATIVES`
    negatives when `train.negatives` is 0 (the grocery year's catalogue holds 92k products) and for at
    most `REPLAY_MAX_EPOCHS` epochs (it early-stops anyway).
    """
    base = settings.model_dump()
    base["home"] = settings.home / REPLAY_DIR
    base["data"] = {**base["data"], "holdout_days": holdout_days}
    train = base["train"]
    base["train"] = {
        **train,
        "negatives": train["negatives"] or REPLAY_NEGATIVES,
        "max_epochs": min(train["max_epochs"], REPLAY_MAX_EPOCHS),
    }
    return type(settings).model_validate(base)


def policy_settings(sim: Settings, name: str) -> Settings:
    """A policy's own home under the replay's (`policies/<name>`): its model store and training runs."""
    return sim.with_home(sim.home / "policies" / name)


def serving_store(sim: Settings, day: date, feature_days: int, folder: str = "serving"):
    """What the platform knows at `day`'s start, the histories and features a champion serves from: the
    window home of the newest `feature_days` validated days through `day` and its Feast store
    (`SERVING_FEATURE_DAYS` daily rows), in `<sim.home>/<folder>` (replaced).

    Returns:
        `(serve, store)`: the window's settings and its `FeatureStore`.
    """
    from features.store import prepare_feature_store

    serve = window_home(sim, training_window(validated_days(sim), day, feature_days), sim.home / folder)
    return serve, prepare_feature_store(serve, newest_days=SERVING_FEATURE_DAYS)


PREPARE_DAYS_AHEAD = 16
"""Days the second process may prepare ahead of the loop. Preparing a day (validation, serving store,
households) costs more than the loop's own work on it, but the loop's retrains (a minute or more each)
leave the second process time to bank days that the loop then takes without waiting."""


class HistoryWindow:
    """The validated events of the newest `history_days` days through the day last added: the history
    a household is scored with. Days are added in order (`through`)."""

    def __init__(self, sim: Settings, history_days: int) -> None:
        self.sim, self.history_days = sim, history_days
        self.events: pd.DataFrame | None = None
        self.today = pd.DataFrame()

    def through(self, day: date) -> pd.DataFrame:
        """The window's events once `day` is added (`self.today`: the day's own events)."""
        from recflow.data.batches import read_events

        if self.events is None:
            self.events = history_before(self.sim, day, self.history_days)
        oldest = pd.Timestamp(day - timedelta(days=self.history_days), tz="UTC")
        self.today = read_events(self.sim.validated_dir, [day])
        kept = self.events[self.events["timestamp"] >= oldest]
        self.events = pd.concat([kept, self.today]).reset_index(drop=True)
        return self.events


class DayContext:
    """What preparing days carries from one day to the next in the process that prepares them: its
    validator (the ids known so far), the outcomes of days validated ahead of their turn and the
    households' history window."""

    def __init__(self, sim: Settings, history_days: int, validator=None) -> None:
        from features.validation import Validator

        self.validator = validator if validator is not None else Validator(sim)
        self.history = HistoryWindow(sim, history_days)
        self.validated: dict[date, tuple] = {}  # day -> (BatchOutcome, its share of the run's seconds)

    def validate(self, sim: Settings, upcoming: list) -> tuple:
        """The outcome of `upcoming[0]`'s batch and its validation seconds. A day not validated yet is
        validated with the rest of `upcoming` that is not (`features.validation.validate_batches`:
        pooled Great Expectations runs, every day's verdict, folders and report as one day at a time
        gives); each day of the pass is charged an equal share of its seconds."""
        from features.validation import validate_batches

        day = upcoming[0].day
        if day not in self.validated:
            group = [b for b in upcoming if b.day not in self.validated]
            t = time.perf_counter()
            outcomes = validate_batches(self.validator, group, sim)
            share = (time.perf_counter() - t) / len(group)
            self.validated.update({b.day: (o, share) for b, o in zip(group, outcomes, strict=True)})
        return self.validated.pop(day)


_worker_context: DayContext | None = None  # the day-preparing process's (the process serves one replay)


def prepare_day(
    sim: Settings,
    upcoming: list,
    feature_days: int,
    history_days: int,
    folder: str,
    context: DayContext | None = None,
) -> tuple:
    """Validate the batch `upcoming[0]` (with the rest of `upcoming` in one pooled pass, unless it was
    validated already: `DayContext.validate`), build its day's serving store (`serving_store`) in
    `<sim.home>/<folder>` and find the households the day scores (`monitoring.quality.day_users`:
    histories and features as of the day's start).

    Runs in the replay's second process (`DayPreparer`) while the first scores, checks and retrains on
    the days before: its serving store and households read only the validated days up to its day.
    `context`: the loop's own `DayContext` when it runs in the loop's process; None in the second
    process, which makes its own on its first day (days come to it in order).

    Returns:
        `(outcome, seconds, held)`: the `features.validation.BatchOutcome`, `{"validate", "features",
        "households"}` and the day's `models.data.HeldOut`.
    """
    from models.data import weighted_interactions
    from monitoring.quality import day_users

    global _worker_context
    if context is None:
        if _worker_context is None:
            _worker_context = DayContext(sim, history_days)
        context = _worker_context
    day = upcoming[0].day
    outcome, validate_seconds = context.validate(sim, upcoming)
    t1 = time.perf_counter()
    serve, store = serving_store(sim, day, feature_days, folder)
    t2 = time.perf_counter()
    events = context.history.through(day)
    held = day_users(serve, store, day, weighted_interactions(events, sim))
    seconds = {"validate": validate_seconds, "features": t2 - t1, "households": time.perf_counter() - t2}
    return outcome, seconds, held


class DayPreparer:
    """Prepares the coming days in a second process while the loop works on the current one.

    Day d + j's validation, serving store and households need only the validated days up to d + j,
    never what the loop does with day d (scoring, drift, retraining read the days up to d), so on two
    cores they run side by side, up to `depth` days ahead (`PREPARE_DAYS_AHEAD`). The serving stores
    rotate through `depth + 1` folders (`serving-0`, ...): the one the loop reads is never one being
    rebuilt. Days are validated in order, sixteen at a time in pooled Great Expectations runs (each
    day's verdict, folders and report as one day at a time gives: `DayContext.validate`).
    `ahead=False` prepares and validates each day in the loop's own process when it is due, with the
    loop's `validator`.
    """

    def __init__(
        self,
        sim: Settings,
        batches: list,
        feature_days: int,
        history_days: int,
        validator,
        ahead: bool = True,
        depth: int | None = None,
    ) -> None:
        self.sim, self.batches = sim, batches
        self.feature_days, self.history_days = feature_days, history_days
        self.pool, self.context = None, None
        if ahead and len(batches) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            self.depth = max(1, PREPARE_DAYS_AHEAD if depth is None else depth)
        else:
            self.context = DayContext(sim, history_days, validator)
            self.depth = 0
        self.pending = {i: self._submit(i) for i in range(min(self.depth, len(batches)))}

    def _folder(self, i: int) -> str:
        return f"serving-{i % (self.depth + 1)}"

    def _args(self, i: int) -> tuple:
        """`prepare_day`'s arguments for day `i`: ahead of the loop, the days up to the newest it may
        prepare are validated together when day `i` is not yet; in turn, one day at a time."""
        upcoming = self.batches[i : i + max(1, self.depth)]
        return (self.sim, upcoming, self.feature_days, self.history_days, self._folder(i))

    def _submit(self, i: int):
        return self.pool.submit(prepare_day, *self._args(i))

    def day(self, i: int):
        """Day `i`'s `(outcome, seconds, serve, store, held)`; starts preparing day `i + depth`.
        `seconds` has `wait`: how long the loop waited for the day."""
        from features.store import open_store

        t = time.perf_counter()
        if self.pool is not None:
            outcome, seconds, held = self.pending.pop(i).result()
            if i + self.depth < len(self.batches):
                self.pending[i + self.depth] = self._submit(i + self.depth)
        else:
            outcome, seconds, held = prepare_day(*self._args(i), context=self.context)
        seconds["wait"] = time.perf_counter() - t
        serve = self.sim.with_home(self.sim.home / self._folder(i))
        return outcome, seconds, serve, open_store(serve), held

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def history_before(sim: Settings, day: date, history_days: int) -> pd.DataFrame:
    """The validated events of the `history_days` days before `day`, never `day`'s own or later ones
    (the day preparer may have validated `day` already while the first champion trained)."""
    from recflow.data.batches import read_events

    oldest = day - timedelta(history_days)
    return read_events(sim.validated_dir, [d for d in validated_days(sim) if oldest <= d < day])


def check_holdout(holdout_days: int, train_days: int) -> None:
    """Raise ValueError unless `holdout_days` leaves days of a `train_days` window to learn."""
    if not 0 < holdout_days < train_days:
        raise ValueError(
            f"--holdout-days {holdout_days} must be at least 1 and fewer than --train-days {train_days} "
            "(a training learns the days before its held-out ones)"
        )


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean of the values that are not None, rounded to 6 places; None when there is none."""
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 6) if kept else None


def replay_days(all_days: list[date], start: date | None, end: date | None, train_days: int) -> list[date]:
    """The days to replay: `start`..`end` (default: from `train_days` after the first day to the last).

    Raises:
        ValueError: if fewer than `train_days` days precede `start`, or nothing is left to replay.
    """
    first_possible = all_days[0] + timedelta(days=train_days)
    start = start or first_possible
    if start < first_possible:
        raise ValueError(
            f"--start {start} leaves fewer than {train_days} days before it to train the first champion "
            f"on (the data starts {all_days[0]}): start on {first_possible} or later, or lower --train-days"
        )
    out = [d for d in all_days if start <= d <= (end or all_days[-1])]
    if not out:
        raise ValueError(f"No day of the source ({all_days[0]}..{all_days[-1]}) lies in {start}..{end}")
    return out


# ---------------------------------------------------------------- the flow


# log_prints off: Feast serialises on-demand views with dill, which disassembles their functions with
# print() (see flows.pipeline.build_features); the progress lines are printed to the terminal directly
@flow(name="recflow-replay", log_prints=False)
def replay_flow(
    settings: Settings,
    policies: list[str],
    start: date | None = None,
    end: date | None = None,
    train_days: int = 28,
    feature_days: int = 31,
    history_days: int = 91,
    cooldown: int = 7,
    max_age: int | None = None,
    holdout_days: int = REPLAY_HOLDOUT_DAYS,
    dashboards: bool = False,
    progress: Path | None = None,
    prepare_ahead: bool = True,
) -> dict:
    """Replay the source's days from `start` to `end` under each of `policies` (see the module docstring).

    Args:
        settings: platform settings (the data source, training, monitoring thresholds, gate margin).
        policies: names from `POLICIES`.
        start, end: the first and last replayed day (defaults: `train_days` after the first day; the last).
        train_days: days a model trains on (the newest, up to its retraining day).
        feature_days: newest days the serving feature tables are computed from each day.
        history_days: newest days whose purchases are a household's history when it is scored.
        cooldown: days after a retrain during which an alarm does not retrain again (`drift`).
        max_age: days without a retrain after which `drift` retrains anyway (None: alarms only).
        holdout_days: the newest days of a training window held out for its validation package and
            the gate (`replay_settings`); fewer than `train_days`.
        dashboards: log the first policy's drift and quality per day into the Evidently workspace.
        progress: a JSON file rewritten after every day with the days so far and their summaries (a
            run cut short still leaves its figures).
        prepare_ahead: validate the coming days, build their serving stores and find their households
            in a second process while this one works on the day (`DayPreparer`); the days' `validate`,
            `features` and `households` seconds are then that process's, and `wait` is how long the
            loop waited for them.

    Returns:
        `{"source", "start", "end", "train_days", "policies": {name: summary}, "days": [...], "validation"}`.
    """
    from features.validation import Validator, validate_batches
    from monitoring.workspace import log_batch, open_project
    from serving.package import promote, save_to_model_store

    check_holdout(holdout_days, train_days)
    sim = replay_settings(settings, holdout_days)
    k = sim.train.k
    if sim.home.exists():
        shutil.rmtree(sim.home)
    batches = land_history(sim)
    days = replay_days([b.day for b in batches], start, end, train_days)
    validator = Validator(sim)
    t = time.perf_counter()
    before = validate_batches(validator, [b for b in batches if b.day < days[0]], sim)  # one pooled pass
    print(
        f"validated {len(before)} days before {days[0]}: {sum(o.rows_in for o in before):,} rows in "
        f"{time.perf_counter() - t:.1f} s"
    )
    replayed = [b for b in batches if days[0] <= b.day <= days[-1]]
    # the first day is prepared while the first champion trains
    preparer = DayPreparer(sim, replayed, feature_days, history_days, validator, ahead=prepare_ahead)
    try:
        first_window = training_window(validated_days(sim), days[0] - timedelta(days=1), train_days)
        t = time.perf_counter()
        first = train_on_window(sim, first_window, "initial")
        print(
            f"first champion trained on {first_window[0]}..{first_window[-1]} in {time.perf_counter() - t:.0f} s"
        )
        runs = []
        for name in policies:
            own = policy_settings(sim, name)
            tag = save_to_model_store(
                own, first.bundle_path, {"replay": {"policy": name, "trained_on": "initial"}}
            )
            promote(own, tag)
            champion = Champion(tag, first.bundle_path, first_window, load_bundle(first.bundle_path))
            runs.append(
                PolicyRun(Policy(name, cooldown=cooldown, max_age=max_age), own, champion, first_window[-1])
            )
        opened = open_project(sim) if dashboards else None
        window = HistoryWindow(sim, history_days)  # the loop's own: the days' feedback and histories
        rows_validated, validation_seconds = 0, 0.0
        for i, batch in enumerate(replayed):
            day = batch.day
            t0 = time.perf_counter()
            # validated, its serving store built, its households found (`held`: those every policy's
            # champion serves), all in the second process
            outcome, prepared, serve, store, held = preparer.day(i)
            if not outcome.success:
                get_run_logger().error("batch %s quarantined: %s", outcome.day, outcome.reason)
            validation_seconds += prepared["validate"]
            rows_validated += outcome.rows_in
            t2 = time.perf_counter()
            events = window.through(day)
            t3 = time.perf_counter()
            whole = t3 - t0
            shared = {**prepared, "history": t3 - t2}
            for run in runs:
                t4 = time.perf_counter()
                record, quality, drift = replay_day(
                    run,
                    sim,
                    serve,
                    store,
                    day,
                    events,
                    train_days,
                    held,
                    quiet=window.today.empty,
                    feature_days=feature_days,
                )
                record.seconds = round(whole / len(runs) + time.perf_counter() - t4, 2)
                record.shared_seconds = round(whole, 2)
                record.stage_seconds = {
                    name: round(value, 2) for name, value in {**shared, **record.stage_seconds}.items()
                }
                if opened is not None and run is runs[0]:
                    log_batch(
                        sim, drift, quality if quality.users else None, _stamp(day), day.isoformat(), opened
                    )
                print(day_line(record, k), flush=True)
            if progress is not None:
                progress.parent.mkdir(parents=True, exist_ok=True)
                summaries = {run.policy.name: summarise(run.records, k) for run in runs}
                days_so_far = [r.to_dict(k) for run in runs for r in run.records]
                progress.write_text(json.dumps({"policies": summaries, "days": days_so_far}, indent=1))
    finally:
        preparer.close()
    summaries = {run.policy.name: summarise(run.records, k) for run in runs}
    return {
        "source": sim.data.source,
        "start": days[0].isoformat(),
        "end": days[-1].isoformat(),
        "train_days": train_days,
        "feature_days": feature_days,
        "history_days": history_days,
        "cooldown": cooldown,
        "max_age": max_age,
        "holdout_days": holdout_days,
        "k": k,
        "train": {"negatives": sim.train.negatives, "max_epochs": sim.train.max_epochs},
        "exclude_purchased": sim.exclude_purchased,
        "policies": summaries,
        "days": [r.to_dict(k) for run in runs for r in run.records],
        "validation": {
            "days": len(days),
            "rows": rows_validated,
            "seconds": round(validation_seconds, 2),
            "rows_per_second": round(rows_validated / validation_seconds) if validation_seconds else None,
            "days_per_pass": max(1, preparer.depth),  # days validated together (`DayContext.validate`)
        },
    }


def replay_day(
    run: PolicyRun,
    sim: Settings,
    serve: Settings,
    store,
    day: date,
    events: pd.DataFrame,
    train_days: int,
    held,
    quiet: bool = False,
    feature_days: int = 31,
):
    """One policy's day: score its champion before learning, check drift, retrain, gate, promote.

    Args:
        run: the policy's state (its champion moves on a promotion).
        sim: the replay's settings (the validated store through `day`).
        serve: the serving window's settings (`window_home`: the feature tables the champion reads).
        store: the Feast store of `serve`.
        day: the day just validated.
        events: the validated events of the history window through `day` (the day's feedback).
        train_days: days a challenger trains on.
        held: the day's households (`monitoring.quality.day_users`, found by `prepare_day`).
        quiet: the day has no validated event (the shop was closed: 2017-12-25 in the grocery year):
            nothing to score or to check for drift, and a retrain the policy asks for waits for the
            next day with baskets (its held-out day would have no targets).
        feature_days: newest days the feature tables are computed from (the gate's store, below).

    Returns:
        `(record, quality, drift)`: the day's record, the champion's `QualityResult` and `DriftResult`.
    """
    from monitoring.quality import day_evaluation

    k = sim.train.k

    def evaluate(bundle):
        return day_evaluation(serve, store, bundle, day, k, events=events, held=held)[0]

    def basket_ndcg(bundle) -> float | None:
        quality = evaluate(bundle)
        return quality.basket_ndcg if quality.users else None

    started = time.perf_counter()
    quality = evaluate(run.champion.bundle)
    scored = quality.users > 0
    if run.pending is not None and scored:  # the alarm's retrain: did it serve better the next open day?
        alarm_record, retrained, previous, promoted = run.pending
        mine = quality.basket_ndcg if scored else None
        new, old = (mine, basket_ndcg(previous)) if promoted else (basket_ndcg(retrained), mine)
        if new is not None and old is not None:
            alarm_record.false_alarm = not new > old
        run.pending = None
    scored_at = time.perf_counter()
    drift = None
    if not quiet:
        drift = check_drift(sim, run.champion.window, day, detailed=False, reports=run.settings.reports_dir)
    checked_at = time.perf_counter()
    record = DayRecord(
        policy=run.policy.name,
        day=day.isoformat(),
        users=quality.users,
        recall=quality.basket_recall if scored else None,
        ndcg=quality.basket_ndcg if scored else None,
        drift_share=None if drift is None else round(drift.share, 4),
        alarm=drift is not None and drift.detected,
        serving_model=run.champion.tag,
        stage_seconds={"score": scored_at - started, "drift": checked_at - scored_at},
    )
    reason = None if quiet else run.policy.retrain_reason(day, record.alarm, run.last_training)
    if reason is not None:
        window = training_window(validated_days(sim), day, train_days)
        previous = run.champion

        def gate_store(first: date):
            """The store as of the gate's first day: the serving store keeps only today's rows."""
            return store if first >= day else serving_store(sim, first, feature_days, folder="gate")[1]

        outcome = retrain_and_gate(
            sim,
            gate_store,
            previous,
            window,
            day.isoformat(),
            model_settings=run.settings,
            metadata={"replay": {"policy": run.policy.name, "reason": reason}},
            reason=reason,
        )
        decision = outcome.decision
        record.retrained, record.retrain_reason, record.gate_reason = True, reason, decision.reason
        metric = f"ndcg@{k}"
        record.gate_champion_ndcg = (decision.champion or {}).get(metric)
        record.gate_challenger_ndcg = (decision.challenger or {}).get(metric)
        run.last_training = day
        if outcome.promoted:
            run.champion = outcome.challenger
            record.promoted, record.serving_model = True, outcome.tag
        if record.alarm:
            run.pending = (record, outcome.challenger.bundle, previous.bundle, outcome.promoted)
        record.stage_seconds["retrain"] = time.perf_counter() - checked_at
        record.retrain_seconds = outcome.seconds
    run.records.append(record)
    return record, quality, drift


def sum_by_key(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key (in first-seen order), the sum over `parts` of its values, rounded to 0.1."""
    return {
        key: round(sum(p.get(key, 0.0) for p in parts), 1)
        for key in dict.fromkeys(k for p in parts for k in p)
    }


def summarise(records: list[DayRecord], k: int) -> dict:
    """A policy's figures over the replay: mean prequential quality, retrains, alarms, false alarms, time."""
    scored = [r for r in records if r.ndcg is not None]
    return {
        f"mean_recall@{k}": mean_or_none([r.recall for r in scored]),
        f"mean_ndcg@{k}": mean_or_none([r.ndcg for r in scored]),
        "retrains": sum(r.retrained for r in records),
        "promotions": sum(r.promoted for r in records),
        "alarms": sum(r.alarm for r in records),
        "judged_alarms": sum(r.false_alarm is not None for r in records),
        "false_alarms": sum(bool(r.false_alarm) for r in records),
        "seconds": round(sum(r.seconds for r in records), 1),
        "stage_seconds": sum_by_key([r.stage_seconds for r in records]),
        "retrain_seconds": sum_by_key([r.retrain_seconds for r in records]),
        "days": len(records),
        "scored_days": len(scored),
    }


def day_line(record: DayRecord, k: int) -> str:
    """The progress line of one policy's day."""
    quality = (
        "no returning household"
        if record.ndcg is None
        else f"recall@{k} {record.recall:.4f} ndcg@{k} {record.ndcg:.4f}"
    )
    share = "  - " if record.drift_share is None else f"{record.drift_share:.2f}"
    line = f"{record.day} {record.policy:6s} {record.users:5d} households  {quality}  drift {share}"
    line += " ALARM" if record.alarm else "      "
    if record.retrained:
        line += f"  retrained ({record.retrain_reason})" + (
            " PROMOTED" if record.promoted else " kept champion"
        )
    return line + f"  {record.seconds:.1f}s"


def _stamp(day: date):
    from monitoring.history import day_timestamp

    return day_timestamp(day)


# ---------------------------------------------------------------- outputs


def markdown_table(result: dict, command: str | None = None) -> str:
    """The policies side by side, as Markdown (written by the command, with the command shown)."""
    k = result["k"]
    lines = [
        f"# Retraining policies replayed: {result['source']}, {result['start']}..{result['end']}",
        "",
        "Written by `recflow replay`; do not edit by hand. Prequential next-basket quality: each day's "
        "returning households are scored by the champion serving that day, before it learns the day.",
        "",
        f"| policy | mean Recall@{k} | mean NDCG@{k} | retrains | promotions | alarms | judged alarms | false alarms | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in result["policies"].items():
        recall, ndcg = p[f"mean_recall@{k}"], p[f"mean_ndcg@{k}"]
        lines.append(
            f"| {name} | {'-' if recall is None else f'{recall:.4f}'} | {'-' if ndcg is None else f'{ndcg:.4f}'} "
            f"| {p['retrains']} | {p['promotions']} | {p['alarms']} | {p['judged_alarms']} | {p['false_alarms']} "
            f"| {p['seconds']:.0f} |"
        )
    lines += [
        "",
        f"Training window {result['train_days']} days, drift cool-down {result['cooldown']} days after a retrain, "
        + (
            f"drift retrains {result['max_age']} days after its last retrain without an alarm (reason age). "
            if result.get("max_age")
            else "drift retrains on alarms only. "
        )
        + "A false alarm is an alarm day whose retrained model does not beat the model that served it on "
        "the next day's NDCG (see `flows/policies.py`); alarms without a retrain are not judged.",
    ]
    if "train" in result:
        seen = "on" if result.get("exclude_purchased") else "off (purchased items may be recommended again)"
        lines += [
            "",
            f"Two-tower sampled softmax {result['train']['negatives']} negatives, at most "
            f"{result['train']['max_epochs']} epochs; seen filter {seen}. Validation of the replayed days, "
            f"one Great Expectations run a day: {result['validation']['rows']:,} rows in "
            f"{result['validation']['seconds']} s ({result['validation']['rows_per_second']} rows/s). Whole "
            f"run {result.get('seconds', 0):.0f} s.",
        ]
    if command:
        lines += ["", "Command:", "", f"    {command}"]
    return "\n".join(lines) + "\n"


def write_chart(result: dict, path: Path) -> Path:
    """PNG: NDCG@K per day per policy, alarms (red dots) and retrains (crosses; filled when promoted)."""
    from recflow.charts import pyplot, save_figure

    plt = pyplot()

    k = result["k"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=[3, 1])
    names = list(result["policies"])
    for name, style in zip(names, ("-", "--", ":", "-."), strict=False):
        days = [d for d in result["days"] if d["policy"] == name]
        x = [pd.Timestamp(d["day"]) for d in days]
        y = [d[f"ndcg@{k}"] for d in days]
        (line,) = top.plot(
            x,
            y,
            linestyle=style,
            linewidth=1.2,
            label=f"{name} (mean {result['policies'][name][f'mean_ndcg@{k}'] or 0:.4f})",
        )
        retrained = [
            (xi, yi, d["promoted"])
            for xi, yi, d in zip(x, y, days, strict=True)
            if d["retrained"] and yi is not None
        ]
        top.scatter(
            [r[0] for r in retrained if r[2]],
            [r[1] for r in retrained if r[2]],
            marker="X",
            color=line.get_color(),
            zorder=3,
        )
        top.scatter(
            [r[0] for r in retrained if not r[2]],
            [r[1] for r in retrained if not r[2]],
            marker="x",
            color=line.get_color(),
            zorder=3,
        )
        shares = [float("nan") if d["drift_share"] is None else d["drift_share"] for d in days]
        bottom.plot(x, shares, linestyle=style, linewidth=1, color=line.get_color())
        alarms = [(xi, d["drift_share"]) for xi, d in zip(x, days, strict=True) if d["alarm"]]
        bottom.scatter([a[0] for a in alarms], [a[1] for a in alarms], color="red", s=12, zorder=3)
    top.set_ylabel(f"prequential NDCG@{k}")
    top.legend(loc="lower left", fontsize=8)
    top.set_title(
        f"{result['source']} {result['start']}..{result['end']}: quality per policy; x = retrain (X promoted)"
    )
    bottom.set_ylabel("drift share")
    bottom.axhline(y=0, color="grey", linewidth=0.5)
    bottom.set_title("drift share of each policy's champion; red = alarm", fontsize=9)
    fig.autofmt_xdate()
    fig.tight_layout()
    save_figure(fig, path)
    return path


def run_replay(
    settings: Settings,
    policy: str,
    json_out: Path,
    start: date | None = None,
    end: date | None = None,
    train_days: int = 28,
    cooldown: int = 7,
    max_age: int | None = None,
    feature_days: int = 31,
    holdout_days: int = REPLAY_HOLDOUT_DAYS,
    command: str | None = None,
    prepare_ahead: bool = True,
) -> dict:
    """Run the replay flow for `policy` (`policy_names`), write the JSON (with several policies also a
    Markdown table, a PNG chart and the first policy's days in the dashboards); print the summary."""
    policies = policy_names(policy)
    (settings.home / "prefect").mkdir(parents=True, exist_ok=True)  # PREFECT_HOME of the CLI
    t = time.perf_counter()
    result = replay_flow(
        settings,
        policies,
        start=start,
        end=end,
        train_days=train_days,
        feature_days=feature_days,
        cooldown=cooldown,
        max_age=max_age,
        holdout_days=holdout_days,
        dashboards=len(policies) > 1,
        progress=json_out.with_suffix(".partial.json"),
        prepare_ahead=prepare_ahead,
    )
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["command"] = command
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    json_out.with_suffix(".partial.json").unlink(missing_ok=True)  # the whole run is in the JSON now
    written = [json_out]
    if len(policies) > 1:
        written.append(write_chart(result, json_out.with_suffix(".png")))
        md = json_out.with_suffix(".md")
        md.write_text(markdown_table(result, command))
        written.append(md)
    for name, summary in result["policies"].items():
        print(f"{name}: {json.dumps(summary)}")
    v = result["validation"]
    print(
        f"validation: {v['rows']:,} rows in {v['seconds']} s ({v['rows_per_second']} rows/s, "
        f"{v['days_per_pass']} days per pass)"
    )
    print(f"total {result['seconds']:.0f} s; wrote {', '.join(map(str, written))}")
    return result
