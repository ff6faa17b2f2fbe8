"""The serving path to online features: one user from Feast, candidate items from an in-process cache.

Item features change only when a batch is materialized, so `OnlineFeatures` keeps every item's
`ranking_v1` item features (attributes, popularity, price bucket) in memory and reloads them from
the online store in `refresh()`; a request then reads one user from Feast and slices the cache.
Real-time events reach the online store through the `user_events_push` PushSource.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode

from features.compute import table_path
from features.definitions import USER_EVENTS_PUSH, price_bucket
from recflow.settings import Settings

log = logging.getLogger(__name__)
USER_VIEWS: tuple[str, ...] = ("user_profile", "user_activity", "user_sequence")
ITEM_VIEWS: tuple[str, ...] = ("item_attributes", "item_popularity")
REFRESH_CHUNK = 5_000


class OnlineFeatures:
    """Online features of a user and of candidate items, as the serving engine reads them.

    Args:
        store: a prepared, materialized Feast store.
        settings: platform settings (where the item table lives).
    """

    def __init__(self, store: FeatureStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.user_refs = _refs(store, USER_VIEWS)
        self.item_refs = _refs(store, ITEM_VIEWS)
        self.item_columns = [ref.split(":", 1)[1] for ref in self.item_refs] + ["price_bucket"]
        self._items = pd.DataFrame(columns=self.item_columns, index=pd.Index([], name="item_id"))
        self._row: dict[str, int] = {}
        self.refresh()

    def refresh(self) -> int:
        """Reload every item's features from the online store; call after each materialization.

        Returns:
            The number of items with features in the cache.
        """
        path = table_path(self.settings, "item_attributes")
        ids = (
            pd.read_parquet(path, columns=["item_id"])["item_id"].astype(str).unique()
            if path.exists()
            else []
        )
        frames = [
            self._read_items(list(ids[i : i + REFRESH_CHUNK])) for i in range(0, len(ids), REFRESH_CHUNK)
        ]
        frame = pd.concat(frames) if frames else self._items.iloc[:0]
        frame = frame[frame[self.item_columns[:-1]].notna().any(axis=1)].copy()
        frame["price_bucket"] = price_bucket(frame["price"]).astype("Int64").where(frame["price"].notna())
        self._items = frame[self.item_columns]
        self._row = {item_id: i for i, item_id in enumerate(self._items.index)}
        log.info("online item cache: %d items", len(self._items))
        return len(self._items)

    def user(self, user_id: str) -> dict | None:
        """The user's `user_profile`, `user_activity` and `user_sequence` features; None if unknown."""
        values = self.store.get_online_features(
            features=self.user_refs, entity_rows=[{"user_id": str(user_id)}]
        ).to_dict()
        out = {name: column[0] for name, column in values.items()}
        if all(v is None for k, v in out.items() if k != "user_id"):
            return None
        return out

    def users(self, user_ids: Sequence[str], chunk: int = 1000) -> list[dict | None]:
        """`user` for many users at once (one online-store read per `chunk` users), in order."""
        out: list[dict | None] = []
        for lo in range(0, len(user_ids), chunk):
            ids = [str(u) for u in user_ids[lo : lo + chunk]]
            values = self.store.get_online_features(
                features=self.user_refs, entity_rows=[{"user_id": u} for u in ids]
            ).to_dict()
            for row in range(len(ids)):
                user = {name: column[row] for name, column in values.items()}
                known = any(v is not None for k, v in user.items() if k != "user_id")
                out.append(user if known else None)
        return out

    def items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        """Item features, one row per requested id in request order (index `item_id`).

        Unknown ids get a row of missing values, so rows stay aligned with the request; an empty
        request gives an empty frame.
        """
        ids = [str(i) for i in item_ids]
        rows = np.fromiter((self._row.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if len(rows) and (rows < 0).any():
            return self._items.reindex(pd.Index(ids, name="item_id"))  # unknown ids: missing values
        frame = self._items.iloc[rows]
        frame.index = pd.Index(ids, name="item_id")
        return frame

    def user_and_items(self, user_id: str, item_ids: Sequence[str]) -> tuple[dict | None, pd.DataFrame]:
        """`user(user_id)` and `items(item_ids)` in one call: the features of one ranking request."""
        return self.user(user_id), self.items(item_ids)

    @property
    def item_ids(self) -> list[str]:
        """The ids of the items in the cache (those with online features)."""
        return list(self._items.index)

    def _read_items(self, item_ids: list[str]) -> pd.DataFrame:
        values = self.store.get_online_features(
            features=self.item_refs, entity_rows=[{"item_id": i} for i in item_ids]
        ).to_df()
        return values.set_index("item_id")


def push_user_events(
    store: FeatureStore, events: pd.DataFrame, sequence_length: int | None = None
) -> pd.DataFrame:
    """Append new events to each user's online `recent_items` through the `user_events_push` PushSource.

    Reads the users' current sequences from the online store, appends the new item ids in time
    order (any event type; an event on the item that is already the newest extends that
    interaction instead of repeating it, as `features.compute.interactions` does), keeps the last N (the `sequence_length` tag of `user_sequence` unless
    given) and pushes one row per user, stamped with the user's newest event. Online only: the
    offline tables are rebuilt from the validated batches. Aggregate counters (`user_activity`)
    are not updated in real time; they move with the next daily batch.

    Args:
        store: the Feast store.
        events: new events with `user_id`, `item_id`, `timestamp` (UTC).

    Returns:
        The pushed rows (`user_id`, `event_timestamp`, `recent_items`).
    """
    missing = {"user_id", "item_id", "timestamp"} - set(events.columns)
    if missing:
        raise ValueError(f"events miss column(s) {sorted(missing)}; got {list(events.columns)}")
    if events.empty:
        return pd.DataFrame(columns=["user_id", "event_timestamp", "recent_items"])
    length = sequence_length or int(store.get_feature_view("user_sequence").tags.get("sequence_length", 20))
    ev = events.assign(
        user_id=events["user_id"].astype(str),
        item_id=events["item_id"].astype(str),
        timestamp=pd.to_datetime(events["timestamp"], utc=True),
    ).sort_values("timestamp", kind="stable")
    users = list(dict.fromkeys(ev["user_id"]))
    current = store.get_online_features(
        features=["user_sequence:recent_items"], entity_rows=[{"user_id": u} for u in users]
    ).to_dict()["recent_items"]
    rows = []
    for user_id, before in zip(users, current, strict=True):
        mine = ev[ev["user_id"] == user_id]
        sequence = list(before or [])
        for item in mine["item_id"]:
            if not sequence or sequence[-1] != item:  # a run on one item is one interaction
                sequence.append(item)
        rows.append(
            {
                "user_id": user_id,
                "event_timestamp": mine["timestamp"].max(),
                "recent_items": sequence[-length:],
            }
        )
    pushed = pd.DataFrame(rows)
    store.push(USER_EVENTS_PUSH, pushed, to=PushMode.ONLINE)
    return pushed


def _refs(store: FeatureStore, views: Sequence[str]) -> list[str]:
    """`view:feature` references of every feature of `views`, as the registry declares them."""
    return [f"{name}:{field.name}" for name in views for field in store.get_feature_view(name).features]
