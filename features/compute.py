"""Feature tables computed from the validated store: DataFrame-in, DataFrame-out aggregations, saved as parquet.

Every table has the join key (`user_id` or `item_id`) and an `event_timestamp`; the rule for that
timestamp is what makes point-in-time joins correct:

* snapshots of the catalogue and the users (`user_profile`, `item_attributes`) of batch day d are
  stamped at the start of day d in the shop's time zone (00:00 UTC for the UTC sources): they
  describe the state during that day. Batches hold upserts; the state of day d is the latest row
  per key up to day d (`snapshots`);
* changes (`item_promotions`, `user_demographics`) have one row per change of a key's values,
  stamped at the start of the batch day that brought it: a promotion is known from its week's first
  day, not before; their views never expire (a row holds until the next one);
* behavioural aggregates (`user_activity`, `item_popularity`) cover events up to the end of day d and
  are stamped 00:00 UTC of day d + 1, when the day is complete;
* `user_sequence` has one row per interaction (a run of events on one item, see `interactions`),
  stamped with its first event's timestamp and INCLUDING it.

The group-bys (`daily_counts`, `daily_categories`, `event_sequences`) accept a pandas or a Dask
DataFrame; the rolling windows run on the small per-day result with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recflow.data.batches import day_bounds, list_batches, read_events, read_upserts
from recflow.data.schema import EVENT_TYPES, KEYS
from recflow.settings import Settings

TIMESTAMP = "event_timestamp"
WINDOWS: tuple[int, ...] = (1, 7, 30)
COUNTS: dict[str, str] = {"view": "views", "add_to_cart": "carts", "purchase": "purchases"}
ONE_DAY = pd.Timedelta(days=1)
ONE_MICROSECOND = pd.Timedelta(microseconds=1)
TABLE_NAMES: tuple[str, ...] = (
    "user_profile",
    "user_activity",
    "user_sequence",
    "item_attributes",
    "item_popularity",
    "item_promotions",
    "user_demographics",
)
PROMOTION_COLUMNS: tuple[str, ...] = ("promo_display_stores", "promo_mailer_stores")
"""Item columns of the raw contract that `item_promotions` carries (null: the source has none)."""
DEMOGRAPHIC_COLUMNS: tuple[str, ...] = (
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
)
"""User columns of the raw contract that `user_demographics` carries (null: unknown)."""


ITEM_POPULARITY_COUNTS: tuple[str, ...] = (
    "item_views_1d",
    "item_views_7d",
    "item_views_30d",
    "item_carts_7d",
    "item_carts_30d",
    "item_purchases_1d",
    "item_purchases_7d",
    "item_purchases_30d",
)
"""Windowed item counts in the `item_popularity` table (the feature view declares the same columns)."""


@dataclass(frozen=True)
class FeatureTables:
    """The feature tables written to disk: where they are, how many rows, the newest timestamp."""

    paths: dict[str, Path]
    rows: dict[str, int]
    end: pd.Timestamp

    def path(self, name: str) -> Path:
        return self.paths[name]


def table_path(settings: Settings, name: str) -> Path:
    """Absolute path of the parquet file of feature table `name`."""
    return (settings.feature_repo_dir / "data" / f"{name}.parquet").resolve()


# ---------------------------------------------------------------- group-bys (pandas or Dask)


def daily_counts(events: Any, key: str) -> Any:
    """Events per (`key`, day) and event type: columns `key`, `day`, views, carts, purchases.

    Works on a pandas or a Dask DataFrame (only `assign` and a `groupby().sum()`).
    """
    flags = {name: (events["event_type"] == kind).astype("int64") for kind, name in COUNTS.items()}
    frame = events[[key, "timestamp"]].assign(day=events["timestamp"].dt.floor("D"), **flags)
    return frame.drop(columns="timestamp").groupby([key, "day"]).sum().reset_index()


def daily_categories(events: Any, item_category: pd.DataFrame) -> Any:
    """Distinct (user_id, day, category) triples: the categories a user touched each day."""
    frame = events[["user_id", "item_id", "timestamp"]].merge(item_category, on="item_id", how="inner")
    frame = frame.assign(day=frame["timestamp"].dt.floor("D"))[["user_id", "day", "category"]]
    return frame.drop_duplicates()


def daily_last_event(events: Any) -> Any:
    """The timestamp of each user's last event of each day: columns user_id, day, last_ts."""
    frame = events[["user_id", "timestamp"]].assign(day=events["timestamp"].dt.floor("D"))
    return frame.groupby(["user_id", "day"])["timestamp"].max().rename("last_ts").reset_index()


