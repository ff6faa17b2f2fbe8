"""The platform's evaluation and training data: validated interactions cut in time, point-in-time features.

One rule serves training, the promotion gate and monitoring alike (`held_out`): cut the validated
interactions (`features.compute.interactions`: runs of events on one item collapsed, the strongest
event type kept) at an instant; the users who come back after it are scored from their history
before it, what they had bought before it is never recommended (the seen filter, as served), and
the items they turned to after it are the targets. Their online features, and every item's, come
from Feast's offline store *as of the cut* (`get_historical_features`), so nothing after it leaks in.

For training (`build_training_data`) the cut is the first of the newest `data.holdout_days` days: the
histories before it fit the models, the held-out users choose and report them, and the serving
package is refit on every interaction through the newest day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
from feast import FeatureStore

from features.compute import interactions
from features.store import RANKER_SERVICE, historical_features, ranker_features
from models.baselines import popular_lists
from models.buy_again import Bought
from models.catalogue import Catalogue
from models.pipeline import FitData
from recflow.data.batches import read_events, read_snapshot, read_upserts
from recflow.settings import Settings

log = logging.getLogger(__name__)
RETRIEVAL_SERVICE = "retrieval_v1"
POPULAR_LIST_LENGTH = 100


@dataclass(frozen=True)
class TimeSplit:
    """Where the history was cut: the first held-out instant and the days on either side."""

    cut: pd.Timestamp
    first_day: date
    last_fit_day: date
    last_day: date

    def windows(self) -> dict:
        """The data and validation windows, for the packages' metadata."""
        return {
            "data_window": {"start": self.first_day.isoformat(), "end": self.last_day.isoformat()},
            "validation_window": {
                "start": (self.last_fit_day + timedelta(days=1)).isoformat(),
                "end": self.last_day.isoformat(),
                "fit_end": self.last_fit_day.isoformat(),
            },
        }


@dataclass(frozen=True)
class HeldOut:
    """Users who came back after a cut: what they had done before it and what they did after (item ids).

    Attributes:
        users: user ids.
        history: each user's interactions before the cut, oldest first (the query input).
        exclude: items never to recommend to them at the cut (what they had bought, when the seen
            filter is on).
        relevant: the distinct items they turned to after the cut (in order of first interaction).
        relevant_weights: the event-type weight of each relevant item (its strongest event).
        regions: each user's region (cold-start and backfill lists).
        user_features: the users' online features as of the cut (index user_id; ranker inputs).
        item_features: every item's online features as of the cut (index item_id).
        bought: each user's purchases before the cut as (item id, days before the cut), the buy-again
            source's input; empty lists when the seen filter removes purchases.
    """

    users: list[str]
    history: list[list[str]]
    exclude: list[list[str]]
    relevant: list[list[str]]
    relevant_weights: list[np.ndarray]
    regions: list[str | None]
    user_features: pd.DataFrame
    item_features: pd.DataFrame
    bought: list[list[tuple[str, float]]] | None = None

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: Sequence[int], with_history: bool = True) -> HeldOut:
        """The users at positions `rows`, every per-user field selected alike.

        Args:
            rows: positions in `users`.
            with_history: False serves them as if they had no history (a cold-start arm): no
                sequence and no purchases for the buy-again source.
        """

        def pick(values):
            return None if values is None else [values[i] for i in rows]

        return replace(
            self,
            users=pick(self.users),
            history=pick(self.history) if with_history else [[] for _ in rows],
            exclude=pick(self.exclude),
            relevant=pick(self.relevant),
            relevant_weights=pick(self.relevant_weights),
            regions=pick(self.regions),
            bought=pick(self.bought) if with_history or self.bought is None else [[] for _ in rows],
        )


def split_by_time(events: pd.DataFrame, holdout_days: int, timezone: str = "UTC") -> TimeSplit:
    """The cut at 00:00 (in `timezone`, the shop's) of the first of the newest `holdout_days` days.

    The days of the split are the shop's calendar days (`settings.data.shop_timezone`), as the batches
    are; the cut is a UTC instant.

    Raises:
        ValueError: when there are no events, or the holdout would leave no training events.
    """
    if events.empty:
        raise ValueError("No validated events: run ingestion and validation before training")
    ts = pd.to_datetime(events["timestamp"], utc=True, cache=False)
    local = ts.dt.tz_convert(timezone)
    first_cut_day = (local.max().floor("D").tz_localize(None) - pd.Timedelta(days=holdout_days - 1)).date()
    cut = pd.Timestamp(first_cut_day).tz_localize(timezone).tz_convert("UTC")
    if not (ts < cut).any():
        raise ValueError(
            f"holdout_days={holdout_days} leaves no training events (events span "
            f"{local.min().date()}..{local.max().date()}): lower settings.data.holdout_days"
        )
    return TimeSplit(
        cut=cut,
        first_day=local.min().date(),
        last_fit_day=first_cut_day - timedelta(days=1),
        last_day=local.max().date(),
    )


