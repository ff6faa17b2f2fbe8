"""The running experiment inside the service: both models loaded, each request answered by its user's variant.

`Lab` holds the experiment the store says is running (`recflow experiment start`) with its challenger
model, loaded beside the champion before the experiment takes effect here (one reference swap, as for a
champion switch: no request fails). Every `/recommend` answer gets a `request_id`, its `variant` and the
experiment id; what it showed is logged (`impressions`), and a user's first answer in an experiment is
logged as the assignment. `POST /events` naming a `request_id` is attributed to the variant and position
of the item in that answer (`outcomes`). In shadow mode the champion answers everyone and the challenger
scores the requests of its share on a background thread: its latency and list overlap go to `shadow`.

Rows are buffered and written every `experiments.flush_interval_s` by a writer thread (and on
shutdown), so a request never waits on the database; the last interval's rows are what a crash loses.
The recent answers (the last 100,000) are kept in memory for attribution; older ones are read back
from the store.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from recflow.experiments import Experiment, ExperimentStore
from recflow.settings import Settings
from serving.recommender import Recommender
from serving.schemas import RecommendResponse

log = logging.getLogger(__name__)
RECENT = 100_000
SHADOW_BACKLOG = 64


@dataclass(frozen=True)
class Arm:
    """A running experiment and its loaded challenger."""

    experiment: Experiment
    challenger: Recommender


@dataclass(frozen=True)
class Shown:
    """What one answer showed: to whom, in which experiment and variant, each item's position."""

    user_id: str
    experiment_id: str | None
    variant: str
    positions: dict[str, int]


@dataclass
class Pending:
    """Rows waiting for the writer, per table."""

    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {"assignments": [], "impressions": [], "outcomes": [], "shadow": []}
    )