def interactions(events: pd.DataFrame) -> pd.DataFrame:
    """Each user's events in time order, with every run of events on one item collapsed into one interaction.

    A view, then an add-to-cart, then a purchase of the same item is one interaction with the user,
    not three: it keeps the run's first timestamp and its strongest event type (purchase >
    add_to_cart > view, the order of `recflow.data.schema.EVENT_TYPES`). This is what the models'
    sequences are made of (the `user_sequence` feature, training histories and labels), so that a
    funnel does not fill a user's recent items with one product.

    Returns:
        `user_id`, `item_id` (str), `timestamp` (UTC), `event_type`, sorted by user then time.
    """
    columns = ["user_id", "item_id", "timestamp", "event_type"]
    if events.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).assign(
            timestamp=pd.Series(dtype="datetime64[ns, UTC]")
        )
    ev = events[["user_id", "item_id", "timestamp", "event_type"]].iloc[_user_time_order(events)]
    users = ev["user_id"].astype(str).to_numpy()
    items = ev["item_id"].astype(str).to_numpy()
    strength = pd.Categorical(ev["event_type"], categories=EVENT_TYPES).codes
    new_run = np.ones(len(ev), bool)
    new_run[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    run = np.cumsum(new_run) - 1
    strongest = np.zeros(run[-1] + 1, dtype=np.int64)
    np.maximum.at(strongest, run, strength)
    first = np.flatnonzero(new_run)
    return pd.DataFrame(
        {
            "user_id": users[first],
            "item_id": items[first],
            # `.array`, not `.to_numpy()`: a time-zone-aware column's numpy view is one object per row (slow)
            "timestamp": pd.to_datetime(ev["timestamp"], utc=True, cache=False).array[first],
            "event_type": np.asarray(EVENT_TYPES, dtype=object)[strongest],
        }
    )


def _user_time_order(events: pd.DataFrame) -> np.ndarray:
    """Positions that order `events` by user, then time, then event id, as a stable `sort_values` would.

    Validated events come in time order (batches by day, each by time and event id); then a stable
    sort of the user ids alone gives the same order, several times faster than sorting by three keys
    (the replay orders 91 days of events every day). Any other input is sorted by the three keys.
    """
    keys = ["user_id", "timestamp", "event_id"] if "event_id" in events.columns else ["user_id", "timestamp"]
    ts = pd.to_datetime(events["timestamp"], utc=True, cache=False).array.asi8
    step = np.diff(ts)
    in_time_order = bool((step >= 0).all()) and not events["timestamp"].isna().any()
    if in_time_order and "event_id" in events.columns:
        ids = events["event_id"]
        tied = np.flatnonzero(step == 0)
        if ids.isna().any():
            in_time_order = False
        elif len(tied):
            values = ids.to_numpy(dtype=object)
            in_time_order = bool((values[tied + 1] >= values[tied]).all())
    codes, _ = pd.factorize(events["user_id"], sort=True)
    if not in_time_order or (codes < 0).any():  # out of order, or missing users (which sort last)
        return events.reset_index(drop=True).sort_values(keys, kind="stable").index.to_numpy()
    return np.argsort(codes, kind="stable")


def event_sequences(events: pd.DataFrame, length: int) -> pd.DataFrame:
    """`user_sequence` rows: after each interaction, the user's last `length` item ids, newest LAST.

    `events` must hold every event of the users it contains (any order); runs of events on one item
    are one interaction (`interactions`). The value of a row INCLUDES the interaction at its
    `event_timestamp` (the run's first event); when a user has several interactions at the very same
    timestamp only the last row is kept (it includes all of them).
    """
    if events.empty:
        return pd.DataFrame(
            {"user_id": pd.Series(dtype="string"), TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]")}
        ).assign(recent_items=pd.Series(dtype=object))
    ev = interactions(events)
    users = ev["user_id"].to_numpy()
    items = ev["item_id"].to_numpy()
    n = len(ev)
    position = np.arange(n)
    new_user = np.ones(n, bool)
    new_user[1:] = users[1:] != users[:-1]
    start = np.maximum.accumulate(np.where(new_user, position, 0))
    low = np.maximum(start, position - length + 1)
    stamps = pd.to_datetime(ev["timestamp"], utc=True, cache=False).astype("datetime64[ns, UTC]")
    # of several interactions at one timestamp only the last row is kept: build only the kept lists
    ns = stamps.to_numpy(dtype="datetime64[ns]").view(np.int64)
    last = np.ones(n, bool)
    last[:-1] = (users[1:] != users[:-1]) | (ns[1:] != ns[:-1])
    kept = np.flatnonzero(last)
    sequences = [items[lo : hi + 1].tolist() for lo, hi in zip(low[kept], kept, strict=True)]
    out = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype("string").to_numpy()[kept],
            TIMESTAMP: stamps.array[kept],  # tz-aware as it is (to_numpy makes Timestamp objects)
            "recent_items": sequences,
        }
    )
    return out


