"""The compose topology: it parses, names pinned images that exist, wires services, keeps secrets out."""

from __future__ import annotations

import re

from conftest import INFRA

# Official images used by the topology (pinned tags), plus the two images built from this repository.
OFFICIAL = {
    "postgres": re.compile(r"^postgres:\d+(\.\d+)?$"),
    "redis": re.compile(r"^redis:\d+(\.\d+)*$"),
    "prefect": re.compile(r"^prefecthq/prefect:3\.8\.8-python3\.11(-kubernetes)?$"),
}
RUNTIME_IMAGE = re.compile(r"^recflow:\d+\.\d+\.\d+$")  # infra/Dockerfile
BENTO_IMAGE = re.compile(r"^\$\{BENTO_IMAGE:-recflow-recommender:\d+\.\d+\.\d+\}$")  # bentoml containerize
EXPECTED = {"postgres", "redis", "prefect-server", "prefect-worker", "bentoml", "evidently-ui"}


def test_compose_names_the_topology(compose):
    assert set(compose["services"]) == EXPECTED


def test_every_service_names_a_pinned_official_image_or_one_built_here(compose):
    services = compose["services"]
    for name, service in services.items():
        image = service["image"]
        if RUNTIME_IMAGE.match(image):
            builders = [s["build"] for s in services.values() if s["image"] == image and "build" in s]
            assert builders, f"{name}: nothing builds {image}"
            (build,) = builders
            assert (INFRA / build["context"] / build["dockerfile"]).resolve().is_file()
        elif BENTO_IMAGE.match(image):
            assert name == "bentoml", f"{name}: only the BentoML service runs the bento image"
        else:
            assert any(p.match(image) for p in OFFICIAL.values()), f"{name}: unexpected image {image!r}"


def test_dependencies_and_urls_point_at_services(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep!r}"
    worker_env = services["prefect-worker"]["environment"]
    assert worker_env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker_env["RECFLOW_FEATURES__ONLINE_STORE"] == "redis"
    assert worker_env["RECFLOW_FEATURES__REDIS_HOST"] in services
    db_url = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert db_url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in db_url
    assert "--pool" in services["prefect-worker"]["command"]


def test_bentoml_service_is_health_checked_on_readyz(compose):
    service = compose["services"]["bentoml"]
    assert "3000:3000" in service["ports"]
    assert any("/readyz" in part for part in service["healthcheck"]["test"])


def test_secrets_come_from_the_environment_not_the_file(compose):
    secret_like = re.compile(r"PASSWORD|API_KEY|SECRET|TOKEN")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret_like.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), f"{name}.{key} is a literal"
    db_url = compose["services"]["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "${POSTGRES_PASSWORD:?" in db_url
    assert ".env" in (INFRA / ".gitignore").read_text().split()
