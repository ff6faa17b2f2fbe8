"""The Feast repository, declared: entities, sources, feature views, on-demand views and feature services.

Names here are the feature contract of the models and the serving path; add, never rename.
Sources point at the parquet tables of `features.compute` (absolute paths), so the declarations are
built by `feature_definitions(data_dir)` rather than at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Float64, Int64, String

from features.compute import DEMOGRAPHIC_COLUMNS, ITEM_POPULARITY_COUNTS

TIMESTAMP = "event_timestamp"
USER_EVENTS_PUSH = "user_events_push"
PRICE_EDGES: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0, 200.0)
"""Upper edges of the price buckets: bucket 0 is price < 10, bucket 5 is price >= 200."""

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="a shopper")
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="a catalogue item")


def price_bucket(price: pd.Series) -> pd.Series:
    """Price bucket index (0..len(PRICE_EDGES)) of each price; shared by Feast and the serving cache."""
    values = pd.to_numeric(price, errors="coerce").to_numpy(dtype=np.float64)
    return pd.Series(np.searchsorted(PRICE_EDGES, values, side="right"), index=price.index, dtype="int64")


@dataclass(frozen=True)
class Definitions:
    """Every Feast object of the repository, in `store.apply` order."""

    entities: list[Entity]
    sources: list
    views: list[FeatureView]
    on_demand: list[OnDemandFeatureView]
    services: list[FeatureService]

    def objects(self) -> list:
        return [*self.entities, *self.sources, *self.views, *self.on_demand, *self.services]

    def view(self, name: str) -> FeatureView:
        for fv in self.views:
            if fv.name == name:
                return fv
        raise KeyError(f"Unknown feature view {name!r}: expected one of {[v.name for v in self.views]}")


def _source(data_dir: Path, name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str((data_dir / f"{name}.parquet").resolve()),
        timestamp_field=TIMESTAMP,
    )


def feature_definitions(data_dir: Path, sequence_length: int = 20) -> Definitions:
    """Declare the repository over the parquet tables in `data_dir` (written by `features.compute`).

    TTLs bound how stale a value a point-in-time join may return: daily snapshots get a few days
    (a missing batch does not blank them at once), the sequence a month; change tables
    (`item_promotions`, `user_demographics`) never expire: a row holds until the key's next row.
    """
    profile_src = _source(data_dir, "user_profile")
    activity_src = _source(data_dir, "user_activity")
    sequence_src = _source(data_dir, "user_sequence")
    attributes_src = _source(data_dir, "item_attributes")
    popularity_src = _source(data_dir, "item_popularity")
    promotions_src = _source(data_dir, "item_promotions")
    demographics_src = _source(data_dir, "user_demographics")
    user_events_push = PushSource(name=USER_EVENTS_PUSH, batch_source=sequence_src)

    user_profile = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=timedelta(days=7),
        schema=[
            Field(name="region", dtype=String),
            Field(name="age_band", dtype=String),
            Field(name="tenure_days", dtype=Int64, description="days since signup"),
        ],
        source=profile_src,
        description="Who the user is (daily snapshot, stamped 00:00 of the day).",
    )
    counts = [f"{kind}_{w}d" for w in (1, 7, 30) for kind in ("views", "carts", "purchases")]
    user_activity = FeatureView(
        name="user_activity",
        entities=[user],
        ttl=timedelta(days=3),
        schema=[
            *[Field(name=c, dtype=Int64) for c in counts],
            Field(name="distinct_categories_30d", dtype=Int64),
            Field(name="days_since_last_event", dtype=Float64, description="at the snapshot time"),
            Field(
                name="last_event_unix_s", dtype=Float64, description="time of the last event, unix seconds"
            ),
        ],
        source=activity_src,
        description="Behaviour over 1/7/30 days up to the end of day d (stamped 00:00 of day d + 1).",
    )
    user_sequence = FeatureView(
        name="user_sequence",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[Field(name="recent_items", dtype=Array(String), description="last N item ids, newest last")],
        source=user_events_push,
        tags={"sequence_length": str(sequence_length)},
        description="The user's last N items, one row per event INCLUDING it; query training rows at "
        "label timestamp - 1 microsecond (features.compute.training_timestamps).",
    )
    item_attributes = FeatureView(
        name="item_attributes",
        entities=[item],
        ttl=timedelta(days=7),
        schema=[
            Field(name="category", dtype=String),
            Field(name="brand", dtype=String),
            Field(name="price", dtype=Float64),
            Field(name="age_days", dtype=Int64, description="days since the item was created"),
        ],
        source=attributes_src,
        description="Catalogue attributes (daily snapshot, stamped 00:00 of the day).",
    )
    item_popularity = FeatureView(
        name="item_popularity",
        entities=[item],
        ttl=timedelta(days=3),
        schema=[
            *[Field(name=c, dtype=Int64) for c in ITEM_POPULARITY_COUNTS],
            Field(name="item_conversion_7d", dtype=Float64, description="purchases / views"),
            Field(name="item_conversion_30d", dtype=Float64, description="purchases / views"),
        ],
        source=popularity_src,
        description="Item popularity and conversion up to the end of day d (stamped 00:00 of day d + 1).",
    )

    item_promotions = FeatureView(
        name="item_promotions",
        entities=[item],
        ttl=timedelta(0),  # never expires: the source re-sends an item whenever its promotion changes
        schema=[
            Field(name="promo_display_stores", dtype=Int64, description="stores with the item on display"),
            Field(name="promo_mailer_stores", dtype=Int64, description="stores with the item in the mailer"),
            Field(name="on_promotion", dtype=Int64, description="1 if on display or in the mailer anywhere"),
        ],
        source=promotions_src,
        description="The item's promotion this week, stamped at the start of the day the week's promotions "
        "became known (the week's first day), one row per change.",
    )
    user_demographics = FeatureView(
        name="user_demographics",
        entities=[user],
        ttl=timedelta(0),  # never expires: a household's row holds until it changes
        schema=[Field(name=c, dtype=String) for c in DEMOGRAPHIC_COLUMNS],
        source=demographics_src,
        description="Household demographics ('unknown' where not known), one row per change, stamped at "
        "the start of the day it arrived.",
    )

    @on_demand_feature_view(
        sources=[item_attributes[["price"]]],
        schema=[Field(name="price_bucket", dtype=Int64)],
        description=f"price bucket index, edges {list(PRICE_EDGES)}",
    )
    def item_price_bucket(inputs: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd  # the registry re-runs this function's source on its own

        from features.definitions import price_bucket

        return pd.DataFrame({"price_bucket": price_bucket(inputs["price"])})

    request_time = RequestSource(
        name="request_time",
        schema=[Field(name="request_unix_s", dtype=Float64, description="request time, unix seconds")],
    )

    @on_demand_feature_view(
        sources=[user_activity[["last_event_unix_s"]], request_time],
        schema=[Field(name="recency_days", dtype=Float64)],
        description="days since the user's last event, as of the request time",
    )
    def user_recency(inputs: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd  # the registry re-runs this function's source on its own

        seconds = inputs["request_unix_s"] - inputs["last_event_unix_s"]
        return pd.DataFrame({"recency_days": seconds / 86_400.0})

    retrieval_v1 = FeatureService(
        name="retrieval_v1",
        features=[user_profile, user_sequence, item_attributes],
        description="two-tower retrieval model: query tower (profile, sequence), candidate tower (attributes)",
    )
    ranking_v1 = FeatureService(
        name="ranking_v1",
        features=[user_profile, user_activity, item_attributes, item_popularity, item_price_bucket],
        description="ranking model: user profile and behaviour, item attributes, popularity, price bucket",
    )
    grocery_v1 = FeatureService(
        name="grocery_v1",
        features=[item_promotions, user_demographics],
        description="dated grocery sources: the item's promotion this week and the household's demographics",
    )
    return Definitions(
        entities=[user, item],
        sources=[
            profile_src,
            activity_src,
            sequence_src,
            attributes_src,
            popularity_src,
            promotions_src,
            demographics_src,
            user_events_push,
        ],
        views=[
            user_profile,
            user_activity,
            user_sequence,
            item_attributes,
            item_popularity,
            item_promotions,
            user_demographics,
        ],
        on_demand=[item_price_bucket, user_recency],
        services=[retrieval_v1, ranking_v1, grocery_v1],
    )