# ---------------------------------------------------------------- windows over days (numpy)


def _dense(daily: pd.DataFrame, key: str, entities: pd.Index, days: pd.DatetimeIndex, cols: list[str]):
    """A (entity, day, column) array of the per-day values, zeros where nothing happened."""
    out = np.zeros((len(entities), len(days), len(cols)), dtype=np.float64)
    e = entities.get_indexer(daily[key])
    d = days.get_indexer(pd.to_datetime(daily["day"], utc=True, cache=False))
    keep = (e >= 0) & (d >= 0)
    out[e[keep], d[keep]] = daily[cols].to_numpy(dtype=np.float64)[keep]
    return out


def _window_sums(cum: np.ndarray, window: int, first: int = 0) -> np.ndarray:
    """Sums over the `window` days ending at each day from `first` on (inclusive), along axis 1.

    `cum` is the running sum along the day axis with a leading zero column (`_running`).
    """
    hi = np.arange(first, cum.shape[1] - 1) + 1
    return cum[:, hi] - cum[:, np.maximum(hi - window, 0)]


def _running(dense: np.ndarray) -> np.ndarray:
    """Running sums of `dense` along axis 1, with a leading zero column."""
    return np.concatenate([np.zeros_like(dense[:, :1]), dense.cumsum(axis=1)], axis=1)


def _distinct_in_window(
    pairs: pd.DataFrame, key: str, entities: pd.Index, days: pd.DatetimeIndex, window: int
):
    """Per (entity, day): how many distinct `category` values occurred in the `window` days ending that day.

    Each (entity, category, day) occurrence covers the days up to the next occurrence or `window`
    days later, whichever comes first; the coverage is summed with a difference array.
    """
    n_days = len(days)
    if pairs.empty:
        return np.zeros((len(entities), n_days))
    p = pairs.assign(
        e=entities.get_indexer(pairs[key]),
        d=days.get_indexer(pd.to_datetime(pairs["day"], utc=True, cache=False)),
    )
    p = p[(p["e"] >= 0) & (p["d"] >= 0)].sort_values(["e", "category", "d"])
    nxt = p.groupby(["e", "category"])["d"].shift(-1).fillna(np.inf).to_numpy()
    end = np.minimum(nxt, p["d"].to_numpy() + window).astype(np.int64)
    diff = np.zeros((len(entities), n_days + window + 1))
    np.add.at(diff, (p["e"].to_numpy(), p["d"].to_numpy()), 1.0)
    np.add.at(diff, (p["e"].to_numpy(), end), -1.0)
    return diff.cumsum(axis=1)[:, :n_days]


def _windowed(
    daily: pd.DataFrame,
    key: str,
    entities: pd.Index,
    days: pd.DatetimeIndex,
    prefix: str = "",
    first: int = 0,
):
    """Columns `{prefix}{count}_{w}d` for every count and window, as (entity, day) arrays over the days
    from `first` on (the windows still reach back over every day)."""
    cols = list(COUNTS.values())
    cum = _running(_dense(daily, key, entities, days, cols))
    out = {}
    for w in WINDOWS:
        sums = _window_sums(cum, w, first)
        for i, name in enumerate(cols):
            out[f"{prefix}{name}_{w}d"] = sums[:, :, i]
    return out


