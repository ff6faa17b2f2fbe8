"""Feature-store fixtures: one tiny materialized SQLite store per session, Redis stores per test."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass

import pytest

from recflow.settings import Settings, load_settings


@dataclass(frozen=True)
class World:
    """Tiny settings with validated batches and a prepared, materialized Feast store."""

    settings: Settings
    store: object


def _validated_home(settings: Settings) -> Settings:
    from recflow.data.sources import land_batches

    for batch in land_batches(settings):
        shutil.copytree(batch.path, settings.validated_dir / batch.path.name)
    return settings


@pytest.fixture(scope="session")
def feature_world(tmp_path_factory) -> World:
    """The tiny world on SQLite, materialized up to the end of the newest batch (read-only for tests)."""
    from features.store import materialize, prepare_feature_store

    settings = _validated_home(load_settings("tiny", home=tmp_path_factory.mktemp("features") / "home"))
    store = prepare_feature_store(settings)
    materialize(settings, store)
    return World(settings, store)


@pytest.fixture
def redis_settings(tiny_batches, tiny_settings) -> Settings:
    """Tiny settings on the real Redis, under a project name of their own; the keys are deleted after."""
    import redis

    project = f"t{uuid.uuid4().hex[:12]}"
    settings = tiny_settings.model_copy(
        update={
            "features": tiny_settings.features.model_copy(
                update={"online_store": "redis", "project": project}
            )
        }
    )
    yield settings
    from features.store import open_store

    try:
        open_store(settings).teardown()
    finally:
        client = redis.Redis(host=settings.features.redis_host, port=settings.features.redis_port)
        stale = list(client.scan_iter(match=f"*{project}"))
        if stale:
            client.delete(*stale)
