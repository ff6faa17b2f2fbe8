"""Shared fixtures: tiny settings in a temporary home, environment switches for the libraries."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

import pytest  # noqa: E402

from recflow.settings import Settings, load_settings  # noqa: E402


@pytest.fixture
def tiny_settings(tmp_path) -> Settings:
    """Settings of the `tiny` profile with every artefact under a fresh temporary folder."""
    return load_settings("tiny", home=tmp_path / "home")