def _first_day(days: pd.DatetimeIndex, newest_days: int | None) -> int:
    """Position of the first of the `newest_days` newest days (0: every day)."""
    return 0 if newest_days is None else max(len(days) - newest_days, 0)


def _grid_frame(key: str, entities: pd.Index, days: pd.DatetimeIndex, columns: dict[str, np.ndarray], mask):
    """Long (entity, day) frame of the dense arrays, keeping the cells where `mask` is true."""
    e, d = np.nonzero(mask)
    frame = pd.DataFrame({key: pd.array(entities.to_numpy()[e], dtype="string"), "day": days[d]})
    for name, values in columns.items():
        frame[name] = values[e, d]
    return frame


# ---------------------------------------------------------------- the feature tables


def snapshots(root: Path, table: str, timezone: str = "UTC", newest_days: int | None = None) -> pd.DataFrame:
    """The catalogue table (`items` or `users`) as of every batch day (or of the `newest_days` newest).

    Batches hold upserts (the rows new or changed that day): the state of day d is the latest row per
    key over the batches up to d, so a key has one row for every day from its first batch on (a
    source of full daily snapshots gives back exactly its own tables).

    Returns:
        The contract's columns plus `day` (UTC midnight of the batch date, the day grid of the
        behavioural tables) and `known_from` (the start of that day in `timezone`, as UTC).

    Raises:
        FileNotFoundError: when `root` holds no batch.
    """
    batches = list_batches(root)
    if not batches:
        raise FileNotFoundError(f"no batches under {root}: run ingestion and validation first")
    key = KEYS[table]
    days = [b.day for b in batches]
    rows = read_upserts(root, table).drop_duplicates([key, "day"], keep="last")
    at = pd.Index(days).get_indexer(rows["day"])
    codes, _ = pd.factorize(rows[key])
    order = np.lexsort((at, codes))
    at, codes = at[order], codes[order]
    until = np.append(at[1:], len(days))  # a row holds until the key's next row, or to the last day
    until[np.append(codes[1:] != codes[:-1], True)] = len(days)
    lengths = until - at
    picked = np.repeat(order, lengths)
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    day_index = np.repeat(at, lengths) + offset
    if newest_days is not None:  # only the newest days' states, the rows a lookup at the newest cut reads
        wanted = day_index >= len(days) - newest_days
        picked, day_index = picked[wanted], day_index[wanted]
    grid = pd.DatetimeIndex([pd.Timestamp(d, tz="UTC") for d in days])
    starts = pd.DatetimeIndex([day_bounds(d, timezone)[0] for d in days])
    out = rows.drop(columns="day").iloc[picked].reset_index(drop=True)
    out["day"], out["known_from"] = grid[day_index], starts[day_index]
    return out.sort_values(["day", key], kind="stable").reset_index(drop=True)


def changes(root: Path, table: str, columns: tuple[str, ...], timezone: str = "UTC") -> pd.DataFrame:
    """The rows of a catalogue table that change `columns` for their key, with `known_from`.

    Consecutive rows of a key with the same values collapse to the first (a full-snapshot source
    repeats every row daily); a key's first row is dropped when all of `columns` are null (the
    source has no such data).
    """
    key = KEYS[table]
    rows = read_upserts(root, table)
    starts = {d: day_bounds(d, timezone)[0] for d in rows["day"].unique()}
    rows = rows.assign(known_from=rows["day"].map(starts)).sort_values([key, "day"], kind="stable")
    values = rows[list(columns)].astype(object)
    codes = pd.factorize(rows[key])[0]
    first = np.append(True, codes[1:] != codes[:-1])
    text = values.where(values.notna(), "\0").astype(str).to_numpy()
    same = np.append(False, (text[1:] == text[:-1]).all(axis=1))
    empty = values.isna().all(axis=1).to_numpy(dtype=bool)
    keep = (first & ~empty) | (~first & ~same)
    return rows[keep].reset_index(drop=True)


