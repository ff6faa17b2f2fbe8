"""The in-process request path on a real tiny package and real Feast online features."""

from __future__ import annotations

import pandas as pd
import pytest

from recflow.data.batches import read_events
from serving.purchases import Purchases
from serving.recommender import STAGES, Recommender, UnknownItemError


@pytest.fixture(scope="module")
def recommender(served, online) -> Recommender:
    purchases = Purchases.from_validated(served.settings)
    return Recommender.from_model_store(served.settings, served.tag, online, purchases)


@pytest.fixture(scope="module")
def buyer(served) -> str:
    """The user with the most purchases in the validated events."""
    events = read_events(served.settings.validated_dir)
    return str(events[events["event_type"] == "purchase"]["user_id"].value_counts().index[0])


def test_known_user_gets_k_ranked_items_without_purchased_ones(recommender, online, buyer, reason_is_true):
    response = recommender.recommend(buyer, 10)
    ids = [i.item_id for i in response.items]
    assert response.fallback is False and response.model == recommender.tag
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not set(ids) & recommender.purchases.of(buyer)
    scores = [i.score for i in response.items]
    assert scores == sorted(scores, reverse=True)
    recent = set(online.user(buyer)["recent_items"])
    for item in response.items:  # the reason is true: it names the user's history, never the item itself
        assert reason_is_true(item, recent), item


def test_purchased_items_are_backfilled_so_the_list_stays_full(recommender, buyer):
    n_items = len(recommender.bundle.item_ids)
    bought = recommender.purchases.of(buyer)
    response = recommender.recommend(buyer, 100)
    ids = [i.item_id for i in response.items]
    assert len(ids) == len(set(ids)) == min(100, n_items - len(bought))
    assert not set(ids) & bought


def test_unknown_user_gets_popular_items_as_fallback(recommender):
    response = recommender.recommend("nobody-at-all", 5)
    assert response.fallback is True
    assert [i.item_id for i in response.items] == recommender.bundle.popular["global"][:5]
    assert {i.reason for i in response.items} == {"popular overall"}


def test_unknown_user_with_a_region_gets_that_region_s_popular_items(recommender):
    region, items = next(iter(recommender.bundle.popular["by_region"].items()))
    response = recommender.recommend("nobody-at-all", 3, region=region)
    assert response.fallback is True
    assert [i.item_id for i in response.items] == items[:3]
    assert response.items[0].reason == f"popular in region {region}"


def test_at_most_m_items_per_category(served, online, buyer):
    settings = served.settings.model_copy(deep=True)
    settings.serving.max_per_category = 1
    recommender = Recommender.from_model_store(settings, served.tag, online)
    response = recommender.recommend(buyer, 5)
    model_items = [i.item_id for i in response.items if not i.reason.startswith("popular")]
    categories = online.items(model_items)["category"].tolist()
    assert len(model_items) >= 3 and len(categories) == len(set(categories))
    assert len(response.items) == 5


def test_unknown_items_in_a_history_are_ignored(served, recommender, online):
    from features.online import push_user_events

    known = str(recommender.bundle.item_ids[3])
    events = pd.DataFrame(
        {
            "user_id": ["fresh-user", "fresh-user"],
            "item_id": [known, "zz-not-in-catalogue"],
            "timestamp": pd.Timestamp.now(tz="UTC"),
        }
    )
    push_user_events(online.store, events)
    response = recommender.recommend("fresh-user", 4)
    assert response.fallback is False and len(response.items) == 4
    for item in response.items:
        expected = (
            "you viewed it recently" if item.item_id == known else f"similar to {known}, which you viewed"
        )
        assert item.reason in (expected, "popular overall")  # a model item names the one known item


def test_similar_items_excludes_the_item_and_is_sorted(recommender):
    item = str(recommender.bundle.item_ids[0])
    response = recommender.similar_items(item, 5)
    ids = [i.item_id for i in response.items]
    assert item not in ids and len(ids) == 5
    assert [i.score for i in response.items] == sorted((i.score for i in response.items), reverse=True)
    with pytest.raises(UnknownItemError, match="Unknown item_id 'nope'"):
        recommender.similar_items("nope", 5)


def test_every_stage_is_timed(served, online, buyer):
    seen: dict[str, float] = {}
    recommender = Recommender.from_model_store(served.settings, served.tag, online)
    recommender.observe = seen.__setitem__
    recommender.recommend(buyer, 3)
    assert set(seen) == set(STAGES) and all(v >= 0 for v in seen.values())
    assert seen["total"] >= seen["score"]


def test_one_request_lists_exactly_what_the_batch_scorer_lists(served, recommender, online):
    """The service's path for one user and the batch path for many give the same top-10, item for item."""

    events = read_events(served.settings.validated_dir)
    users = sorted(events["user_id"].astype(str).unique())[:40]
    single = {u: [i.item_id for i in recommender.recommend(u, 10).items] for u in users}
    queries = []
    for u in users:
        features = online.user(u)
        queries.append(recommender.query(u, features))
    batch = recommender.scorer.recommend(queries, 10)
    for u, ranked in zip(users, batch, strict=True):
        assert recommender.bundle.catalogue.ids(ranked.rows) == single[u], u
