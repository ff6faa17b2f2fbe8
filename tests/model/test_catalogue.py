"""The catalogue: attribute tokens from category, brand and tags; ids <-> rows; persistence."""

from __future__ import annotations

import pandas as pd
import pytest

from models.catalogue import Catalogue


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "a"],
            "category": ["attr1", "shoes", None, "attr1"],
            "brand": ["attr4", "unknown", "acme", "attr9"],  # the newest row of 'a' wins
            "tags": ["attr1|attr4|attr7", None, "", "attr1|attr9"],
        }
    )


def test_tokens_merge_category_brand_and_tags_without_duplicates_or_missing_values():
    catalogue = Catalogue.from_items(_items())
    assert list(catalogue.item_ids) == ["a", "b", "c"]
    names = {
        item: {catalogue.tokens[t - 1] for t in row if t}
        for item, row in zip("abc", catalogue.attributes, strict=True)
    }
    assert names == {"a": {"attr1", "attr9"}, "b": {"shoes"}, "c": {"acme"}}
    assert catalogue.attributes.shape == (3, 2) and (catalogue.attributes[1:, 1] == 0).all()
    assert list(catalogue.categories) == ["attr1", "shoes", ""]


def test_encode_drops_unknown_ids_and_ids_reverses_it():
    catalogue = Catalogue.from_items(_items())
    rows = catalogue.encode(["c", "zzz", "a"])
    assert rows.tolist() == [2, 0]
    assert catalogue.ids(rows) == ["c", "a"]


def test_round_trip_and_clear_errors(tmp_path):
    catalogue = Catalogue.from_items(_items())
    catalogue.save(tmp_path)
    loaded = Catalogue.load(tmp_path)
    assert loaded.tokens == catalogue.tokens
    assert (loaded.attributes == catalogue.attributes).all() and list(loaded.item_ids) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="item_id"):
        Catalogue.from_items(pd.DataFrame({"id": ["x"]}))