def user_profile(users: pd.DataFrame) -> pd.DataFrame:
    """`user_profile` rows from the user snapshots: region, age_band, tenure_days (stamped day d 00:00)."""
    tenure = (users["day"] - pd.to_datetime(users["signup_date"], utc=True)).dt.days.clip(lower=0)
    return pd.DataFrame(
        {
            "user_id": users["user_id"].astype("string"),
            TIMESTAMP: _ts(users["known_from"] if "known_from" in users else users["day"]),
            "region": users["region"].astype("string"),
            "age_band": users["age_band"].astype("string"),
            "tenure_days": tenure.astype("int64"),
        }
    ).drop_duplicates(["user_id", TIMESTAMP], keep="last")


def item_attributes(items: pd.DataFrame) -> pd.DataFrame:
    """`item_attributes` rows from the catalogue snapshots: category, brand, price, age_days (day d 00:00)."""
    age = (items["day"] - pd.to_datetime(items["created_date"], utc=True)).dt.days.clip(lower=0)
    return pd.DataFrame(
        {
            "item_id": items["item_id"].astype("string"),
            TIMESTAMP: _ts(items["known_from"] if "known_from" in items else items["day"]),
            "category": items["category"].astype("string"),
            "brand": items["brand"].astype("string"),
            "price": items["price"].astype("float64"),
            "age_days": age.astype("int64"),
        }
    ).drop_duplicates(["item_id", TIMESTAMP], keep="last")


def item_promotions(changed: pd.DataFrame) -> pd.DataFrame:
    """`item_promotions` rows from the promotion changes (see `changes`), stamped when they became known.

    `on_promotion` is 1 when the item is on display or in the mailer in at least one store.
    """
    display = changed["promo_display_stores"].fillna(0).round().astype("int64")
    mailer = changed["promo_mailer_stores"].fillna(0).round().astype("int64")
    frame = pd.DataFrame(
        {
            "item_id": changed["item_id"].astype("string"),
            TIMESTAMP: _ts(changed["known_from"]),
            "promo_display_stores": display,
            "promo_mailer_stores": mailer,
            "on_promotion": ((display > 0) | (mailer > 0)).astype("int64"),
        }
    )
    return _sorted(frame.drop_duplicates(["item_id", TIMESTAMP], keep="last"), "item_id")


def user_demographics(changed: pd.DataFrame) -> pd.DataFrame:
    """`user_demographics` rows from the demographics changes (see `changes`); unknown values are "unknown"."""
    frame = pd.DataFrame(
        {"user_id": changed["user_id"].astype("string"), TIMESTAMP: _ts(changed["known_from"])}
    )
    for column in DEMOGRAPHIC_COLUMNS:
        frame[column] = changed[column].astype("string").fillna("unknown")
    return _sorted(frame.drop_duplicates(["user_id", TIMESTAMP], keep="last"), "user_id")


def user_activity(
    counts: pd.DataFrame,
    categories: pd.DataFrame,
    last_events: pd.DataFrame,
    days: pd.DatetimeIndex,
    newest_days: int | None = None,
) -> pd.DataFrame:
    """`user_activity` daily snapshots (stamped day d + 1 00:00) from the per-day group-bys.

    A user has a row for every day from their first event on; windows are calendar days ending
    with day d (1d = day d only).
    """
    users = pd.Index(sorted(counts["user_id"].astype(str).unique()))
    first = _first_day(days, newest_days)
    columns = _windowed(counts, "user_id", users, days, first=first)
    columns["distinct_categories_30d"] = _distinct_in_window(categories, "user_id", users, days, 30)[
        :, first:
    ]
    last = _dense(
        last_events.assign(last_s=_seconds(last_events["last_ts"])), "user_id", users, days, ["last_s"]
    )[:, :, 0]
    last = np.fmax.accumulate(np.where(last > 0, last, np.nan), axis=1)[:, first:]
    snapshot_s = _seconds(pd.Series(days[first:] + ONE_DAY)).to_numpy()
    columns["days_since_last_event"] = (snapshot_s[None, :] - last) / 86_400.0
    columns["last_event_unix_s"] = last
    frame = _grid_frame("user_id", users, days[first:], columns, ~np.isnan(last))
    frame[TIMESTAMP] = _ts(frame.pop("day") + ONE_DAY)
    for name in columns:
        if name not in ("days_since_last_event", "last_event_unix_s"):
            frame[name] = frame[name].round().astype("int64")
    return frame[["user_id", TIMESTAMP, *columns]]


