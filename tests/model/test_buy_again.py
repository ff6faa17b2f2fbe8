"""The buy-again source: hand-counted statistics, the scorer surfaces a user's repeat item (and the
seen filter still wins), and on households that re-buy their own items it beats the family without it."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from toys import TOY_METADATA, toy_config, toy_fit_data

from models.buy_again import (
    LEGACY_REPEAT_FEATURES,
    REPEAT_FEATURES,
    Bought,
    BuyAgainConfig,
    decayed_scores,
    repeat_lookup,
    repurchase_days,
)
from models.config import PipelineConfig
from models.pipeline import fit_pipeline
from models.scorer import BatchScorer, Query, _merge, _with_discoveries
from recflow.settings import ServingSettings, load_settings
from serving.purchases import Purchases
from serving.recommender import Recommender

N_ITEMS = 40


def _rebuyers(n_users: int, seed: int) -> tuple[list[np.ndarray], list[int], list[Bought]]:
    """Each household buys its two favourites three times early on, then ten other items; its next
    purchase is a favourite. The favourites are older than the toy two-tower's 6-item window."""
    rng = np.random.default_rng(seed)
    histories, targets, bought = [], [], []
    for _ in range(n_users):
        favourites = rng.choice(N_ITEMS, size=2, replace=False)
        others = rng.choice(np.setdiff1d(np.arange(N_ITEMS), favourites), size=10, replace=False)
        history = np.concatenate([np.tile(favourites, 3), others])
        histories.append(history)
        targets.append(int(rng.choice(favourites)))
        bought.append(
            Bought(history, np.arange(len(history), 0, -1, dtype=np.float64) * 3.0)
        )  # one every 3 days
    return histories, targets, bought


def _with_purchases(histories, targets, bought):
    data = toy_fit_data(histories, targets)
    data.valid_exclude = [np.zeros(0, np.int64) for _ in histories]  # a grocery shop: purchases stay
    data.fit_bought = data.valid_bought = bought
    data.refit_bought = [
        Bought(np.append(b.rows, t), np.append(b.days_ago, 0.0)) for b, t in zip(bought, targets, strict=True)
    ]
    return data


@pytest.fixture(scope="module")
def rebuy():
    histories, targets, bought = _rebuyers(400, seed=3)
    # the buy-again source alone: these households pick their favourites at random, so their
    # neighbours say nothing (tests/model/test_neighbours.py has a world where they do)
    with_source = fit_pipeline(
        _with_purchases(histories, targets, bought), toy_config(neighbour_source=False), TOY_METADATA
    )
    data = toy_fit_data(histories, targets)
    data.valid_exclude = [np.zeros(0, np.int64) for _ in histories]
    without = fit_pipeline(data, toy_config(), TOY_METADATA)
    return with_source, without


def test_statistics_by_hand():
    b = Bought(np.array([1, 2, 1, 1]), np.array([20.0, 10.0, 10.0, 0.0]))
    record = repeat_lookup(b, half_life_days=10.0)
    assert record.items.tolist() == [1, 2] and record.count.tolist() == [3, 1]
    assert record.since.tolist() == [0.0, 10.0]
    assert record.score.tolist() == pytest.approx([0.25 + 0.5 + 1.0, 0.5])
    assert decayed_scores([b], 4, 10.0)[0].tolist() == pytest.approx([0.0, 1.75, 0.5, 0.0])
    other = Bought(np.array([1, 1, 3]), np.array([30.0, 16.0, 5.0]))
    # item 1: gaps 10 and 10 (first user), 14 (second): median 10; items 2 and 3 never re-bought
    days = repurchase_days([b, other], 4)
    assert days[1] == 10.0 and np.isnan(days[2]) and np.isnan(days[3]) and np.isnan(days[0])


def test_merge_leads_with_the_buy_again_list():
    rows, source = _merge(np.array([[5, 1]]), np.array([[7, 5]]), 4, first=np.array([[9, 7]]))
    assert rows.tolist() == [[9, 5, 7, 1]]
    assert source.tolist() == [[4, 2, 4, 0]]  # 7 was bought before: buy-again, whoever else proposed it


