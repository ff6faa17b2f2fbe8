"""The champion/challenger gate: decisions by hand, and the real gate on trained packages of the tiny world."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from monitoring.gate import compare_packages, decide_promotion, fair_days
from recflow.settings import load_settings


def test_a_worse_challenger_is_not_promoted_and_both_evaluations_are_kept():
    decision = decide_promotion(
        {"ndcg@10": 0.30}, {"ndcg@10": 0.25}, margin=0.0, days=["2026-01-07", "2026-01-08"]
    )
    assert not decision.promote and "does not beat" in decision.reason
    assert decision.to_dict()["champion"] == {"ndcg@10": 0.30}
    assert decision.to_dict()["days"] == ["2026-01-07", "2026-01-08"]


def test_a_better_challenger_is_promoted_unless_the_win_is_below_the_margin():
    assert decide_promotion({"ndcg@10": 0.30}, {"ndcg@10": 0.36}, margin=0.1).promote
    small = decide_promotion({"ndcg@10": 0.30}, {"ndcg@10": 0.32}, margin=0.1)
    assert not small.promote and "0.3300" in small.reason  # the bar it had to clear


def test_without_a_champion_the_challenger_is_promoted_and_a_missing_metric_is_named():
    assert decide_promotion(None, {"ndcg@10": 0.01}, margin=0.5).promote
    with pytest.raises(KeyError, match="ndcg@10"):
        decide_promotion({"recall@10": 0.3}, {"recall@10": 0.4}, 0.0)


def test_fair_days_are_the_held_out_days_the_champion_never_learned():
    challenger = {"validation_window": {"start": "2026-01-06", "end": "2026-01-08"}}
    assert fair_days({"data_window": {"end": "2026-01-05"}}, challenger) == (
        date(2026, 1, 6),
        date(2026, 1, 8),
    )
    assert fair_days({"data_window": {"end": "2026-01-06"}}, challenger)[0].isoformat() == "2026-01-07"
    assert fair_days({"data_window": {"end": "2026-01-08"}}, challenger) is None
    with pytest.raises(ValueError, match="validation_window"):
        fair_days({}, {})


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """A champion trained on the first 6 tiny days; a challenger trained on all 8 (days 7-8 held out)."""
    from features.store import prepare_feature_store
    from models.bundle import ModelBundle
    from models.train import train_models
    from recflow.data.sources import land_batches

    root = tmp_path_factory.mktemp("gate")
    full = load_settings("tiny", home=root / "full")
    batches = land_batches(full)
    for batch in batches:
        shutil.copytree(batch.path, full.validated_dir / batch.path.name)
    early = load_settings("tiny", home=root / "early", data={"holdout_days": 1})
    for batch in batches[:6]:
        shutil.copytree(batch.path, early.validated_dir / batch.path.name)
    champion = train_models(early, prepare_feature_store(early))
    store = prepare_feature_store(full)
    challenger = train_models(full, store)
    return full, store, ModelBundle.load(champion.bundle_path), ModelBundle.load(challenger.validation_path)


@pytest.mark.slow
def test_the_gate_rejects_a_deliberately_worse_challenger(packages):
    settings, store, champion, challenger = packages
    asked = []

    def as_of(first):  # a store that keeps only some days' rows is asked for the first fair day
        asked.append(first.isoformat())
        return store

    fair = compare_packages(settings, as_of, champion, challenger)
    assert fair.days == ["2026-01-07", "2026-01-08"]  # held out by the challenger, unseen by the champion
    assert asked == ["2026-01-07"]
    assert fair.champion["users"] == fair.challenger["users"] > 5
    assert "never learned from" in fair.reason

    # the same challenger, broken: its two-tower forgets everything and co-occurrence is emptied
    broken = replace(challenger, ranker=None, metadata=dict(challenger.metadata))
    weights, matrix = broken.two_tower.get_weights(), broken.cooccurrence.matrix
    broken.two_tower.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in weights])
    broken.cooccurrence.matrix = matrix * 0.0
    broken.item_embeddings = broken.two_tower.item_tower.all_items().numpy()
    try:
        worse = compare_packages(settings, store, champion, broken)
    finally:  # the models are shared with the fixture's challenger
        broken.two_tower.set_weights(weights)
        broken.cooccurrence.matrix = matrix
    assert not worse.promote, worse.reason
    assert worse.challenger["ndcg@10"] < worse.champion["ndcg@10"]
    assert worse.champion == fair.champion  # the champion is judged the same way both times


@pytest.mark.slow
def test_a_champion_that_learned_every_held_out_day_stays(packages):
    settings, store, _, challenger = packages
    learned_all = replace(challenger, metadata={**challenger.metadata, "data_window": {"end": "2026-01-08"}})

    def no_store(first):
        raise AssertionError(f"asked for a store as of {first}: there is nothing to compare")

    decision = compare_packages(settings, no_store, learned_all, challenger)
    assert not decision.promote and "already learned every held-out day" in decision.reason


@pytest.mark.slow
def test_the_gate_scores_only_the_users_the_challenger_never_learned_from(packages):
    """The challenger chose its models on the held-out days' choose users: the gate leaves them out."""
    from models.data import held_out
    from models.pipeline import split_users
    from monitoring.gate import unseen_users
    from recflow.data.batches import day_bounds

    settings, store, _, challenger = packages
    zone = settings.data.shop_timezone
    held = held_out(
        settings, store, day_bounds(date(2026, 1, 7), zone)[0], day_bounds(date(2026, 1, 8), zone)[1]
    )
    choose, report = split_users(held.users, challenger.config.report_share, challenger.config.seed)
    assert len(choose) and len(report)
    kept, note = unseen_users(held.users, challenger)
    assert kept == [held.users[i] for i in report]
    assert not set(kept) & {held.users[i] for i in choose}
    assert f"{len(report)} of {len(held)}" in note
    picked = held_out(
        settings,
        store,
        day_bounds(date(2026, 1, 7), zone)[0],
        day_bounds(date(2026, 1, 8), zone)[1],
        pick=lambda users: unseen_users(users, challenger)[0],
    )  # narrowed before the lookups: the same users, histories and targets as narrowed after
    subset = held.subset(report)
    assert picked.users == subset.users == kept
    assert [list(h) for h in picked.history] == [list(h) for h in subset.history]
    assert [list(r) for r in picked.relevant] == [list(r) for r in subset.relevant]

    hyper = {**challenger.metadata["hyperparameters"], "report_share": 0.0}
    everyone = replace(challenger, metadata={**challenger.metadata, "hyperparameters": hyper})
    kept, note = unseen_users(held.users, everyone)
    assert kept == held.users and "favours it" in note
