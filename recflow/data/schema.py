"""The raw data contract: column names and types of events, items and users, as they arrive daily.

Every table has required columns (every source fills them) and optional ones (null where a source has
no such data: the synthetic shop and the Amazon files leave the grocery columns empty).

`items` and `users` of a daily batch are **upserts**: the rows that are new or changed that day (the
first batch holds the whole catalogue; a source may also send full snapshots, which are valid
upserts). The catalogue as of a day is the latest row per key over the batches up to that day
(`recflow.data.batches.read_snapshot`).
"""

from __future__ import annotations

import pandas as pd

EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase")

EVENT_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "user_id": "string",
    "item_id": "string",
    "event_type": "string",
    "timestamp": "datetime64[us, UTC]",
    "session_id": "string",
    "basket_id": "string",
    "store_id": "string",
    "quantity": "float64",
    "unit_price": "float64",
}
"""`basket_id`, `store_id`: the shopping trip and the store of a purchase line; `quantity`: units bought;
`unit_price`: what was paid per unit (sales value / quantity). Optional: null when the source has none."""
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "category": "string",
    "brand": "string",
    "price": "float64",
    "created_date": "datetime64[us, UTC]",
    "tags": "string",
    "promo_display_stores": "float64",
    "promo_mailer_stores": "float64",
}
"""`tags`: further attributes of the item ('|'-separated, e.g. sub-categories or style), null when none.
`promo_display_stores` / `promo_mailer_stores`: in how many of the shop's stores the item is on an
in-store display / in the weekly mailer from this row's batch day on (a row is re-sent when the
promotion changes); null when the source has no promotion data."""
USER_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "signup_date": "datetime64[us, UTC]",
    "region": "string",
    "age_band": "string",
    "income": "string",
    "home_ownership": "string",
    "marital_status": "string",
    "household_size": "string",
    "household_comp": "string",
    "kids_count": "string",
}
"""`income` ... `kids_count`: household demographics as the source labels them (e.g. '35-49K',
'Homeowner', '2 Adults Kids'); null where unknown."""
TABLES: dict[str, dict[str, str]] = {"events": EVENT_COLUMNS, "items": ITEM_COLUMNS, "users": USER_COLUMNS}
KEYS: dict[str, str] = {"events": "event_id", "items": "item_id", "users": "user_id"}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "events": ("basket_id", "store_id", "quantity", "unit_price"),
    "items": ("tags", "promo_display_stores", "promo_mailer_stores"),
    "users": ("income", "home_ownership", "marital_status", "household_size", "household_comp", "kids_count"),
}
"""Columns a source may leave out: `conform` adds them as nulls."""


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return `df` with exactly the contract's columns, in order, cast to the contract's types.

    Optional columns (`OPTIONAL`) that `df` lacks are added as nulls.

    Raises:
        ValueError: if a required contract column is missing.
    """
    columns = TABLES[table]
    missing = [c for c in columns if c not in df.columns and c not in OPTIONAL[table]]
    if missing:
        raise ValueError(f"{table}: missing column(s) {missing}; expected {list(columns)}")
    absent = [c for c in columns if c not in df.columns]
    if absent:
        df = df.assign(**{c: pd.Series(None, index=df.index, dtype=object) for c in absent})
    return df[list(columns)].astype(columns)


def empty(table: str) -> pd.DataFrame:
    """A table with the contract's columns and types and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in TABLES[table].items()})
