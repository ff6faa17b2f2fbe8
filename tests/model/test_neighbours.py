"""The household-neighbour source: baskets and neighbours by hand, the user left out of their own
neighbours, the source proposing what a household's lookalikes buy, and a package that keeps it."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
from toys import TOY_METADATA, toy_config, toy_fit_data

from models.buy_again import Bought
from models.neighbours import NeighbourConfig, Neighbours, baskets, tifu_vectors, user_vectors
from models.pipeline import fit_pipeline
from models.scorer import SOURCES, BatchScorer, Query, _merge, _with_discoveries, fused_scores
from recflow.settings import ServingSettings

N_ITEMS = 40
GROUPS = 4
STAPLES = 8  # group g's staples are items 8g .. 8g+7; items 32-39 are bought by everyone now and then


def test_baskets_are_days_oldest_first_with_distinct_items():
    b = Bought(np.array([3, 1, 3, 2, 5]), np.array([10.2, 10.0, 9.8, 2.0, 0.0]))
    assert [x.tolist() for x in baskets(b)] == [[1, 3], [2], [5]]  # day 10 holds item 3 once
    assert baskets(Bought.empty()) == []


def test_user_vectors_are_the_tifu_vectors_of_the_baskets():
    b = Bought(np.array([0, 1, 1, 2]), np.array([20.0, 20.0, 5.0, 0.0]))
    config = NeighbourConfig(within_decay=0.5, group_decay=0.8, groups=2)
    by_hand = tifu_vectors([[np.array([0, 1]), np.array([1]), np.array([2])]], 3, 0.5, 0.8, 2)
    np.testing.assert_allclose(user_vectors([b], 3, config).toarray(), by_hand.toarray())


def test_the_nearest_households_by_hand_and_a_user_is_not_their_own_neighbour():
    stored = Neighbours(
        np.array(
            [
                [1.0, 0.0, 0.0],  # 0: the query itself, as fitted
                [1.0, 0.5, 0.0],  # 1: distance 0.25
                [0.0, 1.0, 0.0],  # 2: distance 2
                [1.0, 0.0, 1.0],  # 3: distance 1
            ]
        )
    )
    own = Neighbours(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])).vectors
    nearest = stored.nearest_sorted(own, 3)
    assert nearest[0].tolist() == [1, 3, 2]  # household 0 equals the query: left out
    assert nearest[1].tolist() == []  # no purchases, no neighbours


def test_the_neighbours_mean_and_share_by_hand():
    stored = Neighbours(np.array([[1.0, 0.0, 0.0, 0.0], [0.6, 0.4, 0.0, 0.0], [0.5, 0.0, 0.2, 0.0]]))
    config = NeighbourConfig(neighbours=2, within_decay=1.0, group_decay=1.0, groups=1)
    b = Bought(np.array([0, 3]), np.array([1.0, 1.0]))  # one basket, one group: weight 1 per item
    view = stored.scores([b], config)
    np.testing.assert_allclose(view.own.toarray(), [[1.0, 0.0, 0.0, 1.0]])
    # squared distances: household 0: 0 + 0 + 0 + 1 = 1; 1: 0.16 + 0.16 + 0 + 1 = 1.32;
    # 2: 0.25 + 0 + 0.04 + 1 = 1.29 -> the two nearest are 0 and 2
    np.testing.assert_allclose(view.mean.toarray(), [[0.75, 0.0, 0.1, 0.0]])
    np.testing.assert_allclose(view.share.toarray(), [[1.0, 0.0, 0.5, 0.0]])
    np.testing.assert_allclose(view.scores(0.5).toarray(), [[0.875, 0.0, 0.05, 0.5]])


def test_merge_marks_what_only_the_neighbours_proposed():
    rows, source = _merge(
        np.array([[5, 1]]), np.array([[7, 5]]), 5, first=np.array([[9, 7]]), neighbours=np.array([[8, 9]])
    )
    assert rows.tolist() == [[9, 8, 5, 7, 1]]
    assert [SOURCES[s] for s in source[0]] == ["buy-again", "neighbours", "both", "buy-again", "two-tower"]


def _lookalikes(n_users: int, seed: int) -> tuple[list[np.ndarray], list[int], list[Bought]]:
    """Households in four groups: each buys five of its group's eight staples week after week, and its
    next purchase is a staple of its group it never bought."""
    rng = np.random.default_rng(seed)
    histories, targets, bought = [], [], []
    for u in range(n_users):
        staples = np.arange(STAPLES) + STAPLES * (u % GROUPS)
        mine = rng.choice(staples, size=5, replace=False)
        weeks = [np.append(mine, rng.choice(np.arange(32, 40), size=1)) for _ in range(4)]
        history = np.concatenate(weeks)
        histories.append(history)
        targets.append(int(rng.choice(np.setdiff1d(staples, mine))))
        days = np.repeat(np.array([28.0, 21.0, 14.0, 7.0]), [len(w) for w in weeks])
        bought.append(Bought(history, days))
    return histories, targets, bought


@pytest.fixture(scope="module")
def lookalikes():
    histories, targets, bought = _lookalikes(320, seed=1)
    data = toy_fit_data(histories, targets)
    data.valid_exclude = [np.zeros(0, np.int64) for _ in histories]  # a grocery shop: purchases stay
    data.fit_bought = data.valid_bought = bought
    data.refit_bought = [
        Bought(np.append(b.rows, t), np.append(b.days_ago + 7.0, 0.0))
        for b, t in zip(bought, targets, strict=True)
    ]
    return fit_pipeline(data, toy_config(), TOY_METADATA), histories, targets, bought


def test_the_source_proposes_what_a_households_lookalikes_buy(lookalikes):
    fitted, _, _, _ = lookalikes
    stage = fitted.stages["neighbours"]
    assert stage["serving"] is True and stage["households"] == 320 and len(stage["trials"]) == 15
    bundle = fitted.serving
    assert bundle.config.neighbours.enabled and bundle.neighbours is not None
    # the ranker serves, and how much of the neighbour list's order it is fused with was chosen
    assert fitted.stages["ranker"]["serving"] is True
    assert list(stage["fusion_trials"]) == ["0", "0.2", "0.35", "0.5", "0.65", "0.8"]
    assert bundle.config.neighbours.fusion == stage["fusion"] == fitted.validation.config.neighbours.fusion
    # a new household of group 1 (staples 8-15) that bought 8, 9, 10 twice: its lookalikes buy 11-15
    bought = [(f"i{i:02d}", d) for i in (8, 9, 10) for d in (14.0, 7.0)]
    view = bundle.neighbours.scores([BatchScorer(bundle).bought(bought)], bundle.config.neighbours)
    mean = view.mean.toarray()[0]
    new = np.argsort(-np.where(np.isin(np.arange(N_ITEMS), [8, 9, 10]), -np.inf, mean))[:5]
    assert sorted(new.tolist()) == [11, 12, 13, 14, 15]


def test_a_saved_package_keeps_its_neighbours(lookalikes, tmp_path):
    from models.bundle import ModelBundle

    bundle = lookalikes[0].serving
    loaded = ModelBundle.load(bundle.save(tmp_path / "package"))
    assert loaded.config.neighbours == bundle.config.neighbours and loaded.neighbours is not None
    assert (loaded.neighbours.vectors != bundle.neighbours.vectors).nnz == 0
    queries = [
        Query(history=["i08", "i09"], bought=[("i08", 7.0), ("i09", 7.0), ("i10", 14.0)]),
        Query(history=["i33"], bought=[]),  # no purchases: no neighbours, still a full list
    ]
    before = BatchScorer(bundle, serving=ServingSettings(index="flat")).recommend(queries, 10)
    after = BatchScorer(loaded, serving=ServingSettings(index="flat")).recommend(queries, 10)
    assert [r.rows.tolist() for r in before] == [r.rows.tolist() for r in after]
    assert all(len(r.rows) == 10 for r in after)


def test_the_switch_leaves_the_source_out(lookalikes):
    _, histories, targets, bought = lookalikes
    data = toy_fit_data(histories[:120], targets[:120])
    data.valid_exclude = [np.zeros(0, np.int64) for _ in data.fit]
    data.fit_bought = data.valid_bought = data.refit_bought = bought[:120]
    fitted = fit_pipeline(data, toy_config(neighbour_source=False), TOY_METADATA)
    assert fitted.stages["neighbours"] == {"serving": False}
    assert not fitted.serving.config.neighbours.enabled and fitted.serving.neighbours is None
    assert fitted.stages["buy-again"]["serving"] is True


def test_a_retrain_that_keeps_the_tuning_keeps_k_and_alpha(lookalikes):
    fitted, histories, targets, bought = lookalikes
    searched = fitted.serving.config
    tuned = replace(searched, neighbours=replace(searched.neighbours, neighbours=7, alpha=0.2))
    data = toy_fit_data(histories, targets)
    data.valid_exclude = [np.zeros(0, np.int64) for _ in histories]
    data.fit_bought = data.valid_bought = data.refit_bought = bought
    refreshed = fit_pipeline(data, toy_config(), TOY_METADATA, tuned=tuned)
    stage = refreshed.stages["neighbours"]
    assert stage["kept"] is True and list(stage["trials"]) == ["7/0.2"]
    assert (refreshed.serving.config.neighbours.neighbours, refreshed.serving.config.neighbours.alpha) == (
        7,
        0.2,
    )


def test_fused_scores_by_hand():
    logits = np.array([[3.0, 1.0, 2.0, 0.0]])  # the ranker's ranks: 0, 2, 1, 3
    neighbour_rank = np.array([[2.0, 0.0, 4.0, 4.0]])  # the last two are not in the neighbour list (C = 4)
    valid = np.array([[True, True, True, False]])
    fused = fused_scores(logits, neighbour_rank, valid, 0.5)
    np.testing.assert_allclose(fused[0, :3], [0.5 / 1 + 0.5 / 3, 0.5 / 3 + 0.5 / 1, 0.5 / 2 + 0.5 / 5])
    assert fused[0, 3] == -np.inf
    np.testing.assert_array_equal(
        np.argsort(-fused_scores(logits, neighbour_rank, valid, 0.0)[0])[:3], [0, 2, 1]
    )


def test_the_slot_prefers_the_neighbours_discovery():
    rows = np.array([5, 6, 7, 8, 9])
    # without a preference the best-ranked new item (8) takes the slot; with one, the neighbours' (9)
    assert _with_discoveries(rows, np.array([0, 1, 2]), {5, 6, 7}, 1).tolist() == [0, 1, 3]
    assert _with_discoveries(rows, np.array([0, 1, 2]), {5, 6, 7}, 1, prefer=9).tolist() == [0, 1, 4]
    assert _with_discoveries(rows, np.array([0, 1, 2]), {5, 7}, 1, prefer=9).tolist() == [0, 1, 2]  # has one


def test_the_neighbours_discovery_is_a_candidate_and_fills_the_slot(lookalikes):
    bundle = lookalikes[0].serving
    metadata = copy.deepcopy(bundle.metadata)
    metadata["hyperparameters"]["buy_again"]["min_discoveries"] = 1
    strict = replace(bundle, metadata=metadata)
    scorer = BatchScorer(strict, serving=ServingSettings(index="flat"))
    # a household of group 2 (staples 16-23) that bought ten items, its staples among them, every week
    mine = [16, 17, 18, 32, 33, 34, 35, 36, 37, 38]
    bought = [(f"i{i:02d}", d) for i in mine for d in (21.0, 14.0, 7.0)]
    query = Query(history=[f"i{i:02d}" for i in mine[-6:]], bought=bought)
    cands = scorer.candidates(
        [strict.catalogue.encode(query.history)], [np.zeros(0, np.int64)], None, [scorer.bought(bought)]
    )
    discovery = int(cands.discovery[0])
    assert 19 <= discovery <= 23 and discovery in cands.rows[0]  # a staple of its group it never bought
    ranked = scorer.recommend([query], 10)[0]
    new = [int(r) for r in ranked.rows if int(r) not in mine]
    assert len(ranked.rows) == 10 and discovery in new
