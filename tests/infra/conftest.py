"""Fixtures for the infra checks: the parsed manifests and compose file, and the valid RECFLOW_* names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from recflow.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"


def settings_env_names(model: type[BaseModel] = Settings, prefix: str = "RECFLOW_") -> set[str]:
    """Every environment variable name that `Settings()` reads, nested sections joined with `__`."""
    names = set()
    for name, field in model.model_fields.items():
        env = f"{prefix}{name}".upper()
        names.add(env)
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= settings_env_names(kind, prefix=f"{env}__")
    return names


@pytest.fixture(scope="session")
def k8s_docs() -> list[tuple[Path, dict]]:
    """(file, object) for every Kubernetes object under infra/k8s/."""
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"no manifests under {INFRA / 'k8s'}"
    return docs


@pytest.fixture(scope="session")
def compose() -> dict:
    """infra/compose.yaml, parsed."""
    return yaml.safe_load((INFRA / "compose.yaml").read_text())
