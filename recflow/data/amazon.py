"""Amazon review data in the sequential-recommendation text format, read as raw platform batches.

A data set is a folder holding one `<Name>.txt` (one line per user: `user_id item item ...`, items in
chronological order) and optionally `<Name>_item2attributes.json` (`{"item_id": [attribute_id, ...]}`,
the item's brand and sub-categories mixed in one anonymous id space). This is the format of the
S3-Rec benchmark files (e.g. Amazon Beauty). The files carry no timestamps, no prices and no user
profile, so the platform schema is filled as follows:

* events: each (user, item) entry becomes one `purchase` (a review follows a purchase; the files
  hold no views or carts, so the data set is purchase-only); the timestamps are synthesised: a
  user's k-th of n items lands on day `floor(k * n_days / n)` of the `settings.data` window, at a
  time that increases with k, so every user's order is kept and the last item always falls on the
  last day;
* items: `category` is the item's most frequent attribute (over the catalogue), `brand` its least
  frequent one (a heuristic: the attributes are anonymous), `tags` all of its attributes; `price` is a placeholder of
  `PLACEHOLDER_PRICE` (> 0, the files have no prices); every item exists before the first day;
* users: `region` and `age_band` are `"unknown"`; every user signed up before the first day.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recflow.data.schema import conform
from recflow.settings import Settings

PLACEHOLDER_PRICE = 1.0
UNKNOWN = "unknown"


@dataclass(frozen=True)
class AmazonSequences:
    """The raw content of an Amazon data set folder.

    Attributes:
        name: the data set name (`Beauty` for `Beauty.txt`).
        users: user ids, in file order.
        sequences: each user's item ids, in chronological order (same order as `users`).
        attributes: item id -> attribute ids (empty when the folder has no attribute file).
    """

    name: str
    users: list[str]
    sequences: list[list[str]]
    attributes: dict[str, list[str]]

    @property
    def items(self) -> list[str]:
        """Every item id seen in a sequence or in the attribute file, sorted numerically where possible."""
        seen = {i for seq in self.sequences for i in seq} | set(self.attributes)
        return sorted(seen, key=lambda s: (0, int(s), s) if s.isdigit() else (1, 0, s))


def find_sequence_file(path: str | Path) -> Path:
    """The one `<Name>.txt` of a data set folder (or `path` itself when it is that file).

    Raises:
        FileNotFoundError: if the folder holds no `.txt` file, or several.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"Amazon data set {str(path)!r} does not exist: expected a folder with <Name>.txt"
        )
    candidates = sorted(p for p in path.glob("*.txt") if p.is_file())
    if len(candidates) != 1:
        raise FileNotFoundError(
            f"Amazon data set {str(path)!r} must hold exactly one <Name>.txt, "
            f"found {[p.name for p in candidates]}"
        )
    return candidates[0]


