"""The BentoML service class in process: endpoints, real-time events, and a model switch under load."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.package import promote, save_to_model_store
from serving.schemas import Event
from serving.server import SETTINGS_ENV, settings_to_env


def recommend(svc, **request):
    """Call the async `/recommend` method of a service instance, as BentoML's event loop would."""
    return asyncio.run(svc.recommend(**request))


@pytest.fixture
def service(private_settings, monkeypatch):
    """A service instance over a private home, as BentoML would create it in a worker."""
    from serving.service import RecflowService

    private_settings.serving.reload_interval_s = 0.2
    monkeypatch.setenv(SETTINGS_ENV, settings_to_env(private_settings))
    svc = RecflowService()
    yield svc
    svc.shutdown()


def test_recommend_and_metadata_in_process(service, served):
    response = recommend(service, user_id="nobody", k=4)
    assert response.model == served.tag and response.fallback is True and len(response.items) == 4
    meta = service.metadata()
    assert meta.model == meta.champion == served.tag
    assert meta.index["kind"] == "flat" and meta.index["recall_at_10"] == 1.0
    assert "recall@10" in meta.metadata["metrics"]["model"]
    assert service.__is_ready__()


def test_events_change_the_next_recommendation_and_are_logged(service, reason_is_true):
    from features.online import push_user_events  # noqa: F401  (the service pushes through it)

    model = service.current
    items = service.features.items(list(model.bundle.item_ids))
    category = items["category"].value_counts().index[0]
    viewed = [str(i) for i in items[items["category"] == category].index[:4]]
    user = "live-shopper"
    before = recommend(service, user_id=user, k=5)
    assert before.fallback is True  # never seen: popular items

    answer = service.ingest([Event(user_id=user, item_id=i, event_type="view") for i in viewed])
    assert answer.accepted == answer.pushed == 4 and answer.rejected == 0 and answer.errors == []
    after = recommend(service, user_id=user, k=5)
    assert after.fallback is False
    assert [i.item_id for i in after.items] != [i.item_id for i in before.items]
    assert all(reason_is_true(i, set(viewed)) for i in after.items)
    logged = service.settings.home / "incoming"
    lines = [ln for p in logged.rglob("events.jsonl") for ln in p.read_text().splitlines()]
    assert len(lines) == 4 and all(user in ln for ln in lines)


def test_a_purchase_posted_to_events_is_filtered_at_once(service, served):
    user = "buyer-now"
    first = recommend(service, user_id=user, k=3)
    service.ingest([Event(user_id=user, item_id=first.items[0].item_id, event_type="view")])
    top = recommend(service, user_id=user, k=3).items[0].item_id
    service.ingest([Event(user_id=user, item_id=top, event_type="purchase")])
    assert top not in [i.item_id for i in recommend(service, user_id=user, k=50).items]


def test_model_switch_under_load_fails_no_request(service, served):
    settings = service.settings
    new_tag = save_to_model_store(settings, served.bundle_path, {"note": "challenger"})
    failures, seen, stop = [], set(), threading.Event()

    def hammer(user: str) -> None:
        while not stop.is_set():
            try:
                seen.add(recommend(service, user_id=user, k=5).model)
            except Exception as e:  # any failure counts
                failures.append(repr(e))

    threads = [threading.Thread(target=hammer, args=(u,)) for u in ("u000001", "nobody")]
    for t in threads:
        t.start()
    time.sleep(1.0)
    promote(settings, new_tag)
    deadline = time.monotonic() + 60
    while service.current.tag != new_tag and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert seen == {served.tag, new_tag}
    assert service.metadata().model == new_tag


def test_without_a_champion_the_service_is_live_but_not_ready(private_settings, monkeypatch):
    import bentoml

    from serving.package import champion_path
    from serving.service import RecflowService

    champion_path(private_settings).unlink()
    monkeypatch.setenv(SETTINGS_ENV, settings_to_env(private_settings))
    svc = RecflowService()
    try:
        assert not svc.__is_ready__()
        with pytest.raises(bentoml.exceptions.ServiceUnavailable, match="No promoted model"):
            recommend(svc, user_id="u000001", k=3)
    finally:
        svc.shutdown()
