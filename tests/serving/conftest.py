"""One tiny trained, packaged and promoted model for all serving tests (trained once per session)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recflow.settings import Settings, load_settings


@dataclass(frozen=True)
class Served:
    """A home with validated tiny batches, a materialized feature store and a promoted model."""

    settings: Settings
    tag: str
    bundle_path: Path


def copy_home(served: Served, target: Path, **overrides) -> Settings:
    """Settings over a private copy of the served home (for tests that push events or promote models)."""
    shutil.copytree(served.settings.home, target / "home", symlinks=True)
    return load_settings("tiny", home=target / "home", **overrides)


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    """Land tiny batches, build and materialize the feature store, train, package and promote once."""
    from features.store import materialize, prepare_feature_store
    from models.train import train_models
    from recflow.data.sources import land_batches
    from serving.package import promote, save_to_model_store

    settings = load_settings("tiny", home=tmp_path_factory.mktemp("serving") / "home")
    for batch in land_batches(settings):
        shutil.copytree(batch.path, settings.validated_dir / batch.path.name)
    store = prepare_feature_store(settings)
    materialize(settings, store, datetime.now(UTC))
    result = train_models(settings, store, verbose=0)
    tag = save_to_model_store(settings, result.bundle_path, {"metrics": result.metrics})
    promote(settings, tag)
    return Served(settings, tag, result.bundle_path)


@pytest.fixture(scope="session")
def online(served):
    """The online feature reader over the served home."""
    from features.online import OnlineFeatures
    from features.store import open_store

    return OnlineFeatures(open_store(served.settings), served.settings)


@pytest.fixture
def private_settings(served, tmp_path) -> Settings:
    """Settings over a private copy of the served home: promote, push events, build bentos freely."""
    return copy_home(served, tmp_path)


def _reason_is_true(item, history: set[str]) -> bool:
    """A model reason names the user's history: the item itself was viewed, or it is similar to another."""
    if item.reason == "you viewed it recently":
        return item.item_id in history
    named = item.reason.removeprefix("similar to ").split(",")[0]
    return item.reason.startswith("similar to ") and named in history and named != item.item_id


@pytest.fixture
def reason_is_true():
    return _reason_is_true
