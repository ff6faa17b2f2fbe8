"""The model bundle contract: save/load round trip, query embeddings and ranking scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.bundle import ModelBundle, latest_bundle
from models.config import ModelConfig, Vocabulary
from models.ranking import build_ranking_tower
from models.retrieval import build_candidate_tower, build_query_tower

ITEMS = [f"i{i}" for i in range(12)]


def _bundle() -> ModelBundle:
    config = ModelConfig(embedding_dim=8, sequence_length=4, ranking_numeric=["views_7d", "price"])
    vocab = Vocabulary(
        user_id=["u0", "u1", "u2"],
        item_id=ITEMS,
        category=["c0", "c1"],
        brand=["b0", "b1", "b2"],
        region=["north", "south"],
        age_band=["18-24", "50+"],
        price_boundaries=[10.0, 20.0],
        numeric_mean=[1.0, 2.5],
        numeric_std=[0.5, 1.0],
    )
    candidates = build_candidate_tower(config, vocab)
    embeddings = candidates(
        {
            "item_id": np.array(ITEMS, dtype=object),
            "category": np.array(["c0", "c1"] * 6, dtype=object),
            "brand": np.array(["b0", "b1", "b2"] * 4, dtype=object),
            "price": np.linspace(5, 30, 12).astype(np.float32),
        }
    ).numpy()
    metadata = {
        "name": "recflow-two-tower",
        "version": "20260101T000000Z",
        "created_at": "2026-01-01T00:00:00+00:00",
        "hyperparameters": config.to_dict(),
        "data_window": {"start": "2026-01-01", "end": "2026-01-05"},
        "feature_services": {"retrieval": "retrieval_v1", "ranking": "ranking_v1"},
        "metrics": {},
        "code_version": "test",
        "device": "CPU",
    }
    return ModelBundle(
        metadata=metadata,
        vocab=vocab,
        query_tower=build_query_tower(config, vocab),
        ranking_tower=build_ranking_tower(config, vocab),
        item_ids=np.array(ITEMS),
        item_embeddings=embeddings,
        popular={"global": ITEMS[:3], "by_region": {"north": ITEMS[3:6]}},
    )


USERS = [
    {"user_id": "u0", "recent_items": ["i1", "i2"], "region": "north", "age_band": "18-24"},
    {"user_id": "nobody", "recent_items": [], "region": None, "age_band": None},
    {"user_id": "u2", "recent_items": ["i3", "unknown-item", "i4", "i5", "i6", "i7"], "region": "south"},
]


def test_round_trip_gives_identical_embeddings_and_scores(tmp_path):
    bundle = _bundle()
    items = pd.DataFrame(
        {"item_id": ITEMS[:5], "category": "c0", "brand": "b1", "price": [5.0, 9, 15, 25, 40]}
    )
    user = {**USERS[0], "views_7d": 3}
    before_q, before_r = bundle.query_embedding(USERS), bundle.rank(user, items)

    loaded = ModelBundle.load(bundle.save(tmp_path / "b1"))

    np.testing.assert_array_equal(loaded.query_embedding(USERS), before_q)
    np.testing.assert_array_equal(loaded.rank(user, items), before_r)
    np.testing.assert_array_equal(loaded.item_embeddings, bundle.item_embeddings)
    assert list(loaded.item_ids) == ITEMS
    assert loaded.metadata == bundle.metadata
    assert loaded.popular == bundle.popular
    assert latest_bundle(tmp_path) == tmp_path / "b1"


def test_query_embedding_shapes_and_unknown_items_ignored():
    bundle = _bundle()
    q = bundle.query_embedding(USERS)
    assert q.shape == (3, 8) and q.dtype == np.float32
    assert np.isfinite(q).all()
    inputs = bundle.query_inputs(USERS)
    # newest last, left-padded, truncated to the last 4 known items, unknown ids dropped
    assert list(inputs["recent_items"][0]) == ["", "", "i1", "i2"]
    assert list(inputs["recent_items"][1]) == ["", "", "", ""]
    assert list(inputs["recent_items"][2]) == ["i4", "i5", "i6", "i7"]
    assert bundle.query_embedding([]).shape == (0, 8)


def test_rank_scores_are_probabilities_one_per_item():
    bundle = _bundle()
    items = pd.DataFrame({"item_id": ITEMS[:4], "price": [1.0, None, 3.0, 4.0]})
    scores = bundle.rank({"user_id": "u1", "region": "south", "age_band": None}, items)
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()
    with pytest.raises(ValueError, match="item_id"):
        bundle.rank({"user_id": "u1"}, pd.DataFrame({"price": [1.0]}))


def test_metadata_must_be_complete():
    bundle = _bundle()
    del bundle.metadata["code_version"]
    with pytest.raises(ValueError, match="code_version"):
        ModelBundle(
            metadata=bundle.metadata,
            vocab=bundle.vocab,
            query_tower=bundle.query_tower,
            ranking_tower=bundle.ranking_tower,
            item_ids=bundle.item_ids,
            item_embeddings=bundle.item_embeddings,
            popular=bundle.popular,
        )