def weighted_interactions(events: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """`features.compute.interactions` of `events` with each interaction's `weight` (`train.event_weights`)."""
    inter = interactions(events)
    inter["weight"] = inter["event_type"].map(settings.train.event_weights).fillna(1.0).astype(np.float32)
    return inter


def held_out(
    settings: Settings,
    store: FeatureStore | None,
    cut: pd.Timestamp,
    end: pd.Timestamp | None = None,
    inter: pd.DataFrame | None = None,
    max_users: int | None = None,
    pick: Callable[[list[str]], list[str]] | None = None,
) -> HeldOut:
    """The users with interactions both before `cut` and in [`cut`, `end`), as the module docstring says.

    Args:
        settings: platform settings (the validated store, event weights, the seen filter).
        store: the Feast store for the online features as of `cut` (None: no features).
        cut: the instant the users are scored at.
        end: the end of the held-out span (default: everything after `cut`).
        inter: `weighted_interactions` of the validated events, when the caller has them already.
        max_users: at most this many of those users, a sample seeded by `cut` (None: all of them).
        pick: narrows those users (sorted ids in, the kept ones out, in order) before their histories
            and features are looked up (the gate keeps its challenger's report users).
    """
    if inter is None:
        inter = weighted_interactions(read_events(settings.validated_dir), settings)
    cut = pd.Timestamp(cut)
    before = inter[inter["timestamp"] < cut]
    after = inter[inter["timestamp"] >= cut]
    if end is not None:
        after = after[after["timestamp"] < pd.Timestamp(end)]
    returning = sorted(set(after["user_id"]) & set(before["user_id"]))
    if max_users is not None and len(returning) > max_users:
        rng = np.random.default_rng(int(cut.timestamp()))
        returning = sorted(rng.choice(np.array(returning, dtype=object), max_users, replace=False).tolist())
    if pick is not None:
        returning = pick(returning)
    mine = before[before["user_id"].isin(returning)]
    histories = mine.groupby("user_id", sort=True)["item_id"].agg(list)
    purchased = mine[mine["event_type"] == "purchase"]
    bought = (
        purchased.groupby("user_id")["item_id"].agg(lambda s: sorted(set(s)))
        if settings.exclude_purchased
        else pd.Series(dtype=object)
    )
    targets = (
        after[after["user_id"].isin(returning)]
        .groupby(["user_id", "item_id"], sort=False)["weight"]
        .max()
        .reset_index()
    )
    by_user = dict(iter(targets.groupby("user_id", sort=False)))
    users_table = read_snapshot(settings.validated_dir, "users")
    region = (
        users_table.set_index("user_id")["region"]
        .astype(object)
        .where(users_table.set_index("user_id")["region"].notna(), None)
    )
    refs = ranker_features(store, RANKER_SERVICE) if store is not None else {"user": [], "item": []}
    item_ids = sorted(inter["item_id"].unique())
    records: dict[str, list[tuple[str, float]]] = {}
    if not settings.exclude_purchased:
        days = (
            (cut - pd.to_datetime(purchased["timestamp"], utc=True, cache=False)).dt.total_seconds()
            / 86_400.0
        ).to_numpy()
        for user, item, age in zip(
            purchased["user_id"].astype(str), purchased["item_id"].astype(str), days, strict=True
        ):
            records.setdefault(user, []).append((item, float(age)))
    return HeldOut(
        users=returning,
        history=[histories[u] for u in returning],
        exclude=[bought.get(u, []) if settings.exclude_purchased else [] for u in returning],
        relevant=[by_user[u]["item_id"].tolist() for u in returning],
        relevant_weights=[by_user[u]["weight"].to_numpy(np.float32) for u in returning],
        regions=[region.get(u) for u in returning],
        user_features=_features_at(store, "user_id", returning, refs["user"], cut),
        item_features=_features_at(store, "item_id", item_ids, refs["item"], cut),
        bought=[records.get(u, []) for u in returning],
    )


def build_training_data(settings: Settings, store: FeatureStore) -> tuple[FitData, TimeSplit]:
    """Everything `models.pipeline.fit_pipeline` needs, from the validated store and Feast.

    Args:
        settings: platform settings (`validated_dir`, `data.holdout_days`, `train.event_weights`,
            `serving.exclude_purchased`).
        store: a prepared Feast store (`features.store.prepare_feature_store`).
    """
    root = settings.validated_dir
    events = read_events(root)
    split = split_by_time(events, settings.data.holdout_days, settings.data.shop_timezone)
    # every item ever on sale, its newest attributes (upserts folded), in the order items appeared
    catalogue = Catalogue.from_items(read_upserts(root, "items"))
    users = read_snapshot(root, "users")

    inter = weighted_interactions(events, settings)
    unknown = ~inter["item_id"].isin(catalogue.index)
    if unknown.any():  # validated events only name catalogue items; a gap here is a bug upstream
        raise ValueError(f"{int(unknown.sum())} validated interactions name items missing from the catalogue")
    inter["row"] = inter["item_id"].map(catalogue.index).astype(np.int64)
    before = inter[inter["timestamp"] < split.cut]
    fit_rows, fit_w = _histories(before)
    refit_rows, refit_w = _histories(inter)
    valid = held_out(settings, store, split.cut, inter=inter)
    log.info("interactions: %d before the cut %s, %d in all", len(before), split.cut, len(inter))

    fit_events = events[pd.to_datetime(events["timestamp"], utc=True, cache=False) < split.cut]
    available = set(catalogue.item_ids)
    records: dict[str, list[Bought] | None] = {"fit": None, "refit": None, "valid": None}
    if not settings.exclude_purchased:  # purchases stay recommendable: the buy-again source learns them
        fit_by_user = purchase_records(fit_events, catalogue, split.cut)
        refit_by_user = purchase_records(
            events, catalogue, pd.to_datetime(events["timestamp"], utc=True, cache=False).max()
        )
        records = {
            "fit": [fit_by_user.get(u, Bought.empty()) for u in fit_rows],
            "refit": [refit_by_user.get(u, Bought.empty()) for u in refit_rows],
            "valid": [fit_by_user.get(u, Bought.empty()) for u in valid.users],
        }
    data = FitData(
        catalogue=catalogue,
        fit=list(fit_rows.values()),
        refit=list(refit_rows.values()),
        fit_weights=list(fit_w.values()),
        refit_weights=list(refit_w.values()),
        valid_users=valid.users,
        valid_history=[fit_rows[u] for u in valid.users],
        valid_exclude=[catalogue.encode(e).astype(np.int64) for e in valid.exclude],
        valid_relevant=[catalogue.encode(r).astype(np.int64) for r in valid.relevant],
        valid_relevant_weights=valid.relevant_weights,
        valid_user_features=valid.user_features.to_numpy(np.float32),
        item_features=item_feature_matrix(valid.item_features, catalogue, list(valid.item_features.columns)),
        features={"user": list(valid.user_features.columns), "item": list(valid.item_features.columns)},
        popular_fit=popular_lists(fit_events, users, POPULAR_LIST_LENGTH, available),
        popular_refit=popular_lists(events, users, POPULAR_LIST_LENGTH, available),
        fit_bought=records["fit"],
        refit_bought=records["refit"],
        valid_bought=records["valid"],
    )
    log.info(
        "%d training histories, %d validation users, %d items", len(data.fit), len(valid), len(catalogue)
    )
    return data, split


def purchase_records(events: pd.DataFrame, catalogue: Catalogue, now: pd.Timestamp) -> dict[str, Bought]:
    """Each user's purchase events as the buy-again source reads them (days before `now`), as the
    service's `serving.purchases.Purchases` keeps them."""
    bought = events[
        (events["event_type"] == "purchase") & events["item_id"].astype(str).isin(catalogue.index)
    ]
    if bought.empty:
        return {}
    stamps = pd.to_datetime(bought["timestamp"], utc=True, cache=False)
    frame = pd.DataFrame(
        {
            "user": bought["user_id"].astype(str).to_numpy(),
            "row": bought["item_id"].astype(str).map(catalogue.index).to_numpy(np.int64),
            "days": ((pd.Timestamp(now) - stamps).dt.total_seconds() / 86_400.0).clip(lower=0).to_numpy(),
        }
    )
    return {
        str(user): Bought(group["row"].to_numpy(np.int64), group["days"].to_numpy(np.float64))
        for user, group in frame.groupby("user", sort=False)
    }


def item_feature_matrix(frame: pd.DataFrame, catalogue: Catalogue, names: list[str]) -> np.ndarray:
    """Raw item features [n_items, len(names)] in catalogue order from a frame indexed by item_id (NaN = none)."""
    out = np.full((len(catalogue), len(names)), np.nan, np.float32)
    if not names:
        return out
    aligned = frame.reindex(pd.Index(catalogue.item_ids, name="item_id"))
    for j, name in enumerate(names):
        if name in aligned.columns:
            out[:, j] = pd.to_numeric(aligned[name], errors="coerce").to_numpy(np.float32)
    return out


def _histories(frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each user's catalogue rows and weights in time order (`frame` is sorted by user, then time)."""
    rows: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    for user, group in frame.groupby("user_id", sort=True):
        rows[user] = group["row"].to_numpy(np.int64)
        weights[user] = group["weight"].to_numpy(np.float32)
    return rows, weights


def _features_at(
    store: FeatureStore | None, key: str, ids: list[str], refs: list[str], when: pd.Timestamp
) -> pd.DataFrame:
    """Numeric values of `refs` for `ids` as known at `when` (point in time), indexed by `key` (NaN = none)."""
    names = [ref.split(":", 1)[1] for ref in refs]
    if store is None or not refs or not ids:
        return pd.DataFrame(
            np.full((len(ids), len(names)), np.nan), index=pd.Index(ids, name=key), columns=names
        )
    entity_df = pd.DataFrame({key: ids, "event_timestamp": when})
    frame = historical_features(store, entity_df, refs)
    values = frame[names].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    values.index = pd.Index(ids, name=key)
    return values
