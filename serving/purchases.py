"""Who bought what, and when: the seen filter, the buy-again source's input and the repeat reasons."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pandas as pd

from recflow.settings import Settings

log = logging.getLogger(__name__)


class Purchases:
    """Items each user purchased: from the validated events at start, plus purchases posted to `/events`.

    The online store keeps the recent-item sequence, not the full purchase history, so the service
    keeps this per user itself: the set of items (the seen filter, the repeat reasons) and every
    purchase's item and time (the buy-again source: `bought`), a few dozen bytes per purchase.
    """

    def __init__(self, by_user: dict[str, frozenset[str]] | None = None) -> None:
        self._by_user: dict[str, frozenset[str]] = dict(by_user or {})
        self._record: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self.newest: float | None = None  # unix time of the newest event added (any type): the data's clock

    @classmethod
    def from_validated(cls, settings: Settings) -> Purchases:
        """Every purchase in `settings.validated_dir` (empty when nothing was validated yet)."""
        from recflow.data.batches import read_events

        events = read_events(settings.validated_dir)
        purchases = cls()
        purchases.add(events)
        log.info("purchase filter: %d users with purchases", len(purchases))
        return purchases

    def add(self, events: pd.DataFrame) -> None:
        """Record the purchase rows of `events` (columns user_id, item_id, event_type; `timestamp`
        optional), and move the data's clock (`newest`) to the newest timestamp of any of its rows."""
        if "timestamp" in events.columns and len(events):
            latest = pd.to_datetime(events["timestamp"], utc=True).max()
            if pd.notna(latest):
                unix = (latest - pd.Timestamp(0, tz="UTC")).total_seconds()
                self.newest = unix if self.newest is None else max(self.newest, unix)
        rows = events["event_type"] == "purchase"
        bought = events.loc[rows, ["user_id", "item_id"]].astype(str)
        if bought.empty:
            return
        if "timestamp" in events.columns:
            stamps = pd.to_datetime(events.loc[rows, "timestamp"], utc=True)
            bought["unix_s"] = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        else:
            bought["unix_s"] = time.time()
        grouped = bought.groupby("user_id")
        items_of = grouped["item_id"].agg(frozenset)
        with self._lock:  # readers see either the old or the new entries of a user, never a partial one
            for user_id, group in grouped:
                user_id = str(user_id)
                self._by_user[user_id] = self._by_user.get(user_id, frozenset()) | items_of[user_id]
                old_items, old_times = self._record.get(user_id, (np.zeros(0, object), np.zeros(0)))
                self._record[user_id] = (
                    np.concatenate([old_items, group["item_id"].to_numpy(object)]),
                    np.concatenate([old_times, group["unix_s"].to_numpy(np.float64)]),
                )

    def forget(self, user_id: str) -> bool:
        """Drop a user's purchases (erasure); True when there were any."""
        with self._lock:
            self._record.pop(user_id, None)
            return self._by_user.pop(user_id, None) is not None

    def forget_matching(self, hashes: set[str], hasher) -> int:
        """Drop the users whose `hasher(user_id)` is in `hashes` (erasures made outside this process)."""
        gone = [u for u in list(self._by_user) if hasher(u) in hashes]
        for user_id in gone:
            self.forget(user_id)
        return len(gone)

    def of(self, user_id: str) -> frozenset[str]:
        """The items `user_id` bought (empty for an unknown user)."""
        return self._by_user.get(user_id, frozenset())

    def now(self, clock: str = "data") -> float:
        """The present as a unix time: the newest event added (`clock="data"`; the machine's clock while
        there is none), or the machine's clock (`"wall"`)."""
        if clock == "data" and self.newest is not None:
            return self.newest
        return time.time()

    def bought(self, user_id: str, now: float | None = None) -> list[tuple[str, float]]:
        """Every purchase of `user_id` as (item id, days before `now`, a unix time; default the clock)."""
        items, times = self._record.get(user_id, (np.zeros(0, object), np.zeros(0)))
        ages = np.maximum(((time.time() if now is None else now) - times) / 86_400.0, 0.0)
        return [(str(i), float(a)) for i, a in zip(items, ages, strict=True)]

    def __len__(self) -> int:
        return len(self._by_user)
