"""The raw data contract: column names and types of events, items and users, as they arrive daily."""

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
}
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "string",
    "category": "string",
    "brand": "string",
    "price": "float64",
    "created_date": "datetime64[us, UTC]",
    "tags": "string",
}
"""`tags`: further attributes of the item ('|'-separated, e.g. sub-categories or style), null when none."""
USER_COLUMNS: dict[str, str] = {
    "user_id": "string",
    "signup_date": "datetime64[us, UTC]",
    "region": "string",
    "age_band": "string",
}
TABLES: dict[str, dict[str, str]] = {"events": EVENT_COLUMNS, "items": ITEM_COLUMNS, "users": USER_COLUMNS}


def conform(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Return `df` with exactly the contract's columns, in order, cast to the contract's types.

    Raises:
        ValueError: if a contract column is missing.
    """
    columns = TABLES[table]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: missing column(s) {missing}; expected {list(columns)}")
    return df[list(columns)].astype(columns)
