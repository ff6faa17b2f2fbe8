"""The BentoML service: one class, the champion model loaded in `__init__` and swapped when a new one is promoted."""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import bentoml
from fastapi import FastAPI, Path, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from recflow.erasure import audit_hashes, user_hash
from recflow.settings import Settings
from serving.auth import ASSETS, ApiKeyMiddleware
from serving.events import KnownItems, append, check_events, log_lines, quarantine_lines
from serving.experiments import Lab
from serving.forget import ErasureResponse, install_log_filter, metrics_dir
from serving.purchases import Purchases
from serving.recommender import Recommender, UnknownItemError
from serving.schemas import (
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    ModelMetadata,
    RecommendRequest,
    RecommendResponse,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from serving.server import settings_from_env

if TYPE_CHECKING:
    from feast import FeatureStore

    from features.online import OnlineFeatures

log = logging.getLogger(__name__)


class Metrics:
    """The service's Prometheus metrics (served at `/metrics` beside BentoML's own)."""

    def __init__(self) -> None:
        import prometheus_client as prom

        self.stage_seconds = prom.Histogram(
            "recflow_stage_seconds",
            "latency of each stage of POST /recommend",
            ["stage"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
        )
        self.fallbacks = prom.Counter(
            "recflow_fallbacks", "recommendations served from popular items (cold start)"
        )
        self.model_switches = prom.Counter(
            "recflow_model_switches", "champion models loaded by the running service"
        )
        self.events = prom.Counter("recflow_events", "events received on POST /events")
        self.events_rejected = prom.Counter(
            "recflow_events_rejected",
            "events rejected by POST /events (kept in quarantine), by broken rule",
            ["rule"],
        )


@functools.cache
def metrics() -> Metrics:
    """The metrics, created on first use in the worker: prometheus_client must be imported after BentoML
    sets PROMETHEUS_MULTIPROC_DIR there, or the values never reach `/metrics` (see `bentoml/metrics.py`,
    which BentoML 1.4 deprecates in favour of prometheus_client used this way)."""
    return Metrics()


# FastAPI's own /docs loads Swagger UI from a CDN and /openapi.json covers only these routes: both off;
# `/docs` below renders BentoML's /docs.json (every endpoint) with the assets BentoML serves locally.
http = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@http.exception_handler(RequestValidationError)
async def _unreadable_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that is not a readable request (JSON, top-level fields): 400, as BentoML answers its APIs."""
    detail = jsonable_encoder(exc.errors())
    where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail[:5])
    return JSONResponse({"error": f"Unreadable request: {where}", "detail": detail}, status_code=400)


@http.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own errors (e.g. a body that is not UTF-8) in the service's error shape, `{"error"}`."""
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


@http.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    """Swagger UI over `/docs.json`, every asset from this server."""
    return get_swagger_ui_html(
        openapi_url="/docs.json",
        title="recflow API",
        swagger_js_url=f"{ASSETS}swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}favicon-light-32x32.png",
    )


@http.get("/docs.json", include_in_schema=False)
def openapi_document() -> JSONResponse:
    """BentoML's OpenAPI document of every endpoint, with the service's own description and its 400
    error schema corrected.

    Works around BentoML 1.4.39: `_bentoml_sdk/service/openapi.py` documents the 400 body of an API
    as `{"error", "detail": string}`, while `_bentoml_impl/server/app.py` answers a request that fails
    its pydantic model with `detail` = the list of pydantic errors. The document here says what is
    sent (string or list); `tests/serving/test_http.py` checks that the mismatch is still there.
    """
    service: Any = RecflowService  # a bentoml Service once decorated, which type checkers do not see
    spec = service.openapi_spec.asdict()
    # BentoML's default description is its README template, with badge images from the internet
    spec["info"]["description"] = inspect.cleandoc(service.inner.__doc__ or "")
    detail = spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    detail.pop("type", None)
    detail["anyOf"] = [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
    return JSONResponse(spec)


@http.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    """The API docs (BentoML's own index page pulls a tag manager from the internet)."""
    return RedirectResponse("/docs")


def open_features(settings: Settings) -> tuple[FeatureStore | None, OnlineFeatures | None]:
    """The Feast store and the online feature reader, or (None, None) when no feature repo exists yet."""
    if not (settings.feature_repo_dir / "feature_store.yaml").exists():
        log.warning("No feature repo at %s: every user is served as cold start.", settings.feature_repo_dir)
        return None, None
    from features.online import OnlineFeatures
    from features.store import open_store

    store = open_store(settings)
    return store, OnlineFeatures(store, settings)


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
        metrics()  # registered at start, so /metrics lists them before the first request
        self.store, self.features = open_features(self.settings)
        self.purchases = Purchases.from_validated(self.settings)
        self.known_items = KnownItems(self.settings)
        self.lab = Lab(self.settings)
        self.current: Recommender | None = None
        self._stop = threading.Event()
        self._log_lock = threading.Lock()
        install_log_filter()
        self._erasures_seen = len(audit_hashes(self.settings))
        try:
            self.reload()
        except Exception:  # live but not ready; the watcher retries
            log.exception("Loading the champion model failed; /readyz stays 503 until one loads")
        try:
            self.lab.sync(self.features, self.purchases)
        except Exception:
            log.exception("Loading the running experiment failed; the watcher retries")
        self._watcher = threading.Thread(target=self._watch, name="champion-watcher", daemon=True)
        self._watcher.start()

    # ---- model lifecycle -------------------------------------------------------------------------
    def reload(self) -> bool:
        """Load the champion if it changed; returns True when a new model was swapped in."""
        from serving.package import champion_tag

        tag = champion_tag(self.settings)
        if tag is None or (self.current is not None and self.current.tag == tag):
            return False
        if self.features is None:  # started before the first feature repo (a fresh `recflow up --replay`)
            self.store, self.features = open_features(self.settings)
        recommender = Recommender.from_model_store(self.settings, tag, self.features, self.purchases)
        recommender.observe = _observe
        self.current = recommender  # one reference assignment: atomic for concurrent readers
        gc.collect()
        gc.freeze()  # the loaded model's objects leave the collector's scans: shorter GC pauses, lower p99
        metrics().model_switches.inc()
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
            try:
                self.lab.sync(self.features, self.purchases)
            except Exception:  # keep the current experiment state; the next check tries again
                log.exception("Following the experiment store failed")
            try:
                self._forget_erased()
            except Exception:
                log.exception("Reading the erasure audit log failed; trying again on the next check")
            try:
                self.known_items.refresh()
            except Exception:  # a day being written right now: read it on the next check
                log.exception("Reading the validated catalogue failed; checking events against the old one")
            if (
                self.current is not None
                and time.monotonic() - refreshed > self.settings.serving.feature_refresh_s
            ):
                refreshed = time.monotonic()
                try:
                    self.current.refresh_items()
                except Exception:
                    log.exception("Refreshing the online item features failed; serving the cached ones")

    def _forget_erased(self) -> None:
        """Drop from memory the users erased by `recflow forget` since the last check (by salted hash)."""
        hashes = audit_hashes(self.settings)
        if len(hashes) > self._erasures_seen:
            new = set(hashes[self._erasures_seen :])
            self.purchases.forget_matching(new, lambda u: user_hash(self.settings, u))
            self.lab.forget_matching(new, lambda u: user_hash(self.settings, u))
            self._erasures_seen = len(hashes)

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
        self.lab.close()

    def __is_ready__(self) -> bool:
        return self.current is not None

    # ---- endpoints -------------------------------------------------------------------------------
    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, user_id: str, k: int = 10, region: str | None = None) -> RecommendResponse:
        """Top-k items for a user: retrieval, purchased-item filter, ranking, business rules.

        Runs on the event loop: the whole path is a few milliseconds of CPU, and a hop to a worker
        thread costs more under load than it saves (the GIL serialises the work anyway).
        """
        response = self.lab.recommend(self._model(), user_id, k, region)
        if response.fallback:
            metrics().fallbacks.inc()
        return response

    @bentoml.api(route="/similar-items", input_spec=SimilarItemsRequest)
    def similar_items(self, item_id: str, k: int = 10) -> SimilarItemsResponse:
        """Items closest to `item_id` in the candidate tower's embedding space."""
        try:
            return self._model().similar_items(item_id, k)
        except UnknownItemError as e:
            # a response, not bentoml.exceptions.NotFound: BentoML 1.4.39 sends that one's body as a
            # one-element list, `[{"error": ...}]`, not the object its OpenAPI document promises
            return JSONResponse({"error": str(e)}, status_code=404)  # type: ignore[return-value]

    @http.get("/metadata", response_model=ModelMetadata, tags=["Service APIs"])
    def metadata(self) -> ModelMetadata:
        """Served model tag, champion, training window, metrics and index settings."""
        from serving.package import champion_tag

        if self.current is None:  # before the first champion: 503 like /recommend, not a 500
            raise StarletteHTTPException(503, "No promoted model yet: package and promote one, then retry.")
        return ModelMetadata(champion=champion_tag(self.settings), **self._model().describe())

    @http.post(
        "/events",
        response_model=EventsResponse,
        tags=["Service APIs"],
        responses={
            400: {"model": ErrorResponse, "description": "not a readable request (JSON, `events` list)"},
            422: {
                "model": EventsResponse,
                "description": "every event was rejected (all kept in quarantine)",
            },
        },
    )
    def events(self, request: EventsRequest, response: Response) -> EventsResponse:
        """Check each event against the data contract; log and push the valid ones, quarantine the rest.

        The rules are a batch's (the events expectation suite): the event's shape, an item of the
        validated catalogue, a timestamp from `serving.events_max_age_days` ago to
        `serving.events_clock_skew_s` ahead of the server's clock (the server's time when omitted);
        a new user is valid. Valid events are logged for the next batch and pushed to the online store
        even when others in the request are rejected (200); when all are rejected the answer is 422.
        Either way `errors` lists every rejected event (`index` in `events`, `field`, `rule`, `reason`)
        and rejected events are kept with their reasons in `quarantine_path`: nothing is lost.
        """
        result = self.ingest(request.events)
        if result.accepted == 0:
            response.status_code = 422
        return result

    @http.get(
        "/experiment",
        tags=["Admin"],
        responses={
            401: {"model": ErrorResponse, "description": "missing or wrong API key"},
            403: {"model": ErrorResponse, "description": "no admin role, or no admin key configured"},
        },
    )
    def experiment(self) -> dict:
        """The running (or last) experiment, whether this service serves it, and per-variant counts (admin)."""
        latest = self.lab.store.latest()
        if latest is None:
            return {"experiment": None, "serving": None, "variants": {}}
        arm = self.lab.arm
        return {
            "experiment": {k: v for k, v in latest.__dict__.items() if k != "salt"},
            "serving": arm.experiment.id if arm is not None else None,
            "variants": self.lab.store.summary(latest.id),
        }

    @http.delete(
        "/users/{user_id}",
        response_model=ErasureResponse,
        tags=["Admin"],
        responses={
            400: {"model": ErrorResponse, "description": "not a user id (3-64 characters)"},
            401: {"model": ErrorResponse, "description": "missing or wrong API key"},
            403: {"model": ErrorResponse, "description": "no admin role, or no admin key configured"},
        },
    )
    def forget(
        self, user_id: str = Path(min_length=3, max_length=64, description="the user to erase")
    ) -> ErasureResponse:
        """Erase a user from every store under the home and from this service's memory (admin role).

        Raw and validated batches, quarantine, the offline and online feature stores, event and
        experiment logs, reports: see `recflow/erasure.py`. The next `/recommend` for the user answers a
        new user. The audit log records a salted hash of the id, never the id.
        """
        from recflow.erasure import forget_user, redact_metrics

        self.lab.forget(user_id)
        with self._log_lock:  # no event line is appended while the logs are rewritten
            report = forget_user(self.settings, user_id, source="api")
        self.purchases.forget(user_id)
        answer = ErasureResponse(
            user_hash=report.user_hash,
            removed=report.removed,
            files=report.files,
            redis_keys=report.redis_keys,
            unhandled=report.unhandled,
        )
        # BentoML counts this very request under its path once the answer is sent: redact that too
        return JSONResponse(  # type: ignore[return-value]
            answer.model_dump(), background=BackgroundTask(redact_metrics, metrics_dir(), user_id)
        )

    def ingest(self, rows: list[Any]) -> EventsResponse:
        """`POST /events` in process: check, quarantine, log and push; see `events`."""
        now = datetime.now(UTC)
        checked = check_events(rows, self.known_items.ids, self.settings, now)
        day = now.date().isoformat()
        quarantine_path = None
        if checked.errors:
            quarantine_path = append(
                self.settings.quarantine_dir / "live" / day / "events.jsonl",
                quarantine_lines(rows, checked.errors, now),
                self._log_lock,
            )
            for error in checked.errors:
                metrics().events_rejected.labels(rule=error.rule).inc()
        frame, log_path, pushed, attributed = checked.valid, None, 0, 0
        if len(frame):
            log_path = append(
                self.settings.home / "incoming" / day / "events.jsonl", log_lines(frame), self._log_lock
            )
            self.purchases.add(frame)
            attributed = self.lab.attribute(rows, frame)
            if self.store is not None:
                from features.online import push_user_events

                push_user_events(self.store, frame)
                pushed = len(frame)
        metrics().events.inc(len(rows))
        rejected = len(checked.rejected_indexes)
        return EventsResponse(
            accepted=len(frame),
            pushed=pushed,
            attributed=attributed,
            rejected=rejected,
            errors=checked.errors,
            log_path=log_path and str(log_path),
            quarantine_path=quarantine_path and str(quarantine_path),
            error=None if len(frame) else f"All {rejected} event(s) rejected; see errors.",
        )


_service: Any = RecflowService  # a bentoml Service once decorated, which type checkers do not see
_service.add_asgi_middleware(ApiKeyMiddleware)


def _observe(stage: str, seconds: float) -> None:
    metrics().stage_seconds.labels(stage=stage).observe(seconds)