def test_the_source_surfaces_a_repeat_item_and_the_seen_filter_still_wins(rebuy):
    bundle = rebuy[0].serving
    assert bundle.config.buy_again.enabled and bundle.repurchase_days is not None
    scorer = BatchScorer(bundle, serving=ServingSettings(index="flat"))
    history = [f"i{i:02d}" for i in (30, 31, 32, 33, 34, 35)]
    bought = [("i07", 40.0), ("i07", 20.0), ("i07", 2.0)] + [(item, 1.0) for item in history]
    ranked = scorer.recommend([Query(history=history, bought=bought)], 10)[0]
    ids = bundle.catalogue.ids(ranked.rows)
    assert "i07" in ids and ranked.sources[ids.index("i07")] == "buy-again"
    filtered = scorer.recommend([Query(history=history, bought=bought, exclude=["i07"])], 10)[0]
    assert "i07" not in bundle.catalogue.ids(filtered.rows)


def test_a_list_keeps_its_discoveries():
    rows = np.array([5, 6, 7, 8, 9])
    assert _with_discoveries(rows, np.array([0, 1, 2]), {5, 6, 7, 8}, 1).tolist() == [0, 1, 4]
    assert _with_discoveries(rows, np.array([0, 1, 2]), {5, 6, 7, 8}, 2).tolist() == [0, 1, 4]  # one exists
    assert _with_discoveries(rows, np.array([0, 1, 2]), {6}, 1).tolist() == [0, 1, 2]  # already has one


def test_min_discoveries_puts_a_new_item_in_a_list_of_repeats(rebuy):
    bundle = rebuy[0].serving
    metadata = copy.deepcopy(bundle.metadata)
    metadata["hyperparameters"]["buy_again"]["min_discoveries"] = 1
    strict = replace(bundle, metadata=metadata)
    plain_scorer = BatchScorer(bundle, serving=ServingSettings(index="flat"))
    strict_scorer = BatchScorer(strict, serving=ServingSettings(index="flat"))
    rng = np.random.default_rng(0)
    replaced = 0
    for _ in range(20):
        favourites = [f"i{i:02d}" for i in rng.choice(N_ITEMS, size=30, replace=False)]
        query = Query(history=favourites[-6:], bought=[(i, float(d)) for i in favourites for d in (1, 8, 15)])
        plain = bundle.catalogue.ids(plain_scorer.recommend([query], 10)[0].rows)
        ids = bundle.catalogue.ids(strict_scorer.recommend([query], 10)[0].rows)
        assert len(ids) == 10 and any(i not in favourites for i in ids)
        if any(i not in favourites for i in plain):
            assert ids == plain  # the list had a discovery already: untouched
        else:  # the lowest-ranked repeat made way for the best-ranked discovery
            assert ids[:9] == plain[:9] and ids[9] not in favourites
            replaced += 1
    assert replaced > 0


def test_the_buy_again_source_wins_where_households_rebuy(rebuy):
    with_source, without = rebuy
    assert with_source.stages["buy-again"]["serving"] is True
    assert without.stages["buy-again"]["serving"] is False and not without.serving.config.buy_again.enabled
    ndcg_with, ndcg_without = with_source.metrics["model"]["ndcg@10"], without.metrics["model"]["ndcg@10"]
    assert ndcg_with > ndcg_without + 0.1, (ndcg_with, ndcg_without)
    assert with_source.metrics["model"]["recall@10"] > 0.9  # a favourite is always among the candidates


def test_the_reason_says_repeat_or_discovery(rebuy):
    bundle = rebuy[0].serving
    scorer = BatchScorer(bundle, serving=ServingSettings(index="flat"))
    purchases = Purchases()
    now = pd.Timestamp.now(tz="UTC")
    purchases.add(
        pd.DataFrame(
            {
                "user_id": ["u1", "u1", "u1"],
                "item_id": ["i07", "i07", "i08"],
                "event_type": "purchase",
                "timestamp": [now - pd.Timedelta(days=9), now - pd.Timedelta(days=2, hours=1), now],
            }
        )
    )
    settings = load_settings("tiny", data={"source": "completejourney"})
    recommender = Recommender(bundle, scorer, None, settings, "toy", {}, purchases)
    query = recommender.query("u1", {"recent_items": ["i30", "i31"]})
    assert sorted(i for i, _ in query.bought) == ["i07", "i07", "i08"] and not query.exclude
    ranked = scorer.recommend([query], 10)[0]
    response = recommender.response("u1", ranked, list(query.history), fallback=False)
    by_id = {item.item_id: item for item in response.items}
    assert (
        by_id["i07"].repeat is True
        and by_id["i07"].reason == "buy again: you bought it 2 times, last 2 days ago"
    )
    assert by_id["i08"].repeat is True and by_id["i08"].reason == "buy again: you bought it once, last today"
    discoveries = [item for item in response.items if item.item_id not in {"i07", "i08"}]
    assert discoveries and all(item.repeat is False for item in discoveries)
    assert all(not item.reason.startswith("buy again") for item in discoveries)