def item_popularity(
    counts: pd.DataFrame, on_sale: pd.DataFrame, days: pd.DatetimeIndex, newest_days: int | None = None
) -> pd.DataFrame:
    """`item_popularity` daily snapshots (stamped day d + 1 00:00) for the items on sale on day d.

    Conversion is purchases / views over the window (0 without views).
    """
    items = pd.Index(sorted(set(on_sale["item_id"].astype(str)) | set(counts["item_id"].astype(str))))
    first = _first_day(days, newest_days)
    # the windows of the items with events; the rest of the catalogue (most of a grocery one) counts 0
    active = pd.Index(sorted(set(counts["item_id"].astype(str))))
    at = items.get_indexer(active)
    windowed = {}
    for name, values in _windowed(counts, "item_id", active, days, prefix="item_", first=first).items():
        windowed[name] = np.zeros((len(items), values.shape[1]), values.dtype)
        windowed[name][at] = values
    columns = {name: windowed[name] for name in ITEM_POPULARITY_COUNTS}
    for w in (7, 30):
        views, buys = windowed[f"item_views_{w}d"], windowed[f"item_purchases_{w}d"]
        columns[f"item_conversion_{w}d"] = np.divide(buys, views, out=np.zeros_like(buys), where=views > 0)
    mask = np.zeros((len(items), len(days)), bool)
    mask[items.get_indexer(on_sale["item_id"].astype(str)), days.get_indexer(on_sale["day"])] = True
    frame = _grid_frame("item_id", items, days[first:], columns, mask[:, first:])
    frame[TIMESTAMP] = _ts(frame.pop("day") + ONE_DAY)
    for name in columns:
        if "conversion" not in name:
            frame[name] = frame[name].round().astype("int64")
    return frame[["item_id", TIMESTAMP, *columns]]


def compute_tables(
    events: Any,
    users: pd.DataFrame,
    items: pd.DataFrame,
    days: pd.DatetimeIndex,
    sequence_length: int,
    compute=lambda frame: frame,
    newest_days: int | None = None,
) -> dict[str, pd.DataFrame]:
    """All feature tables from events (pandas, or Dask with `compute=dask.compute`-like) and snapshots.

    Args:
        events: validated events (pandas or Dask DataFrame).
        users: user snapshots with their batch `day` (see `snapshots`).
        items: item snapshots with their batch `day`.
        days: the batch days (UTC midnight), oldest first.
        sequence_length: N of `user_sequence.recent_items`.
        compute: turns a lazy frame into pandas (identity for pandas).
        newest_days: keep only the daily rows (`user_activity`, `item_popularity`) of the newest days;
            their windows still cover every event. None: every day.
    """
    item_category = items.drop_duplicates("item_id", keep="last")[["item_id", "category"]]
    user_counts = compute(daily_counts(events, "user_id"))
    categories = compute(daily_categories(events, item_category))
    last_events = compute(daily_last_event(events))
    item_counts = compute(daily_counts(events, "item_id"))
    sequences = compute(_sequences(events, sequence_length))
    return {
        "user_profile": user_profile(users),
        "user_activity": user_activity(user_counts, categories, last_events, days, newest_days),
        "user_sequence": _sorted(sequences, "user_id"),
        "item_attributes": item_attributes(items),
        "item_popularity": item_popularity(item_counts, items[["item_id", "day"]], days, newest_days),
    }


def _sequences(events: Any, length: int) -> Any:
    if isinstance(events, pd.DataFrame):
        return event_sequences(events, length)
    meta = event_sequences(events.head(0), length)
    return events.shuffle("user_id").map_partitions(event_sequences, length, meta=meta)


