"""The service over real HTTP on a free loopback port: health, auth, 4xx on bad input, fuzzing, model switch."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from serving.package import promote, save_to_model_store
from serving.server import running_server

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    """The service in a child process, API key on, champion watched every half second."""
    import shutil

    from recflow.settings import load_settings

    home = tmp_path_factory.mktemp("http") / "home"
    shutil.copytree(served.settings.home, home, symlinks=True)
    cfg = load_settings("tiny", home=home, serving={"api_key": KEY, "reload_interval_s": 0.5})
    with running_server(cfg) as url:
        yield url, cfg


def test_health_is_open_and_recommend_needs_the_key(server, served):
    url, _ = server
    assert httpx.get(f"{url}/livez").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    body = {"user_id": "u000001", "k": 3}
    assert httpx.post(f"{url}/recommend", json=body).status_code == 401
    assert (
        httpx.post(f"{url}/recommend", json=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    r = httpx.post(f"{url}/recommend", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == {"user_id", "items", "model", "fallback"} and len(data["items"]) == 3
    assert set(data["items"][0]) == {"item_id", "score", "reason"}
    assert httpx.get(f"{url}/metadata", headers=AUTH).json()["champion"] == served.tag


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "u000001", "k": 0},
        {"user_id": "u000001", "k": 101},
        {"user_id": "x" * 65},
        {"user_id": 5},
        {"k": 3},
        {"user_id": "u000001", "k": "ten"},
        "{not json",
        [1, 2],
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(server, body):
    url, _ = server
    kwargs = {"content": body} if isinstance(body, str) else {"json": body}
    r = httpx.post(f"{url}/recommend", headers={**AUTH, "Content-Type": "application/json"}, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]


def test_unknown_item_is_a_404_and_metrics_count_stages(server):
    url, _ = server
    r = httpx.post(f"{url}/similar-items", json={"item_id": "nope", "k": 3}, headers=AUTH)
    assert r.status_code == 404 and "Unknown item_id 'nope'" in r.text
    httpx.post(f"{url}/recommend", json={"user_id": "nobody"}, headers=AUTH)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'recflow_stage_seconds_count{stage="total"}' in metrics
    assert "recflow_fallbacks_total" in metrics


def test_fuzzed_requests_never_get_a_server_error(server):
    """Schemathesis fuzzes every operation of the service's own OpenAPI, valid and invalid data alike."""
    url, _ = server
    schema = schemathesis.openapi.from_url(f"{url}/docs.json")
    calls: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
            )
            def fuzz(case) -> None:
                response = case.call(base_url=url, headers=AUTH, timeout=10)
                calls.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                fuzz()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
                assert mode is GenerationMode.NEGATIVE
    assert len(calls) > 50
    assert not [c for c in calls if c >= 500]


def test_model_switch_over_http_fails_no_request(server, served):
    url, cfg = server
    new_tag = save_to_model_store(cfg, served.bundle_path, {"note": "challenger"})
    statuses, models, stop = [], set(), threading.Event()

    def hammer() -> None:
        with httpx.Client(headers=AUTH, timeout=10) as client:
            while not stop.is_set():
                r = client.post(f"{url}/recommend", json={"user_id": "u000002", "k": 5})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    models.add(r.json()["model"])

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    promote(cfg, new_tag)
    deadline = time.monotonic() + 60
    while new_tag not in models and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert len(statuses) > 20
    assert [s for s in statuses if s != 200] == []
    assert models == {served.tag, new_tag}