def test_a_historical_log_is_served_on_its_own_clock(rebuy):
    # a 2017 log served years later: ages count from the newest event the service knows (a view here),
    # the clock the package was trained on; the machine's clock would make every purchase years old
    bundle = rebuy[0].serving
    scorer = BatchScorer(bundle, serving=ServingSettings(index="flat"))
    last = pd.Timestamp("2017-11-30 18:00", tz="UTC")
    purchases = Purchases()
    purchases.add(
        pd.DataFrame(
            {
                "user_id": ["u1", "u1", "u2"],
                "item_id": ["i07", "i07", "i09"],
                "event_type": ["purchase", "purchase", "view"],
                "timestamp": [last - pd.Timedelta(days=12), last - pd.Timedelta(days=3, hours=2), last],
            }
        )
    )
    assert purchases.now("data") == last.timestamp()
    data_clock = load_settings("tiny", data={"source": "completejourney"})
    assert data_clock.serving.clock == "data"
    recommender = Recommender(bundle, scorer, None, data_clock, "toy", {}, purchases)
    query = recommender.query("u1", {"recent_items": ["i30"]})
    assert sorted(round(days, 3) for _, days in query.bought) == [3.083, 12.0]
    response = recommender.response("u1", scorer.recommend([query], 10)[0], ["i30"], fallback=False)
    assert {i.item_id: i.reason for i in response.items}[
        "i07"
    ] == "buy again: you bought it 2 times, last 3 days ago"

    wall = data_clock.model_copy(update={"serving": data_clock.serving.model_copy(update={"clock": "wall"})})
    years = Recommender(bundle, scorer, None, wall, "toy", {}, purchases).query(
        "u1", {"recent_items": ["i30"]}
    )
    assert min(days for _, days in years.bought) > 365


def test_the_seen_filter_default_follows_the_source():
    assert load_settings("tiny", data={"source": "completejourney"}).exclude_purchased is False
    assert load_settings("tiny", data={"source": "completejourney:/some/dir"}).exclude_purchased is False
    assert load_settings("tiny").exclude_purchased is True  # synthetic, and the Amazon sets
    assert load_settings("tiny", data={"source": "amazon:/x"}).exclude_purchased is True
    forced = load_settings("tiny", data={"source": "completejourney"}, serving={"exclude_purchased": True})
    assert forced.exclude_purchased is True


def test_a_saved_package_keeps_its_buy_again_source(rebuy, tmp_path):
    from models.bundle import ModelBundle

    bundle = rebuy[0].serving
    loaded = ModelBundle.load(bundle.save(tmp_path / "package"))
    assert loaded.config.buy_again == bundle.config.buy_again
    np.testing.assert_array_equal(loaded.repurchase_days, bundle.repurchase_days)
    query = Query(history=["i30", "i31"], bought=[("i07", 3.0), ("i07", 10.0), ("i12", 1.0)])
    before = BatchScorer(bundle, serving=ServingSettings(index="flat")).recommend([query], 10)[0]
    after = BatchScorer(loaded, serving=ServingSettings(index="flat")).recommend([query], 10)[0]
    assert before.rows.tolist() == after.rows.tolist()


def test_basket_clock_by_hand():
    # baskets 40, 30, 20, 10, 3 and 0 days ago; item 4 twice in one basket (two lines on day 20)
    b = Bought(
        np.array([1, 4, 4, 1, 2, 1, 3, 2, 5, 6]),
        np.array([30.0, 20.0, 20.2, 20.0, 10.0, 10.0, 3.0, 3.0, 0.0, 40.0]),
    )
    record = repeat_lookup(b, half_life_days=10.0)
    assert record.items.tolist() == [1, 2, 3, 4, 5, 6]
    assert record.n_baskets == 6
    assert record.count.tolist() == [3, 2, 1, 2, 1, 1]
    assert record.baskets.tolist() == [3, 2, 1, 1, 1, 1]  # item 4's two lines are one basket
    # baskets filled after the item's last one: item 1 last on day 10 (then days 3 and 0)
    assert record.baskets_since.tolist() == [2, 1, 1, 3, 0, 5]
    # the 5 newest baskets leave out day 40, item 6's only one
    assert record.recent.tolist() == [3, 2, 1, 1, 1, 0]
    assert record.trip_days == 10.0  # gaps 3, 7, 10, 10, 10
    short = repeat_lookup(Bought(np.array([7, 8]), np.array([4.0, 4.0])), 10.0)
    assert short.n_baskets == 1 and np.isnan(short.trip_days) and short.baskets_since.tolist() == [0, 0]


