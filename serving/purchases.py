"""Who bought what: the filter that keeps already-purchased items out of a user's recommendations."""

from __future__ import annotations

import logging
import threading

import pandas as pd

from recflow.settings import Settings

log = logging.getLogger(__name__)


class Purchases:
    """Items each user purchased: from the validated events at start, plus purchases posted to `/events`.

    The online store keeps the recent-item sequence, not the full purchase history, so the service
    keeps this set per user itself (a few bytes per purchase).
    """

    def __init__(self, by_user: dict[str, frozenset[str]] | None = None) -> None:
        self._by_user: dict[str, frozenset[str]] = dict(by_user or {})
        self._lock = threading.Lock()

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
        """Record the purchase rows of `events` (columns user_id, item_id, event_type)."""
        bought = events.loc[events["event_type"] == "purchase", ["user_id", "item_id"]]
        if bought.empty:
            return
        grouped = bought.astype(str).groupby("user_id")["item_id"].agg(frozenset)
        with self._lock:  # readers see either the old or the new frozenset of a user, never a partial one
            for user_id, items in grouped.items():
                self._by_user[user_id] = self._by_user.get(user_id, frozenset()) | items

    def forget(self, user_id: str) -> bool:
        """Drop a user's purchases (erasure); True when there were any."""
        with self._lock:
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

    def __len__(self) -> int:
        return len(self._by_user)
