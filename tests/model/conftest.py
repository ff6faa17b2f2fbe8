"""Model-test fixtures: one tiny synthetic world with a prepared Feast store, shared by the model tests."""

from __future__ import annotations

import shutil

import pytest

from recflow.settings import Settings, load_settings


@pytest.fixture(scope="session")
def model_world(tmp_path_factory) -> tuple[Settings, object]:
    """Tiny settings, validated batches (synthetic data copied as-is) and a prepared Feast store."""
    from features.store import prepare_feature_store
    from recflow.data.sources import land_batches

    settings = load_settings("tiny", home=tmp_path_factory.mktemp("models") / "home")
    for batch in land_batches(settings):
        shutil.copytree(batch.path, settings.validated_dir / batch.path.name)
    return settings, prepare_feature_store(settings)


@pytest.fixture(scope="session")
def tiny_data(model_world):
    """Training data of the tiny world, from Feast."""
    from models.data import build_training_data

    settings, store = model_world
    return build_training_data(settings, store)