class Lab:
    """The service's experiment state and logs (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ExperimentStore(settings)
        self.arm: Arm | None = None
        self._pending = Pending()
        self._recent: OrderedDict[str, Shown] = OrderedDict()
        self._assigned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._shadow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_backlog = 0
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="experiment-writer", daemon=True)
        self._writer.start()

    # ---- the experiment --------------------------------------------------------------------------
    def sync(self, features, purchases) -> None:
        """Follow the store: load a new experiment's challenger, then swap it in; drop a stopped one."""
        running = self.store.active()
        if running is None:
            if self.arm is not None:
                log.info("Experiment %s stopped; every user gets the champion", self.arm.experiment.id)
                self.arm = None
            return
        if self.arm is not None and self.arm.experiment.id == running.id:
            return
        challenger = Recommender.from_model_store(self.settings, running.challenger, features, purchases)
        self.arm = Arm(running, challenger)  # one reference assignment, as for a champion switch
        log.info(
            "Experiment %s: challenger %s for %.0f%% of users%s",
            running.id,
            running.challenger,
            100 * running.share,
            " (shadow)" if running.shadow else "",
        )

    def recommend(self, champion: Recommender, user_id: str, k: int, region: str | None) -> RecommendResponse:
        """Answer from the user's variant; tag the answer; log what it showed (and shadow-score if asked)."""
        arm = self.arm
        assigned = arm.experiment.variant(user_id) if arm is not None else "champion"
        model, variant = champion, "champion"
        if arm is not None and assigned == "challenger" and not arm.experiment.shadow:
            model, variant = arm.challenger, "challenger"
        start = time.perf_counter()
        response = model.recommend(user_id, k, region=region)
        took_ms = 1000 * (time.perf_counter() - start)
        request_id = uuid.uuid4().hex
        experiment_id = arm.experiment.id if arm is not None else None
        response = response.model_copy(
            update={"request_id": request_id, "variant": variant, "experiment": experiment_id or ""}
        )
        self._log_answer(response, experiment_id, took_ms)
        if arm is not None and arm.experiment.shadow and assigned == "challenger":
            self._score_in_shadow(arm, response, took_ms, k, region)
        return response

    # ---- attribution -----------------------------------------------------------------------------
    def attribute(self, rows: list[Any], valid: pd.DataFrame) -> int:
        """Log an outcome for each valid event whose `request_id` answer showed its item to its user."""
        attributed = 0
        now = _now()
        for index in valid.index:
            row = rows[index]
            request_id = row.get("request_id") if isinstance(row, dict) else getattr(row, "request_id", None)
            if not request_id:
                continue
            shown = self._shown(str(request_id))
            event = valid.loc[index]
            if shown is None or shown.user_id != event["user_id"] or event["item_id"] not in shown.positions:
                continue
            outcome = {
                "request_id": request_id,
                "user_id": shown.user_id,
                "item_id": event["item_id"],
                "event_type": event["event_type"],
                "experiment_id": shown.experiment_id,
                "variant": shown.variant,
                "position": shown.positions[event["item_id"]],
                "at": now,
            }
            with self._lock:
                self._pending.rows["outcomes"].append(outcome)
            attributed += 1
        return attributed

    # ---- erasure and shutdown --------------------------------------------------------------------
    def forget(self, user_id: str) -> None:
        """Drop a user's unwritten rows and remembered answers, then their stored rows."""
        with self._lock:
            for table, rows in self._pending.rows.items():
                self._pending.rows[table] = [r for r in rows if r["user_id"] != user_id]
            for request_id in [r for r, s in self._recent.items() if s.user_id == user_id]:
                del self._recent[request_id]
            self._assigned = {a for a in self._assigned if a[1] != user_id}
        self.store.forget(user_id)

    def forget_matching(self, hashes: set[str], hasher) -> int:
        """Forget the users in memory whose `hasher(user_id)` is in `hashes` (erased by `recflow forget`)."""
        with self._lock:
            users = {s.user_id for s in self._recent.values()} | {u for _, u in self._assigned}
            users |= {r["user_id"] for rows in self._pending.rows.values() for r in rows}
        gone = [u for u in users if hasher(u) in hashes]
        for user_id in gone:
            self.forget(user_id)
        return len(gone)

    def flush(self) -> None:
        """Write the buffered rows now (kept for the next try if the database refuses)."""
        with self._lock:
            pending, self._pending = self._pending, Pending()
        if not any(pending.rows.values()):
            return
        try:
            self.store.write(pending.rows)
        except Exception:
            log.exception("Writing experiment logs failed; keeping the rows for the next flush")
            with self._lock:
                for table, rows in pending.rows.items():
                    self._pending.rows[table] = rows + self._pending.rows[table]

    def close(self) -> None:
        self._stop.set()
        self._shadow.shutdown(wait=True, cancel_futures=False)
        self.flush()

    # ---- internals -------------------------------------------------------------------------------
    def _log_answer(self, response: RecommendResponse, experiment_id: str | None, latency_ms: float) -> None:
        now = _now()
        rows: list[dict[str, Any]] = [
            {
                "request_id": response.request_id,
                "position": position,
                "item_id": item.item_id,
                "user_id": response.user_id,
                "experiment_id": experiment_id,
                "variant": response.variant,
                "model": response.model,
                "shown_at": now,
                "latency_ms": latency_ms,
            }
            for position, item in enumerate(response.items)
        ]
        shown = Shown(
            response.user_id, experiment_id, response.variant, {r["item_id"]: r["position"] for r in rows}
        )
        with self._lock:
            self._pending.rows["impressions"] += rows
            self._recent[response.request_id] = shown
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
            if experiment_id is not None and (experiment_id, response.user_id) not in self._assigned:
                self._assigned.add((experiment_id, response.user_id))
                self._pending.rows["assignments"].append(
                    {
                        "experiment_id": experiment_id,
                        "user_id": response.user_id,
                        "variant": response.variant,
                        "assigned_at": now,
                    }
                )

    def _shown(self, request_id: str) -> Shown | None:
        with self._lock:
            shown = self._recent.get(request_id)
        if shown is not None:
            return shown
        rows = self.store.shown(request_id)
        if not rows:
            return None
        first = rows[0]
        return Shown(
            first["user_id"],
            first["experiment_id"],
            first["variant"],
            {r["item_id"]: r["position"] for r in rows},
        )

    def _score_in_shadow(
        self, arm: Arm, shown: RecommendResponse, champion_ms: float, k: int, region: str | None
    ) -> None:
        """Score the request with the challenger off the request path; log latency and overlap."""
        if self._shadow_backlog >= SHADOW_BACKLOG:  # never let shadow work pile up behind real traffic
            return
        self._shadow_backlog += 1

        def run() -> None:
            try:
                start = time.perf_counter()
                unseen = arm.challenger.recommend(shown.user_id, k, region=region)
                took_ms = 1000 * (time.perf_counter() - start)
                ours = {i.item_id for i in shown.items}
                overlap = len(ours & {i.item_id for i in unseen.items}) / max(len(ours), 1)
                row = {
                    "request_id": shown.request_id,
                    "experiment_id": arm.experiment.id,
                    "user_id": shown.user_id,
                    "model": unseen.model,
                    "latency_ms": took_ms,
                    "champion_latency_ms": champion_ms,
                    "overlap": overlap,
                    "at": _now(),
                }
                with self._lock:
                    self._pending.rows["shadow"].append(row)
            except Exception:
                log.exception("Shadow scoring by %s failed", arm.challenger.tag)
            finally:
                self._shadow_backlog -= 1

        self._shadow.submit(run)

    def _write_loop(self) -> None:
        while not self._stop.wait(self.settings.experiments.flush_interval_s):
            self.flush()


def _now() -> str:
    return datetime.now(UTC).isoformat()
