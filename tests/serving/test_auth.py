"""API keys with roles over real HTTP: 401 without a known key, 403 without the role, admin closed by default."""

from __future__ import annotations

import shutil

import httpx
import pytest

from recflow.settings import load_settings
from serving.auth import KeyRing, decide
from serving.server import running_server

KEYS = {"k-read-7f3a": "read", "k-write-91bc": "write", "k-both-2d4e": "read,write", "k-admin-c0de": "admin"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_roles_decide_without_a_server():
    ring = KeyRing.from_settings(load_settings("tiny", serving={"api_keys": KEYS}))
    assert decide(ring, "POST", "/recommend", None)[0] == 401
    assert decide(ring, "POST", "/recommend", "Bearer nope")[0] == 401
    assert decide(ring, "POST", "/recommend", "k-read-7f3a")[0] == 401  # the scheme is required
    assert decide(ring, "POST", "/recommend", "Bearer k-read-7f3a") is None
    assert decide(ring, "POST", "/events", "Bearer k-read-7f3a")[0] == 403
    assert decide(ring, "POST", "/events", "Bearer k-write-91bc") is None
    assert decide(ring, "POST", "/recommend", "Bearer k-write-91bc")[0] == 403
    assert decide(ring, "DELETE", "/users/u1", "Bearer k-both-2d4e")[0] == 403
    assert decide(ring, "DELETE", "/users/u1", "Bearer k-admin-c0de") is None
    assert decide(ring, "POST", "/events", "Bearer k-admin-c0de") is None  # admin may do everything
    assert decide(ring, "GET", "/livez", None) is None and decide(ring, "GET", "/docs.json", None) is None

    legacy = KeyRing.from_settings(load_settings("tiny", serving={"api_key": "old-key"}))
    assert decide(legacy, "POST", "/events", "Bearer old-key") is None
    assert decide(legacy, "DELETE", "/users/u1", "Bearer old-key")[0] == 403  # no admin key configured

    none = KeyRing.from_settings(load_settings("tiny"))
    assert decide(none, "POST", "/recommend", None) is None and decide(none, "POST", "/events", None) is None
    assert decide(none, "DELETE", "/users/u1", "Bearer anything")[0] == 403


def test_an_unknown_role_is_refused_when_settings_load():
    with pytest.raises(ValueError, match="Unknown role 'root'"):
        load_settings("tiny", serving={"api_keys": {"k": "read,root"}})


def test_settings_repr_does_not_show_the_keys():
    settings = load_settings("tiny", serving={"api_keys": KEYS})
    assert "k-admin-c0de" not in repr(settings) and "k-admin-c0de" not in str(settings.serving)


@pytest.fixture(scope="module")
def homes(served, tmp_path_factory):
    def home(name: str):
        target = tmp_path_factory.mktemp(name) / "home"
        shutil.copytree(served.settings.home, target, symlinks=True)
        return target

    return home


def test_keys_with_roles_over_http(served, homes):
    cfg = load_settings("tiny", home=homes("auth"), serving={"api_keys": KEYS})
    body = {"user_id": "u000001", "k": 3}
    event = {"events": [{"user_id": "u000001", "item_id": "i000001", "event_type": "view"}]}
    with running_server(cfg) as url:
        assert httpx.get(f"{url}/readyz").status_code == 200
        for headers in ({}, bearer("wrong"), {"Authorization": "k-read-7f3a"}):
            r = httpx.post(f"{url}/recommend", json=body, headers=headers)
            assert (
                r.status_code == 401 and "items" not in r.text and r.headers["www-authenticate"] == "Bearer"
            )
        r = httpx.post(f"{url}/recommend", json=body, headers=bearer("k-write-91bc"))
        assert r.status_code == 403 and "'read' role" in r.json()["error"] and "items" not in r.json()
        assert httpx.get(f"{url}/metadata", headers=bearer("k-write-91bc")).status_code == 403
        r = httpx.post(f"{url}/recommend", json=body, headers=bearer("k-read-7f3a"))
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        assert httpx.post(f"{url}/events", json=event, headers=bearer("k-read-7f3a")).status_code == 403
        assert httpx.post(f"{url}/events", json=event, headers=bearer("k-write-91bc")).status_code == 200
        assert httpx.post(f"{url}/recommend", json=body, headers=bearer("k-both-2d4e")).status_code == 200
        assert httpx.post(f"{url}/recommend", json=body, headers=bearer("k-admin-c0de")).status_code == 200
        for key in ("k-read-7f3a", "k-write-91bc", "k-both-2d4e"):
            assert httpx.delete(f"{url}/users/u999999", headers=bearer(key)).status_code == 403
        assert httpx.delete(f"{url}/users/u999999").status_code == 401
        assert httpx.get(f"{url}/experiment", headers=bearer("k-both-2d4e")).status_code == 403
        r = httpx.get(f"{url}/experiment", headers=bearer("k-admin-c0de"))
        assert r.status_code == 200 and r.json()["experiment"] is None, r.text
        assert httpx.get(f"{url}/livez").status_code == 200  # health stays open


def test_without_keys_reads_and_writes_are_open_and_admin_is_closed(served, homes):
    cfg = load_settings("tiny", home=homes("open"))
    with running_server(cfg) as url:
        r = httpx.post(f"{url}/recommend", json={"user_id": "u000001", "k": 2})
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        event = {"events": [{"user_id": "u000001", "item_id": "i000001", "event_type": "view"}]}
        assert httpx.post(f"{url}/events", json=event).status_code == 200
        for headers in ({}, bearer("k-admin-c0de")):
            r = httpx.delete(f"{url}/users/u000001", headers=headers)
            assert r.status_code == 403 and "admin key" in r.json()["error"]
