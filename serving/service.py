"""The BentoML service: one class, the champion model loaded in `__init__` and swapped when a new one is promoted."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse

from recflow.settings import Settings
from serving.purchases import Purchases
from serving.recommender import Recommender, UnknownItemError
from serving.schemas import (
    Event,
    EventsRequest,
    EventsResponse,
    ModelMetadata,
    RecommendRequest,
    RecommendResponse,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from serving.server import settings_from_env

log = logging.getLogger(__name__)

OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json")

STAGE_SECONDS = bentoml.metrics.Histogram(
    name="recflow_stage_seconds",
    documentation="latency of each stage of POST /recommend",
    labelnames=["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
FALLBACKS = bentoml.metrics.Counter(
    name="recflow_fallbacks_total", documentation="recommendations served from popular items (cold start)"
)
MODEL_SWITCHES = bentoml.metrics.Counter(
    name="recflow_model_switches_total", documentation="champion models loaded by the running service"
)
EVENTS = bentoml.metrics.Counter(name="recflow_events_total", documentation="events received on POST /events")

http = FastAPI()


def open_features(settings: Settings) -> tuple[object | None, object | None]:
    """The Feast store and the online feature reader, or (None, None) when no feature repo exists yet."""
    if not (settings.feature_repo_dir / "feature_store.yaml").exists():
        log.warning("No feature repo at %s: every user is served as cold start.", settings.feature_repo_dir)
        return None, None
    from features.online import OnlineFeatures
    from features.store import open_store

    store = open_store(settings)
    return store, OnlineFeatures(store, settings)


class ApiKeyMiddleware:
    """ASGI middleware: when `serving.api_key` is set, require `Authorization: Bearer <key>` (health stays open)."""

    def __init__(self, app, api_key: str | None = None) -> None:
        self.app = app
        if api_key is None:
            key = settings_from_env().serving.api_key
            api_key = key.get_secret_value() if key else None
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"authorization") != self.expected:
            message = "Missing or wrong API key: send the header 'Authorization: Bearer <key>'."
            await JSONResponse({"error": message}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@bentoml.service(
    name="recflow",
    traffic={"timeout": 10, "concurrency": 64},
    # read when BentoML imports the service, from what `serving.server` put in the environment
    workers=int(os.environ.get("RECFLOW_SERVING__WORKERS", "1")),
    logging={"access": {"enabled": os.environ.get("RECFLOW_SERVING__ACCESS_LOG", "true").lower() == "true"}},
    envs=[{"name": "TF_USE_LEGACY_KERAS", "value": "1"}, {"name": "BENTOML_DO_NOT_TRACK", "value": "True"}],
)
@bentoml.asgi_app(http, path="/")
class RecflowService:
    """Recommendations over HTTP: `/recommend`, `/similar-items`, `/events`, `GET /metadata`.

    The promoted (champion) model is loaded at start; a watcher thread checks the champion pointer
    every `serving.reload_interval_s` seconds, loads a newly promoted model beside the old one and
    swaps a single reference, so requests in flight finish on the model they started with and no
    request fails during a switch. Without a champion the service is live but not ready (503).
    """

    def __init__(self) -> None:
        self.settings = settings_from_env()
        self.store, self.features = open_features(self.settings)
        self.purchases = Purchases.from_validated(self.settings)
        self.current: Recommender | None = None
        self._stop = threading.Event()
        self._log_lock = threading.Lock()
        try:
            self.reload()
        except Exception:  # live but not ready; the watcher retries
            log.exception("Loading the champion model failed; /readyz stays 503 until one loads")
        self._watcher = threading.Thread(target=self._watch, name="champion-watcher", daemon=True)
        self._watcher.start()

    # ---- model lifecycle -------------------------------------------------------------------------
    def reload(self) -> bool:
        """Load the champion if it changed; returns True when a new model was swapped in."""
        from serving.package import champion_tag

        tag = champion_tag(self.settings)
        if tag is None or (self.current is not None and self.current.tag == tag):
            return False
        recommender = Recommender.from_model_store(self.settings, tag, self.features, self.purchases)
        recommender.observe = _observe
        self.current = recommender  # one reference assignment: atomic for concurrent readers
        gc.collect()
        gc.freeze()  # the loaded model's objects leave the collector's scans: shorter GC pauses, lower p99
        MODEL_SWITCHES.inc()
        log.info("Serving model %s", tag)
        return True

    def _watch(self) -> None:
        """Check the champion pointer often, reload the online item features now and then."""
        refreshed = time.monotonic()
        while not self._stop.wait(self.settings.serving.reload_interval_s):
            try:
                self.reload()
            except Exception:  # keep serving the old model; the next check tries again
                log.exception("Loading the new champion failed; still serving %s", self._tag())
            if (
                self.current is not None
                and time.monotonic() - refreshed > self.settings.serving.feature_refresh_s
            ):
                refreshed = time.monotonic()
                try:
                    self.current.refresh_items()
                except Exception:
                    log.exception("Refreshing the online item features failed; serving the cached ones")

    def _tag(self) -> str | None:
        return self.current.tag if self.current is not None else None

    def _model(self) -> Recommender:
        model = self.current
        if model is None:
            raise bentoml.exceptions.ServiceUnavailable(
                "No promoted model yet: package and promote one (recflow run), then retry."
            )
        return model

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self._stop.set()

    def __is_ready__(self) -> bool:
        return self.current is not None

    # ---- endpoints -------------------------------------------------------------------------------
    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, user_id: str, k: int = 10, region: str | None = None) -> RecommendResponse:
        """Top-k items for a user: retrieval, purchased-item filter, ranking, business rules.

        Runs on the event loop: the whole path is a few milliseconds of CPU, and a hop to a worker
        thread costs more under load than it saves (the GIL serialises the work anyway).
        """
        response = self._model().recommend(user_id, k, region=region)
        if response.fallback:
            FALLBACKS.inc()
        return response

    @bentoml.api(route="/similar-items", input_spec=SimilarItemsRequest)
    def similar_items(self, item_id: str, k: int = 10) -> SimilarItemsResponse:
        """Items closest to `item_id` in the candidate tower's embedding space."""
        try:
            return self._model().similar_items(item_id, k)
        except UnknownItemError as e:
            raise bentoml.exceptions.NotFound(str(e)) from None

    @bentoml.api(route="/events", input_spec=EventsRequest)
    def events(self, events: list[Event]) -> EventsResponse:
        """Log new events for the next batch, then push them to the online store (recent items, counters)."""
        frame = events_frame(events)
        path = self._append_log(frame)
        self.purchases.add(frame)
        pushed = 0
        if self.store is not None:
            from features.online import push_user_events

            push_user_events(self.store, frame)
            pushed = len(frame)
        EVENTS.inc(len(frame))
        return EventsResponse(accepted=len(frame), pushed=pushed, log_path=str(path))

    @http.get("/metadata", response_model=ModelMetadata)
    def metadata(self) -> ModelMetadata:
        """Served model tag, champion, training window, metrics and index settings."""
        from serving.package import champion_tag

        return ModelMetadata(champion=champion_tag(self.settings), **self._model().describe())

    def _append_log(self, frame) -> Path:
        """Append events as JSON lines to `<home>/incoming/<date>/events.jsonl` (one write per request)."""
        day = datetime.now(UTC).date().isoformat()
        path = self.settings.home / "incoming" / day / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat())).to_json(
            orient="records", lines=True
        )
        with self._log_lock, path.open("a") as f:
            f.write(lines if lines.endswith("\n") else lines + "\n")
        return path


RecflowService.add_asgi_middleware(ApiKeyMiddleware)


def events_frame(events: list[Event]):
    """Events as a DataFrame in the raw events contract (ids and timestamps filled in)."""
    import pandas as pd

    from recflow.data.schema import conform

    now = datetime.now(UTC)
    rows = [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": e.user_id,
            "item_id": e.item_id,
            "event_type": e.event_type,
            "timestamp": _utc(e.timestamp or now),
            "session_id": e.session_id or f"live-{e.user_id}",
        }
        for e in events
    ]
    return conform(pd.DataFrame(rows), "events")


def _utc(ts: datetime) -> datetime:
    """Aware timestamps converted to UTC; naive ones taken as UTC."""
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _observe(stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage=stage).observe(seconds)
