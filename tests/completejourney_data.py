"""A small Complete Journey folder in the package's format, for the loader and next-basket tests."""

from __future__ import annotations

COMPLETEJOURNEY_FIRST_DAY = "2017-02-25"
COMPLETEJOURNEY_CLOSED_DAY = "2017-03-05"  # no transactions: an empty batch
COMPLETEJOURNEY_UNKNOWN_PRODUCT = 999_999  # sold, but missing from products.parquet
COMPLETEJOURNEY_WEEK11_ONLY = 100_001  # on promotion in week 11 (2017-03-06 .. 03-12) only


def write_completejourney_folder(
    folder, households: int = 30, days: int = 24, seed: int = 0, first_day: str = COMPLETEJOURNEY_FIRST_DAY
):
    """A small Complete Journey folder in the package's format (same file names, columns and dtypes).

    Households buy mostly from their own few favourite products (repeat baskets), sometimes something
    new; timestamps are naive UTC of New York shopping hours (some late evenings fall on the next UTC
    day); the days cross the start of daylight saving time (2017-03-12) and week boundaries (Mondays);
    `COMPLETEJOURNEY_CLOSED_DAY` has no transaction; one line sells a product missing from the products
    file, one has quantity 0.
    """
    from pathlib import Path

    import numpy as np
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_products = 120
    product_ids = np.arange(100_000, 100_000 + n_products)
    departments = np.array(["GROCERY", "PRODUCE", "MEAT", "DRUG GM", "PASTRY"])
    dept = departments[np.arange(n_products) % len(departments)]
    category = np.array([f"{d} CAT{i % 7}" for i, d in enumerate(dept)], dtype=object)
    category[::23] = None
    size = np.array([f"{(i % 5) + 1} LB" for i in range(n_products)], dtype=object)
    size[::4] = None
    pd.DataFrame(
        {
            "product_id": product_ids.astype("int64"),
            "manufacturer_id": (product_ids % 13).astype("int64"),
            "department": pd.array(dept, dtype="string"),
            "brand": pd.array(np.where(np.arange(n_products) % 3, "National", "Private"), dtype="string"),
            "product_category": pd.array(category, dtype="string"),
            "product_type": pd.array([f"TYPE {i % 11}" for i in range(n_products)], dtype="string"),
            "package_size": pd.array(size, dtype="string"),
        }
    ).to_parquet(folder / "products.parquet", index=False)

    first = pd.Timestamp(first_day)
    week_one = pd.Timestamp("2017-01-02")  # the package's week 2 starts on this Monday
    popularity = 1.0 / np.arange(1, n_products + 1)
    popularity /= popularity.sum()
    rows = []
    basket = 40_000_000_000
    for h in range(1, households + 1):
        favourites = rng.choice(product_ids, 6, replace=False, p=popularity)
        store = 300 + h % 4
        for d in range(days):
            day = first + pd.Timedelta(days=d)
            if str(day.date()) == COMPLETEJOURNEY_CLOSED_DAY or rng.random() > 0.35:
                continue
            local = day + pd.Timedelta(hours=int(rng.integers(8, 24)), minutes=int(rng.integers(0, 60)))
            stamp = local.tz_localize("America/New_York").tz_convert("UTC").tz_localize(None)
            n_lines = int(rng.integers(3, 7))
            repeat = rng.random(n_lines) < 0.7
            chosen = np.where(
                repeat, rng.choice(favourites, n_lines), rng.choice(product_ids, n_lines, p=popularity)
            )
            basket += 1
            for product in dict.fromkeys(chosen.tolist()):
                quantity = int(rng.integers(1, 4))
                price = 1.0 + (product % 17) * 0.5
                week = 1 if local < week_one else (local.normalize() - week_one).days // 7 + 2
                rows.append((h, store, basket, product, quantity, round(price * quantity, 2), week, stamp))
    tx = pd.DataFrame(
        rows,
        columns=[
            "household_id",
            "store_id",
            "basket_id",
            "product_id",
            "quantity",
            "sales_value",
            "week",
            "transaction_timestamp",
        ],
    )
    tx.loc[0, "product_id"] = COMPLETEJOURNEY_UNKNOWN_PRODUCT
    tx.loc[1, "quantity"] = 0
    for column in ("retail_disc", "coupon_disc", "coupon_match_disc"):
        tx[column] = 0.0
    tx = tx[
        [*tx.columns[:6], "retail_disc", "coupon_disc", "coupon_match_disc", "week", "transaction_timestamp"]
    ]
    tx = tx.sort_values("transaction_timestamp", kind="stable").reset_index(drop=True)
    tx["transaction_timestamp"] = tx["transaction_timestamp"].astype("datetime64[ns]")
    tx.to_parquet(folder / "transactions.parquet", index=False)

    promotions = []
    for week in sorted(tx["week"].unique()):
        for product in product_ids[(product_ids + week) % 9 == 0]:
            for store in (300, 301, 302):
                promotions.append(
                    (int(product), store, str((product + store) % 3), "A" if store == 300 else "0", int(week))
                )
    for store in (300, 301):
        promotions.append((COMPLETEJOURNEY_WEEK11_ONLY, store, "5", "D", 11))
    pd.DataFrame(
        promotions, columns=["product_id", "store_id", "display_location", "mailer_location", "week"]
    ).astype({"display_location": "string", "mailer_location": "string"}).to_parquet(
        folder / "promotions.parquet", index=False
    )

    ages = np.array(["19-24", "25-34", "35-44", "45-54", "55-64", "65+"])
    known = np.arange(1, households + 1, 2)
    pd.DataFrame(
        {
            "household_id": known.astype("int64"),
            "age": pd.array(ages[known % len(ages)], dtype="string"),
            "income": pd.array(["35-49K"] * len(known), dtype="string"),
            "home_ownership": pd.array(["Homeowner" if h % 3 else None for h in known], dtype="string"),
            "marital_status": pd.array(["Married"] * len(known), dtype="string"),
            "household_size": pd.array([str(1 + h % 4) for h in known], dtype="string"),
            "household_comp": pd.array(["2 Adults Kids"] * len(known), dtype="string"),
            "kids_count": pd.array([str(h % 3) for h in known], dtype="string"),
        }
    ).to_parquet(folder / "demographics.parquet", index=False)
    return folder
