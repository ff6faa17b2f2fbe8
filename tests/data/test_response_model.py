"""The market's response model: taste and position drive clicks, purchases follow carts, draws are seeded."""

from __future__ import annotations

import numpy as np

from recflow.data.market import ResponseModel, Shoppers
from recflow.data.synthetic import build_world, taste_on


def _draws(
    model: ResponseModel, in_taste: list[bool], n: int = 20_000, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    answers = [model.respond(rng, in_taste) for _ in range(n)]
    return {kind: np.array([getattr(a, kind) for a in answers]) for kind in ("clicks", "carts", "purchases")}


def test_in_taste_items_are_clicked_and_bought_more():
    model = ResponseModel()
    liked, other = _draws(model, [True] * 10), _draws(model, [False] * 10)
    # in-taste lift 5: 0.04 * 5 * mean position factor vs 0.04 * mean position factor
    assert liked["clicks"].mean() > 4 * other["clicks"].mean()
    assert liked["purchases"].mean() > 3 * other["purchases"].mean()
    np.testing.assert_allclose(liked["clicks"].mean(axis=0), model.click_probability([True] * 10), atol=0.01)


def test_position_matters():
    model = ResponseModel()
    clicks = _draws(model, [True] * 10)["clicks"].mean(axis=0)
    assert clicks[0] > 1.8 * clicks[9]  # 1 / (1 + 0.2 * 9) = 0.36 of the first position's rate
    assert np.all(np.diff(model.click_probability([True] * 10)) < 0)
    # the same item answers by where it is shown: first in one list, last in another
    flags = [False] * 9 + [True]
    assert model.click_probability(flags)[9] < model.click_probability(flags[::-1])[0]


def test_purchases_within_carts_within_clicks():
    draws = _draws(ResponseModel(p_click=0.5), [True, False] * 5, n=2_000)
    assert not (draws["carts"] & ~draws["clicks"]).any()
    assert not (draws["purchases"] & ~draws["carts"]).any()
    assert draws["purchases"].any()


def test_deterministic_per_seed():
    a = _draws(ResponseModel(), [True, False] * 5, n=500, seed=3)
    b = _draws(ResponseModel(), [True, False] * 5, n=500, seed=3)
    c = _draws(ResponseModel(), [True, False] * 5, n=500, seed=4)
    for kind in a:
        np.testing.assert_array_equal(a[kind], b[kind])
    assert not np.array_equal(a["clicks"], c["clicks"])


def test_shoppers_answer_by_the_generators_hidden_taste(tiny_settings):
    cfg = tiny_settings.data
    world = build_world(cfg, 5)
    shoppers = Shoppers(world, cfg, 5)
    user = 7
    items_cluster = world.category_cluster[world.item_category]
    mine = world.items["item_id"].to_numpy()[items_cluster == world.user_cluster[user]][:10]
    others = world.items["item_id"].to_numpy()[items_cluster != world.user_cluster[user]][:10]
    user_id = world.users["user_id"].iloc[user]
    assert shoppers.in_taste(user_id, list(mine), day=0).all()
    assert not shoppers.in_taste(user_id, list(others), day=0).any()
    rng = np.random.default_rng(0)
    bought_mine = sum(shoppers.respond(rng, user_id, list(mine), 0).purchases.sum() for _ in range(3000))
    bought_others = sum(shoppers.respond(rng, user_id, list(others), 0).purchases.sum() for _ in range(3000))
    assert bought_mine > 3 * bought_others


def test_taste_moves_with_the_drift(tiny_settings):
    cfg = tiny_settings.data.model_copy(update={"drift_day": 4, "drift_strength": 1.0})
    world = build_world(cfg, 5)
    assert np.array_equal(taste_on(world, cfg, 5, 3), world.user_cluster)
    moved = taste_on(world, cfg, 5, 4)
    assert np.array_equal(moved, (world.user_cluster + 1) % cfg.n_clusters)
    shoppers = Shoppers(world, cfg, 5)
    user_id = world.users["user_id"].iloc[0]
    old_taste = world.items["item_id"].to_numpy()[
        world.category_cluster[world.item_category] == world.user_cluster[0]
    ][:5]
    assert shoppers.in_taste(user_id, list(old_taste), 3).all()
    assert not shoppers.in_taste(user_id, list(old_taste), 4).any()
