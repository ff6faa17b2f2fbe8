"""Packaging: the BentoML model store, the champion pointer and the bento."""

from __future__ import annotations

import pytest

from serving.package import (
    build_bento,
    champion_tag,
    latest_tag,
    model_info,
    promote,
    save_to_model_store,
)


def test_packaged_model_carries_what_made_it(served):
    path, metadata = model_info(served.settings, served.tag)
    assert (path / "item_embeddings.npy").exists()
    for key in ("metrics", "data_window", "feature_services", "hyperparameters", "code_version"):
        assert key in metadata, key
    assert set(metadata["metrics"]) >= {"model", "popularity"}


def test_promotion_moves_the_champion_and_refuses_unknown_tags(served, private_settings):
    settings = private_settings
    assert champion_tag(settings) == served.tag
    new = save_to_model_store(settings, served.bundle_path, {"note": "challenger"})
    assert new != served.tag and latest_tag(settings) == new
    assert champion_tag(settings) == served.tag  # packaged is not promoted
    promote(settings, new)
    assert champion_tag(settings) == new
    with pytest.raises(LookupError, match="not in the BentoML store"):
        promote(settings, "recflow-recommender:doesnotexist")
    assert champion_tag(settings) == new


def test_metadata_with_empty_figures_is_packaged_without_them(served, private_settings):
    # a gate decision without a champion figure carries None, which BentoML refuses in metadata
    gate = {"promote": False, "champion": None, "challenger": {"ndcg@10": 0.1}, "days": [None, "d1"]}
    tag = save_to_model_store(private_settings, served.bundle_path, {"gate": gate, "champion": None})
    _, metadata = model_info(private_settings, tag)
    assert "champion" not in metadata
    assert metadata["gate"] == {"promote": False, "challenger": {"ndcg@10": 0.1}, "days": ["d1"]}


def test_bento_is_built_with_the_champion(served, private_settings):
    import bentoml

    from serving.package import bentoml_stores

    settings = private_settings
    tag = build_bento(settings)
    with bentoml_stores(settings):
        bento = bentoml.bentos.get(tag)
    assert tag.startswith("recflow:")
    assert str(bento.info.labels["model"]) == served.tag
    assert [str(m.tag) for m in bento.info.models] == [served.tag]