def read_amazon_sequences(path: str | Path) -> AmazonSequences:
    """Read the user sequences (order kept) and the item attributes of a data set folder.

    Args:
        path: the folder (or its `<Name>.txt`).

    Raises:
        ValueError: on a line without any item, or a user listed twice.
    """
    txt = find_sequence_file(path)
    name = txt.stem
    users: list[str] = []
    sequences: list[list[str]] = []
    seen: set[str] = set()
    for lineno, line in enumerate(txt.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise ValueError(
                f"{txt.name}:{lineno}: user {tokens[0]!r} has no item; expected 'user item item ...'"
            )
        if tokens[0] in seen:
            raise ValueError(f"{txt.name}:{lineno}: user {tokens[0]!r} appears twice")
        seen.add(tokens[0])
        users.append(tokens[0])
        sequences.append(tokens[1:])
    attr_file = txt.with_name(f"{name}_item2attributes.json")
    attributes: dict[str, list[str]] = {}
    if attr_file.exists():
        raw = json.loads(attr_file.read_text())
        attributes = {str(k): [str(a) for a in v] for k, v in raw.items()}
    return AmazonSequences(name=name, users=users, sequences=sequences, attributes=attributes)


def amazon_items(data: AmazonSequences, created: datetime) -> pd.DataFrame:
    """The catalogue in the platform's `items` schema (see the module docstring for the mapping)."""
    freq = Counter(a for attrs in data.attributes.values() for a in attrs)
    rows = []
    for item in data.items:
        attrs = sorted(data.attributes.get(item, []), key=lambda a: (-freq[a], a))
        category = f"attr{attrs[0]}" if attrs else UNKNOWN
        brand = f"attr{attrs[-1]}" if len(attrs) > 1 else UNKNOWN
        tags = "|".join(f"attr{a}" for a in attrs) or None
        rows.append((item, category, brand, tags))
    items = pd.DataFrame(rows, columns=["item_id", "category", "brand", "tags"])
    items["price"] = PLACEHOLDER_PRICE
    items["created_date"] = created
    return conform(items, "items")


def amazon_events(data: AmazonSequences, start: date, n_days: int) -> pd.DataFrame:
    """Every interaction as a purchase event, with synthesised, per-user increasing timestamps."""
    lengths = np.array([len(s) for s in data.sequences])
    user = np.repeat(np.array(data.users, dtype=object), lengths)
    item = np.concatenate([np.array(s, dtype=object) for s in data.sequences]) if len(lengths) else []
    pos = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    n = np.repeat(lengths, lengths)
    day = np.minimum((pos + 1) * n_days // n, n_days) - 1
    day = np.maximum(day, 0)
    seconds = 8 * 3600 + pos * 60  # a minute apart, so order within one day is kept too
    base = pd.Timestamp(datetime.combine(start, datetime.min.time(), tzinfo=UTC))
    when = base + pd.to_timedelta(day, unit="D") + pd.to_timedelta(seconds, unit="s")
    events = pd.DataFrame(
        {"user_id": user, "item_id": item, "event_type": "purchase", "timestamp": when, "day": day}
    )
    events["session_id"] = "s" + events["day"].astype(str).str.zfill(4) + "-" + events["user_id"].astype(str)
    return events.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)


def amazon_daily_batches(path: str, settings: Settings) -> Iterator[tuple[date, dict[str, pd.DataFrame]]]:
    """Cut an Amazon data set into `settings.data.n_days` daily raw batches (events, items, users).

    Every user's order is kept (see the module docstring for the synthesised timestamps). The
    catalogue and the users never change, so they are upserts of the first batch only (later batches'
    `items` and `users` tables are empty): validating them once instead of every day.
    """
    data = read_amazon_sequences(path)
    n_days = settings.data.n_days
    start = settings.data.start_date
    before = datetime.combine(start - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    items = amazon_items(data, before)
    users = conform(
        pd.DataFrame({"user_id": data.users, "signup_date": before, "region": UNKNOWN, "age_band": UNKNOWN}),
        "users",
    )
    events = amazon_events(data, start, n_days)
    first = True
    for d, frame in events.groupby("day", sort=True):
        frame = frame.reset_index(drop=True)
        frame["event_id"] = [f"e{int(d):04d}-{n:08d}" for n in range(len(frame))]
        catalogue = {"items": items, "users": users} if first else {"items": items[:0], "users": users[:0]}
        first = False
        yield start + timedelta(days=int(d)), {"events": conform(frame, "events"), **catalogue}


def benchmark_sequences(path: str | Path) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The data set as integer sequences for the leave-one-out benchmark.

    Returns:
        sequences: one int array per user (item indices, chronological order);
        item_attributes: a `[n_items, max_attributes]` int array of attribute indices, 0 = padding;
        item_ids: the original item id of each index.
    """
    data = read_amazon_sequences(path)
    item_ids = data.items
    index = {item: i for i, item in enumerate(item_ids)}
    sequences = [np.array([index[i] for i in seq], dtype=np.int32) for seq in data.sequences]
    attr_index: dict[str, int] = {}
    width = max((len(v) for v in data.attributes.values()), default=0)
    attrs = np.zeros((len(item_ids), max(width, 1)), dtype=np.int32)
    for item, values in data.attributes.items():
        if item in index:
            for j, a in enumerate(values):
                attrs[index[item], j] = attr_index.setdefault(a, len(attr_index) + 1)
    return sequences, attrs, item_ids


def write_amazon_sequences(
    events: pd.DataFrame,
    items: pd.DataFrame,
    folder: str | Path,
    name: str,
    event_types: tuple[str, ...] = ("add_to_cart", "purchase"),
    min_count: int = 5,
) -> Path:
    """Write platform events in this format: the inverse of `read_amazon_sequences`.

    Each user's events of `event_types`, in time order and with immediate repeats of one item
    collapsed, become one `user item item ...` line; users and items are then filtered to a
    `min_count`-core (every kept user and item has at least `min_count` interactions), as the
    Amazon benchmark files are. Ids are renumbered 1..N in order of first appearance, and each
    item's category and brand become its attributes in one anonymous id space.

    Args:
        events: rows in the platform `events` schema.
        items: the catalogue in the `items` schema (the newest row of an item wins).
        folder: where `<name>.txt` and `<name>_item2attributes.json` go (created).
        name: the data set name.
        event_types: which events count as interactions.
        min_count: the core size.

    Returns:
        The path of `<name>.txt`.

    Raises:
        ValueError: if no user is left after the filtering.
    """
    kept = events[events["event_type"].isin(event_types)].sort_values(
        ["user_id", "timestamp", "event_id"], kind="stable"
    )
    repeat = (kept["user_id"] == kept["user_id"].shift()) & (kept["item_id"] == kept["item_id"].shift())
    kept = kept.loc[~repeat, ["user_id", "item_id"]]
    while True:  # k-core: drop rare items and short users until both hold
        item_ok = kept["item_id"].map(kept["item_id"].value_counts()) >= min_count
        user_ok = kept["user_id"].map(kept["user_id"].value_counts()) >= min_count
        if bool(item_ok.all() and user_ok.all()):
            break
        kept = kept[item_ok & user_ok]
    if kept.empty:
        raise ValueError(
            f"no user has {min_count} interactions of types {list(event_types)} after {min_count}-core filtering"
        )
    user_ids = {u: str(n) for n, u in enumerate(pd.unique(kept["user_id"]), start=1)}
    item_ids = {i: str(n) for n, i in enumerate(pd.unique(kept["item_id"]), start=1)}
    lines = [
        " ".join([user_ids[u], *(item_ids[i] for i in group["item_id"])])
        for u, group in kept.groupby("user_id", sort=False)
    ]
    catalogue = items.drop_duplicates("item_id", keep="last").set_index("item_id")
    attr_ids: dict[str, int] = {}
    attributes = {}
    for item, new_id in item_ids.items():
        row = catalogue.loc[item] if item in catalogue.index else None
        values = [] if row is None else [f"category={row['category']}", f"brand={row['brand']}"]
        attributes[new_id] = [attr_ids.setdefault(v, len(attr_ids)) for v in values]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    txt = folder / f"{name}.txt"
    txt.write_text("\n".join(lines) + "\n")
    (folder / f"{name}_item2attributes.json").write_text(json.dumps(attributes))
    return txt