def compute_features(settings: Settings, newest_days: int | None = None) -> FeatureTables:
    """Compute every feature table from `settings.validated_dir` and write them as parquet.

    Runs on pandas, or on a local Dask cluster when `settings.features.engine == "dask"`.

    `newest_days` keeps only the newest days' rows of the daily tables (the catalogue and user
    snapshots, `user_activity`, `item_popularity`; their windows still read every validated event;
    interactions and change tables stay whole): a store that only answers lookups as of the newest
    day's start, such as a replay's serving store, gets the same answers for far fewer rows. It needs
    at least 2: a behavioural row is stamped the day after its grid day.

    Returns:
        The paths, row counts and newest timestamp of the tables.

    Raises:
        FileNotFoundError: when the validated store holds no batch.
    """
    root = settings.validated_dir
    batches = list_batches(root)
    if not batches:
        raise FileNotFoundError(f"no validated batches under {root}: run validation first")
    days = pd.DatetimeIndex([pd.Timestamp(b.day, tz="UTC") for b in batches])
    zone = settings.data.shop_timezone
    if newest_days is not None and newest_days < 2:
        raise ValueError(f"newest_days={newest_days}: a lookup at the newest day's start needs at least 2")
    users = snapshots(root, "users", zone, newest_days)
    items = snapshots(root, "items", zone, newest_days)
    length = settings.features.sequence_length
    if settings.features.engine == "dask":
        tables = _compute_on_dask(
            settings, [b.table("events") for b in batches], users, items, days, newest_days
        )
    else:
        tables = compute_tables(read_events(root), users, items, days, length, newest_days=newest_days)
    tables["item_promotions"] = item_promotions(changes(root, "items", PROMOTION_COLUMNS, zone))
    tables["user_demographics"] = user_demographics(changes(root, "users", DEMOGRAPHIC_COLUMNS, zone))
    end = max(days[-1] + ONE_DAY, day_bounds(batches[-1].day, zone)[1])
    return write_tables(settings, tables, end=end)


def _compute_on_dask(
    settings: Settings, event_files: list[Path], users, items, days, newest_days: int | None = None
) -> dict[str, pd.DataFrame]:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    n = settings.features.dask_workers
    with (
        LocalCluster(n_workers=n, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        events = dd.read_parquet([str(p) for p in event_files])
        return compute_tables(
            events,
            users,
            items,
            days,
            settings.features.sequence_length,
            compute=lambda f: client.compute(f).result(),
            newest_days=newest_days,
        )


def write_tables(settings: Settings, tables: dict[str, pd.DataFrame], end: pd.Timestamp) -> FeatureTables:
    """Write the feature tables as parquet under `feature_repo_dir/data` (atomically, file by file)."""
    out_dir = settings.feature_repo_dir / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, rows = {}, {}
    for name in TABLE_NAMES:
        path = table_path(settings, name)
        tmp = path.with_suffix(".tmp")
        _microseconds(tables[name]).to_parquet(tmp, index=False)
        tmp.replace(path)
        paths[name], rows[name] = path, len(tables[name])
    return FeatureTables(paths=paths, rows=rows, end=end)


def _microseconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps stored at microsecond precision: DuckDB (the offline store) cannot cast ns-precision
    TIMESTAMPTZ columns in its point-in-time SQL."""
    stamps = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    return frame.astype({c: "datetime64[us, UTC]" for c in stamps}) if stamps else frame


def training_timestamps(label_timestamps: pd.Series) -> pd.Series:
    """Entity timestamps for training rows: the label event's timestamp minus one microsecond.

    `user_sequence` rows include the event at their own timestamp, so querying at the label's
    timestamp would put the label item into its own input sequence; one microsecond earlier it
    cannot, while every earlier event (and every daily snapshot) is still visible.
    """
    return pd.to_datetime(label_timestamps, utc=True, cache=False) - ONE_MICROSECOND


def _ts(values: pd.Series | pd.DatetimeIndex) -> pd.api.extensions.ExtensionArray:
    """UTC nanosecond timestamps as an array (no index: assigned by position).

    A `DatetimeArray`, not `.to_numpy()`: a time-zone-aware column's NumPy form is an object array of
    `Timestamp`s, built one at a time (15 s for a month of a 92k-product catalogue's daily rows).
    """
    # cache=False: to_datetime's cache test iterates a sample of the values as Timestamps, one at a time
    return pd.Series(pd.to_datetime(values, utc=True, cache=False)).astype("datetime64[ns, UTC]").array


def _seconds(values: pd.Series) -> pd.Series:
    ts = pd.to_datetime(values, utc=True, cache=False).astype("datetime64[ns, UTC]")
    return (ts - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values([key, TIMESTAMP], kind="stable").reset_index(drop=True)


__all__ = [
    "FeatureTables",
    "compute_features",
    "compute_tables",
    "table_path",
    "training_timestamps",
]
