"""Every RECFLOW_* variable the infra files set is a field that recflow.settings.Settings reads."""

from __future__ import annotations

import re

import pytest
from conftest import INFRA, settings_env_names

from recflow.settings import Settings

NAME = re.compile(r"\bRECFLOW_[A-Z0-9_]+")
INFRA_FILES = sorted(p for p in INFRA.rglob("*") if p.is_file() and p.name != ".gitignore")


def test_valid_names_are_walked_from_the_model():
    names = settings_env_names()
    assert {"RECFLOW_HOME", "RECFLOW_PREFECT_DATABASE_URL", "RECFLOW_FEATURES__ONLINE_STORE"} <= names
    assert "RECFLOW_SERVING__API_KEY" in names and "RECFLOW_SERVING__APIKEY" not in names


@pytest.mark.parametrize("path", INFRA_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_recflow_variables_in_infra_are_settings_fields(path):
    names = settings_env_names()
    used = set(NAME.findall(path.read_text()))
    # `RECFLOW_FEATURES__*` in prose names a whole section
    unknown = {n for n in used if n not in names and not (n.endswith("__") and n[:-2] in names)}
    assert not unknown, f"{path.relative_to(INFRA.parent)} sets {sorted(unknown)}: not fields of Settings"


def test_infra_uses_the_settings_each_service_needs():
    used = set().union(*(NAME.findall(p.read_text()) for p in INFRA_FILES))
    assert {
        "RECFLOW_HOME",
        "RECFLOW_FEATURES__ONLINE_STORE",
        "RECFLOW_FEATURES__REDIS_HOST",
        "RECFLOW_SERVING__API_KEY",
        "RECFLOW_PREFECT_DATABASE_URL",
    } <= used


def test_config_map_values_load_into_settings(k8s_docs, monkeypatch):
    """The ConfigMap's values parse into the typed settings (a bad value or name would not)."""
    (config,) = [
        d for _, d in k8s_docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "recflow-config"
    ]
    for key, value in config["data"].items():
        if key.startswith("RECFLOW_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("RECFLOW_SERVING__API_KEY", "from-a-secret")
    settings = Settings()
    assert settings.features.online_store == "redis"
    assert settings.features.redis_host == "redis.recflow.svc.cluster.local"
    assert settings.features.redis_port == 6379
    assert str(settings.home) == "/data/.recflow"
    assert settings.serving.api_key.get_secret_value() == "from-a-secret"


def test_compose_values_load_into_settings(compose, monkeypatch):
    for key, value in compose["x-recflow-env"].items():
        if key.startswith("RECFLOW_"):
            monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert (settings.features.online_store, settings.features.redis_host) == ("redis", "redis")
