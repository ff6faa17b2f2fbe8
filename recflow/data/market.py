"""Synthetic shoppers answering a shown list: the response model of the simulated market.

The synthetic shop (`recflow.data.synthetic`) knows what its users like: each user has a taste cluster
on each day (`synthetic.taste_on`), each category belongs to one cluster. A user shown a list of items
(best first) answers it item by item, independently:

* **click** with probability `p_click * lift / (1 + position_decay * position)` (position 0-based),
  where `lift` is `in_taste_lift` for an item of a category of the user's cluster and 1 otherwise;
* **cart** a clicked item with probability `p_cart`;
* **buy** a carted item with probability `p_buy`.

`recflow simulate --experiment` answers the lists the real packages serve with it; `recflow bench
experiments` the lists of its toy recommenders (`ResponseModel.respond` from in-taste flags).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recflow.data.synthetic import World, taste_on
from recflow.settings import DataSettings


@dataclass(frozen=True)
class Response:
    """What one user did with one shown list: a flag per position (purchases within carts within clicks)."""

    clicks: np.ndarray
    carts: np.ndarray
    purchases: np.ndarray


@dataclass(frozen=True)
class ResponseModel:
    """How likely a shown item is clicked, carted and bought (see the module docstring)."""

    p_click: float = 0.04
    in_taste_lift: float = 5.0
    position_decay: float = 0.2
    p_cart: float = 0.5
    p_buy: float = 0.5

    def click_probability(self, in_taste: Sequence[bool] | np.ndarray) -> np.ndarray:
        """The click probability of each position of a list, from whether its item is in the user's taste."""
        flags = np.asarray(in_taste, bool)
        position = 1.0 / (1.0 + self.position_decay * np.arange(len(flags)))
        return np.clip(self.p_click * np.where(flags, self.in_taste_lift, 1.0) * position, 0.0, 1.0)

    def respond(self, rng: np.random.Generator, in_taste: Sequence[bool] | np.ndarray) -> Response:
        """Draw one user's clicks, carts and purchases on a list (in-taste flags per position)."""
        n = len(in_taste)
        clicks = rng.random(n) < self.click_probability(in_taste)
        carts = clicks & (rng.random(n) < self.p_cart)
        return Response(clicks, carts, carts & (rng.random(n) < self.p_buy))


class Shoppers:
    """The synthetic shop's users as a market: their hidden taste on a day and how they answer a list.

    Args:
        world: the generator's world (`synthetic.build_world(cfg, seed)`), with the hidden truth.
        cfg: the data settings the world was built with (clusters, drift).
        seed: the generator's seed (which users drift).
        response: the response model.
    """

    def __init__(
        self, world: World, cfg: DataSettings, seed: int, response: ResponseModel | None = None
    ) -> None:
        self.world, self.cfg, self.seed = world, cfg, seed
        self.response = response or ResponseModel()
        self._users = pd.Index(world.users["user_id"].astype(str))
        self._items = pd.Index(world.items["item_id"].astype(str))
        self._taste: dict[int, np.ndarray] = {}

    def in_taste(self, user_id: str, item_ids: Sequence[str], day: int) -> np.ndarray:
        """Whether each item belongs to a category of the user's taste cluster on `day` (0-based)."""
        if day not in self._taste:
            self._taste[day] = taste_on(self.world, self.cfg, self.seed, day)
        user = self._users.get_loc(str(user_id))
        rows = self._items.get_indexer([str(i) for i in item_ids])
        if (rows < 0).any():
            unknown = [i for i, r in zip(item_ids, rows, strict=True) if r < 0]
            raise KeyError(f"Items {unknown[:5]} are not in the synthetic catalogue.")
        categories = self.world.item_category[rows]
        return self.world.category_cluster[categories] == self._taste[day][user]

    def respond(self, rng: np.random.Generator, user_id: str, item_ids: Sequence[str], day: int) -> Response:
        """Draw what `user_id` does with the list `item_ids` (best first) shown on `day`."""
        return self.response.respond(rng, self.in_taste(user_id, item_ids, day))
