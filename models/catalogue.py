"""The catalogue a model knows: item ids in index order and each item's attribute tokens.

Every model of the family works on item *indices* (row i of the catalogue); ids are strings only at
the edges (Feast, the raw batches, the HTTP API). An item's attributes are the distinct values of its
`category`, `brand` and `tags` ('|'-separated) in one token space, so that an Amazon item's anonymous
attribute ids, a grocery product's department and a synthetic item's category all feed the same
attribute embedding of the candidate tower. Token 0 is padding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MISSING: frozenset[str] = frozenset({"", "unknown", "nan", "None", "<NA>"})


@dataclass(frozen=True)
class Catalogue:
    """Item ids, attribute tokens and categories, aligned by item index.

    Attributes:
        item_ids: str [n_items]; index i is item `item_ids[i]`.
        attributes: int32 [n_items, width]; token index (1-based) of each attribute, 0 = none.
        tokens: token names; `tokens[t - 1]` is token t.
        categories: str [n_items], "" when unknown (business rules, reasons, monitoring).
    """

    item_ids: np.ndarray
    attributes: np.ndarray
    tokens: list[str]
    categories: np.ndarray
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.attributes) or len(self.item_ids) != len(self.categories):
            raise ValueError(
                f"catalogue arrays disagree: {len(self.item_ids)} ids, {len(self.attributes)} attribute "
                f"rows, {len(self.categories)} categories"
            )
        object.__setattr__(self, "index", {str(item): i for i, item in enumerate(self.item_ids)})
        if len(self.index) != len(self.item_ids):
            raise ValueError("catalogue item ids must be unique")

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> Catalogue:
        """From a table with `item_id` and any of `category`, `brand`, `tags` (the raw items contract).

        The newest row of an item wins (tables are in time order); item order is the table's order
        of first appearance.
        """
        if "item_id" not in items.columns:
            raise ValueError(f"items need an 'item_id' column; got {list(items.columns)}")
        latest = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id", keep="last")
        order = pd.unique(items["item_id"].astype(str))
        latest = latest.set_index("item_id").loc[order]
        token_of: dict[str, int] = {}
        rows: list[list[int]] = []
        for values in zip(*(_column(latest, c) for c in ("category", "brand", "tags")), strict=True):
            names = [*values[:2], *str(values[2]).split("|")]
            seen: dict[int, None] = {}
            for name in names:
                name = str(name).strip()
                if name not in MISSING:
                    seen.setdefault(token_of.setdefault(name, len(token_of) + 1))
            rows.append(list(seen))
        width = max((len(r) for r in rows), default=0) or 1
        attributes = np.zeros((len(rows), width), dtype=np.int32)
        for i, row in enumerate(rows):
            attributes[i, : len(row)] = row
        categories = np.array([str(c) if str(c) not in MISSING else "" for c in _column(latest, "category")])
        return cls(
            item_ids=np.asarray(order, dtype=str),
            attributes=attributes,
            tokens=sorted(token_of, key=token_of.__getitem__),
            categories=categories.astype(str),
        )

    # ---- ids <-> indices ---------------------------------------------------------------------------
    def encode(self, item_ids: Iterable[str]) -> np.ndarray:
        """Indices of the known ids among `item_ids`, in order (unknown ids are dropped)."""
        index = self.index
        return np.fromiter((index[i] for i in map(str, item_ids) if i in index), dtype=np.int32)

    def ids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The item ids of catalogue rows."""
        return [str(self.item_ids[r]) for r in rows]

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write `catalogue.npz` (ids, attributes, categories) and `tokens.json` into `folder`."""
        np.savez_compressed(
            folder / "catalogue.npz",
            item_ids=self.item_ids.astype(str),
            attributes=self.attributes,
            categories=self.categories.astype(str),
        )
        (folder / "tokens.json").write_text(json.dumps(self.tokens))

    @classmethod
    def load(cls, folder: Path) -> Catalogue:
        """Read what `save` wrote."""
        with np.load(folder / "catalogue.npz") as arrays:
            return cls(
                item_ids=arrays["item_ids"].astype(str),
                attributes=arrays["attributes"],
                tokens=json.loads((folder / "tokens.json").read_text()),
                categories=arrays["categories"].astype(str),
            )


def _column(frame: pd.DataFrame, name: str) -> list:
    if name not in frame.columns:
        return [""] * len(frame)
    return ["" if pd.isna(v) else v for v in frame[name].tolist()]
