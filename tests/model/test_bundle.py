"""The package contract: a save/load round trip serves the same lists, and metadata must be complete."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
from toys import TOY_METADATA, toy_config, toy_fit_data

from models.bundle import METADATA_KEYS, ModelBundle, latest_bundle
from models.pipeline import fit_pipeline
from models.scorer import BatchScorer, Query


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(9)
    histories = [rng.choice(40, size=rng.integers(3, 7), replace=False) for _ in range(500)]
    promoted = np.array([3, 17, 29])
    targets = [int(rng.choice(promoted)) for _ in histories]
    promo = np.zeros((40, 1), np.float32)
    promo[promoted] = 1
    data = toy_fit_data(histories, targets, item_features=promo, item_feature_names=["on_promotion"])
    return fit_pipeline(data, toy_config(), TOY_METADATA), promo


def test_round_trip_serves_identical_lists(fitted, tmp_path):
    result, promo = fitted
    bundle = result.serving
    assert bundle.ranker is not None  # the round trip covers the ranker too
    queries = [Query(history=["i01", "i02"]), Query(history=["i30"], exclude=["i03"]), Query(history=[])]
    before = BatchScorer(bundle, item_features=promo).recommend(queries, 10)

    loaded = ModelBundle.load(bundle.save(tmp_path / "b1"))

    after = BatchScorer(loaded, item_features=promo).recommend(queries, 10)
    for a, b in zip(before, after, strict=True):
        assert a.rows.tolist() == b.rows.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    np.testing.assert_array_equal(loaded.item_embeddings, bundle.item_embeddings)
    np.testing.assert_array_equal(loaded.popularity, bundle.popularity)
    assert (loaded.cooccurrence.matrix != bundle.cooccurrence.matrix).nnz == 0
    assert list(loaded.item_ids) == list(bundle.item_ids)
    assert loaded.metadata == bundle.metadata and loaded.popular == bundle.popular
    assert loaded.config == bundle.config and loaded.item_features == ["on_promotion"]
    np.testing.assert_array_equal(loaded.ranker.feature_min, bundle.ranker.feature_min)  # the clip range
    np.testing.assert_array_equal(loaded.ranker.feature_max, bundle.ranker.feature_max)
    assert np.isfinite(loaded.ranker.feature_max).all()
    assert latest_bundle(tmp_path) == tmp_path / "b1"


def test_a_package_without_ranker_round_trips_without_one(fitted, tmp_path):
    result, _ = fitted
    bundle = result.serving
    bare = replace(bundle, ranker=None, metadata=dict(bundle.metadata))
    loaded = ModelBundle.load(bare.save(tmp_path / "bare"))
    assert loaded.ranker is None and not (tmp_path / "bare" / "ranker").exists()


def test_metadata_must_be_complete(fitted):
    bundle = fitted[0].serving
    assert set(METADATA_KEYS) <= set(bundle.metadata)
    metadata = {k: v for k, v in bundle.metadata.items() if k != "code_version"}
    with pytest.raises(ValueError, match="code_version"):
        replace(bundle, metadata=metadata)
    assert {f.name for f in fields(ModelBundle)} >= {"catalogue", "two_tower", "cooccurrence", "ranker"}


def test_loading_a_folder_without_a_package_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json is missing"):
        ModelBundle.load(tmp_path)
