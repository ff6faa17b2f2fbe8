"""A seeded, deterministic synthetic e-commerce world: users, a catalogue and daily event logs.

The world has structure a recommender can learn beyond popularity:

* items have a power-law (Zipf) popularity;
* every user belongs to a latent taste cluster; every category belongs to one cluster, so a user's
  views concentrate on a few categories (and their region hints at the cluster, for cold start);
* a session browses around one category, with repeat views;
* a view turns into an add-to-cart more often for in-taste and cheaper items, a cart into a purchase.

The drift knob (`drift_day`) shifts a share of users to the next cluster's categories, raises prices
in the shifted categories and launches new items, all from that day on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from recflow.data.schema import TABLES, conform
from recflow.settings import DataSettings

REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-24", "25-34", "35-49", "50+")


@dataclass(frozen=True)
class World:
    """The static part of the synthetic world (users and catalogue) plus the latent truth."""

    users: pd.DataFrame
    items: pd.DataFrame
    user_cluster: np.ndarray  # latent taste cluster of each user (by row)
    category_cluster: np.ndarray  # cluster that each category belongs to
    item_category: np.ndarray  # category index of each item (by row)
    item_weight: np.ndarray  # Zipf popularity weight of each item
    item_created_day: np.ndarray  # day index the item appears (negative: before the start)
    user_signup_day: np.ndarray
    user_activity: np.ndarray  # heavy / light users


def build_world(cfg: DataSettings, seed: int) -> World:
    """Create users and items. Deterministic in (cfg, seed)."""
    rng = np.random.default_rng(seed)
    start = datetime.combine(cfg.start_date, datetime.min.time(), tzinfo=UTC)
    n_new = int(round(cfg.drift_new_items * cfg.n_items)) if cfg.drift_day is not None else 0
    n_items = cfg.n_items + n_new

    # catalogue
    category_cluster = np.arange(cfg.n_categories) % cfg.n_clusters
    item_category = rng.integers(0, cfg.n_categories, n_items)
    brands_per_category = max(1, cfg.n_brands // cfg.n_categories)
    item_brand = item_category * brands_per_category + rng.integers(0, brands_per_category, n_items)
    category_price = np.exp(rng.uniform(np.log(5), np.log(120), cfg.n_categories))
    price = np.round(category_price[item_category] * rng.lognormal(0, 0.35, n_items), 2)
    rank = rng.permutation(n_items)
    item_weight = 1.0 / (rank + 1.0) ** cfg.popularity_exponent
    created = -rng.integers(1, 365, n_items)  # existing catalogue
    launched = rng.random(cfg.n_items) < 0.03  # a few organic launches during the period
    created[: cfg.n_items][launched] = rng.integers(0, cfg.n_days, launched.sum())
    if n_new:
        created[cfg.n_items :] = cfg.drift_day
        item_weight[cfg.n_items :] = np.quantile(item_weight[: cfg.n_items], 0.9)  # launches get pushed
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(n_items)],
            "category": [f"cat{c:02d}" for c in item_category],
            "brand": [f"brand{b:03d}" for b in item_brand],
            "price": price,
            "created_date": [start + timedelta(days=int(d)) for d in created],
            "tags": None,  # the synthetic catalogue has no attributes beyond category and brand
        }
    )

    # users
    user_cluster = rng.integers(0, cfg.n_clusters, cfg.n_users)
    hinted = rng.random(cfg.n_users) < 0.6
    region = np.where(hinted, user_cluster % len(REGIONS), rng.integers(0, len(REGIONS), cfg.n_users))
    signup = -rng.integers(1, 720, cfg.n_users)
    late = rng.random(cfg.n_users) < 0.05
    signup[late] = rng.integers(0, cfg.n_days, late.sum())
    users = pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in range(cfg.n_users)],
            "signup_date": [start + timedelta(days=int(d)) for d in signup],
            "region": [REGIONS[r] for r in region],
            "age_band": [AGE_BANDS[a] for a in rng.integers(0, len(AGE_BANDS), cfg.n_users)],
        }
    )
    return World(
        users=conform(users, "users"),
        items=conform(items, "items"),
        user_cluster=user_cluster,
        category_cluster=category_cluster,
        item_category=item_category,
        item_weight=item_weight,
        item_created_day=created,
        user_signup_day=signup,
        user_activity=rng.lognormal(0, 0.6, cfg.n_users),
    )


def taste_on(world: World, cfg: DataSettings, seed: int, day: int) -> np.ndarray:
    """Each user's taste cluster on `day` (by row): the latent one, or from `drift_day` on the next
    cluster for the drifted share (`drift_strength`) of users. Events and `recflow.data.market`'s
    responses both follow it."""
    cluster = world.user_cluster.copy()
    if cfg.drift_day is not None and day >= cfg.drift_day:
        shifted = np.random.default_rng([seed, 10_007]).random(len(cluster)) < cfg.drift_strength
        cluster[shifted] = (cluster[shifted] + 1) % cfg.n_clusters
    return cluster


def _sample(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1)


def generate_day(world: World, cfg: DataSettings, seed: int, day: int) -> dict[str, pd.DataFrame]:
    """One day's raw batch: the events of that day and the catalogue / user snapshots as of that day.

    Deterministic in (world, cfg, seed, day), independently of the other days.
    """
    rng = np.random.default_rng([seed, day])
    start = datetime.combine(cfg.start_date, datetime.min.time(), tzinfo=UTC)
    day_start = start + timedelta(days=day)
    drifted = cfg.drift_day is not None and day >= cfg.drift_day
    n_clusters = cfg.n_clusters

    available = world.item_created_day <= day
    weight = np.where(available, world.item_weight, 0.0)
    cluster = taste_on(world, cfg, seed, day)
    category_price_factor = np.ones(cfg.n_categories)
    if drifted:
        category_price_factor[world.category_cluster % 2 == 1] = cfg.drift_price_factor

    # who is active today, how many sessions
    active = world.user_signup_day <= day
    n_sessions = rng.poisson(cfg.sessions_per_user_day * world.user_activity) * active
    s_user = np.repeat(np.arange(len(cluster)), n_sessions)
    if len(s_user) == 0:
        return _snapshot(world, day, _empty("events"))
    n_s = len(s_user)
    s_cluster = cluster[s_user]

    # a session browses around one category of the user's taste (or a random one)
    cats_of = [np.flatnonzero(world.category_cluster == k) for k in range(n_clusters)]
    in_taste = rng.random(n_s) < cfg.taste_strength
    taste_cat = np.array([rng.choice(cats_of[k]) for k in s_cluster]) if n_s else np.array([], int)
    s_cat = np.where(in_taste, taste_cat, rng.integers(0, cfg.n_categories, n_s))

    # views per session; each view from the session category (60%), the user's taste, or popularity
    n_views = 1 + rng.poisson(cfg.views_per_session - 1, n_s)
    v_session = np.repeat(np.arange(n_s), n_views)
    n_v = len(v_session)
    mode = rng.random(n_v)
    item_cdf_cat = {c: np.cumsum(weight * (world.item_category == c)) for c in range(cfg.n_categories)}
    item_cdf_cluster = {
        k: np.cumsum(weight * np.isin(world.item_category, cats_of[k])) for k in range(n_clusters)
    }
    item_cdf_all = np.cumsum(weight)
    v_item = _sample(item_cdf_all, rng.random(n_v))
    u = rng.random(n_v)
    by_cat = mode < 0.6
    by_taste = (mode >= 0.6) & (mode < 0.6 + 0.4 * cfg.taste_strength)
    for c in np.unique(s_cat):
        sel = by_cat & (s_cat[v_session] == c)
        if item_cdf_cat[c][-1] > 0:
            v_item[sel] = _sample(item_cdf_cat[c], u[sel])
    for k in range(n_clusters):
        sel = by_taste & (s_cluster[v_session] == k)
        if item_cdf_cluster[k][-1] > 0:
            v_item[sel] = _sample(item_cdf_cluster[k], u[sel])
    # repeat views: the previous view in the same session again
    pos = np.arange(n_v) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    repeat = (pos > 0) & (rng.random(n_v) < 0.15)
    idx = np.flatnonzero(repeat)
    v_item[idx] = v_item[idx - 1]

    # funnel: view -> add to cart -> purchase
    v_user = s_user[v_session]
    v_in_taste = world.category_cluster[world.item_category[v_item]] == cluster[v_user]
    price_penalty = np.clip(1.2 - 0.2 * category_price_factor[world.item_category[v_item]], 0.5, 1.0)
    p_cart = np.where(v_in_taste, 0.14, 0.03) * price_penalty
    cart = (rng.random(n_v) < p_cart) & ~repeat
    buy = cart & (rng.random(n_v) < 0.4)

    session_start = rng.uniform(7 * 3600, 22 * 3600, n_s)
    v_time = session_start[v_session] + pos * rng.uniform(20, 120, n_v)
    base = pd.Timestamp(day_start)
    rows = []
    for kind, mask, lag in (
        ("view", np.ones(n_v, bool), 0.0),
        ("add_to_cart", cart, 15.0),
        ("purchase", buy, 90.0),
    ):
        sel = np.flatnonzero(mask)
        rows.append(
            pd.DataFrame(
                {
                    "user_id": world.users["user_id"].to_numpy()[v_user[sel]],
                    "item_id": world.items["item_id"].to_numpy()[v_item[sel]],
                    "event_type": kind,
                    "seconds": v_time[sel] + lag,
                    "session_id": [f"s{day:04d}-{s:07d}" for s in v_session[sel]],
                }
            )
        )
    events = pd.concat(rows, ignore_index=True).sort_values(["seconds", "event_type"], kind="stable")
    events["seconds"] = events["seconds"].clip(upper=86_399.0)
    events["timestamp"] = base + pd.to_timedelta(events["seconds"], unit="s")
    events["event_id"] = [f"e{day:04d}-{n:08d}" for n in range(len(events))]
    return _snapshot(world, day, conform(events, "events"), category_price_factor)


def _snapshot(
    world: World, day: int, events: pd.DataFrame, category_price_factor: np.ndarray | None = None
) -> dict[str, pd.DataFrame]:
    on_sale = world.item_created_day <= day
    items = world.items[on_sale].copy()
    if category_price_factor is not None:
        items["price"] = (
            items["price"].to_numpy() * category_price_factor[world.item_category[on_sale]]
        ).round(2)
    return {
        "events": events.reset_index(drop=True),
        "items": items.reset_index(drop=True),
        "users": world.users[world.user_signup_day <= day].reset_index(drop=True),
    }


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in TABLES[table].items()})


def generate(cfg: DataSettings, seed: int) -> tuple[World, list[dict[str, pd.DataFrame]]]:
    """The whole synthetic history: the world and one batch per day."""
    world = build_world(cfg, seed)
    return world, [generate_day(world, cfg, seed, d) for d in range(cfg.n_days)]