def test_packages_saved_before_the_basket_clock_read_seven_repeat_features():
    legacy = PipelineConfig.from_dict({"buy_again": {"enabled": True, "half_life_days": 90.0}})
    assert legacy.buy_again.features == LEGACY_REPEAT_FEATURES and len(LEGACY_REPEAT_FEATURES) == 7
    current = PipelineConfig.from_dict(json.loads(json.dumps(PipelineConfig().to_dict())))
    assert current.buy_again.features == REPEAT_FEATURES
    with pytest.raises(ValueError, match="unknown repeat features"):
        BuyAgainConfig(features=("basket_share", "no_such_feature"))


def test_a_package_saved_before_the_basket_clock_still_serves(tmp_path):
    """A package whose saved hyperparameters name no repeat features (written before they grew) loads
    with the seven its ranker was trained on and ranks as it did."""
    from models.bundle import ModelBundle

    histories, targets, bought = _rebuyers(300, seed=5)
    config = toy_config(
        ranker_alpha=1.0, buy_again=BuyAgainConfig(features=LEGACY_REPEAT_FEATURES), neighbour_source=False
    )
    bundle = fit_pipeline(_with_purchases(histories, targets, bought), config, TOY_METADATA).serving
    assert bundle.ranker is not None and bundle.config.buy_again.enabled
    path = bundle.save(tmp_path / "old")
    metadata = json.loads((path / "metadata.json").read_text())
    del metadata["hyperparameters"]["buy_again"]["features"]
    (path / "metadata.json").write_text(json.dumps(metadata))
    loaded = ModelBundle.load(path)
    assert loaded.config.buy_again.features == LEGACY_REPEAT_FEATURES
    assert loaded.ranker is not None and loaded.ranker.n_features == bundle.ranker.n_features
    query = Query(history=["i30", "i31"], bought=[("i07", 3.0), ("i07", 10.0), ("i12", 1.0)])
    before = BatchScorer(bundle, serving=ServingSettings(index="flat")).recommend([query], 10)[0]
    after = BatchScorer(loaded, serving=ServingSettings(index="flat")).recommend([query], 10)[0]
    assert before.rows.tolist() == after.rows.tolist()


def test_a_retrain_that_keeps_the_tuning_searches_nothing(rebuy):
    """`fit_pipeline(tuned=...)` (an age retrain) keeps the given co-occurrence parameters and half-life
    instead of searching them, and still serves the buy-again source and a ranker chosen on validation."""
    with_source, _ = rebuy
    histories, targets, bought = _rebuyers(400, seed=3)
    searched = with_source.serving.config
    kept_params = replace(searched.cooccurrence, window=1, last_n=1)
    assert kept_params != searched.cooccurrence
    tuned = replace(
        searched,
        cooccurrence=kept_params,
        buy_again=replace(searched.buy_again, half_life_days=123.0),
    )
    refreshed = fit_pipeline(
        _with_purchases(histories, targets, bought), toy_config(), TOY_METADATA, tuned=tuned
    )
    co = refreshed.stages["co-occurrence"]
    assert co["kept"] is True and co["params"] == kept_params.__dict__
    assert refreshed.serving.config.cooccurrence == kept_params
    assert refreshed.stages["buy-again"]["kept"] is True
    assert refreshed.stages["buy-again"]["trials"].keys() == {"123.0"}
    assert refreshed.serving.config.buy_again.half_life_days == 123.0
    assert refreshed.metrics["model"]["recall@10"] > 0.9
    assert (
        with_source.stages["co-occurrence"]["kept"] is False
        and with_source.stages["buy-again"]["kept"] is False
    )
    # a champion without the source has no half-life to keep: the fit searches it
    plain = replace(tuned, buy_again=BuyAgainConfig())
    searched_again = fit_pipeline(
        _with_purchases(histories, targets, bought), toy_config(), TOY_METADATA, tuned=plain
    )
    assert searched_again.stages["buy-again"]["kept"] is False
    assert len(searched_again.stages["buy-again"]["trials"]) > 1
