"""Behavioural tests of the model family: it beats popularity, and the ranker ships only when it earns it."""

from __future__ import annotations

import numpy as np
import pytest
from toys import TOY_METADATA, toy_config, toy_fit_data

from models.config import PipelineConfig
from models.pipeline import fit_pipeline, split_users
from recflow.settings import Settings

N_ITEMS = 40


def _walks(n_users: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Users walk through the catalogue: the next item is always the last one + 1 (mod N)."""
    rng = np.random.default_rng(seed)
    histories, targets = [], []
    for _ in range(n_users):
        start, length = rng.integers(0, N_ITEMS), rng.integers(3, 7)
        walk = (start + np.arange(length + 1)) % N_ITEMS
        histories.append(walk[:-1])
        targets.append(int(walk[-1]))
    return histories, targets


def _random_histories(n_users: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(N_ITEMS, size=rng.integers(3, 7), replace=False) for _ in range(n_users)]


def test_the_fitted_pipeline_beats_popularity_on_users_no_choice_saw():
    histories, targets = _walks(400, seed=1)
    result = fit_pipeline(toy_fit_data(histories, targets), toy_config(), TOY_METADATA)
    model, popularity = result.metrics["model"], result.metrics["popularity"]
    assert model["users"] == popularity["users"] > 50
    assert model["ndcg@10"] > 0.8 > 0.3 > popularity["ndcg@10"], result.metrics
    # both packages are complete; the serving one learned the refit histories too
    for bundle in (result.validation, result.serving):
        assert bundle.metadata["stages"]["two-tower"]["serving"] is True
        assert bundle.metadata["metrics"] == result.metrics
    assert result.serving.popularity.sum() == result.validation.popularity.sum() + len(targets)


def test_the_ranker_serves_when_only_its_features_see_the_signal():
    """Targets are today's promoted items: an item feature the candidate sources cannot see."""
    rng = np.random.default_rng(2)
    histories = _random_histories(900, seed=2)
    promoted = rng.choice(N_ITEMS, size=4, replace=False)
    targets = [int(rng.choice(promoted)) for _ in histories]
    promo = np.zeros((N_ITEMS, 1), np.float32)
    promo[promoted] = 1.0
    data = toy_fit_data(histories, targets, item_features=promo, item_feature_names=["on_promotion"])
    result = fit_pipeline(data, toy_config(), TOY_METADATA)
    stage = result.stages["ranker"]
    assert stage["serving"] is True and result.serving.ranker is not None, stage
    assert stage["ndcg@10"] > stage["merged ndcg@10"] + 0.1 and stage["p_value"] < 0.05, stage


def test_the_package_ships_without_a_ranker_when_there_is_nothing_to_learn():
    """Targets are uniformly random: no feature can beat the merged order, so no ranker ships."""
    rng = np.random.default_rng(3)
    histories = _random_histories(600, seed=3)
    targets = [int(t) for t in rng.integers(0, N_ITEMS, len(histories))]
    noise = rng.random((N_ITEMS, 1)).astype(np.float32)
    data = toy_fit_data(histories, targets, item_features=noise, item_feature_names=["noise"])
    result = fit_pipeline(data, toy_config(), TOY_METADATA)
    assert result.stages["ranker"]["serving"] is False, result.stages["ranker"]
    assert result.serving.ranker is None and result.validation.ranker is None


def test_users_split_stably_into_choose_and_report():
    users = [f"user{i}" for i in range(2000)]
    choose, report = split_users(users, 0.25, seed=7)
    assert len(choose) + len(report) == 2000 and not set(choose) & set(report)
    assert 0.2 < len(report) / 2000 < 0.3
    again_choose, again_report = split_users(list(reversed(users)), 0.25, seed=7)
    assert {users[i] for i in report} == {users[::-1][i] for i in again_report}  # by id, not position
    assert len(split_users(users, 0.0, seed=7)[1]) == 0


def test_no_returning_user_is_a_clear_error():
    histories, targets = _walks(20, seed=4)
    data = toy_fit_data(histories, targets)
    data.valid_users, data.valid_history, data.valid_exclude, data.valid_relevant = [], [], [], []
    with pytest.raises(ValueError, match="no validation user"):
        fit_pipeline(data, toy_config(), TOY_METADATA)


def test_catalogues_larger_than_the_negatives_train_a_sampled_softmax():
    """One knob: `train.negatives` (2048) samples on Beauty's and the grocery year's catalogues (the
    model samples only when the catalogue is larger), the synthetic shop's 1,200 items keep the full softmax."""
    settings = Settings()
    two_tower = PipelineConfig.from_settings(settings).two_tower
    assert two_tower.negatives == settings.train.negatives == 2048
    assert settings.data.n_items < two_tower.negatives < 12101
