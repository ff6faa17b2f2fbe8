"""Daily batches on disk: raw (immutable), validated and quarantined.

Layout under `settings.home`::

    raw/<YYYY-MM-DD>/{events,items,users}.parquet          as they arrived, never modified
    validated/<YYYY-MM-DD>/{events,items,users}.parquet    rows that passed validation
    quarantine/<YYYY-MM-DD>/{table}.parquet + report.json  rows that failed, with the reasons

A batch is one calendar day in the shop's time zone (`settings.data.shop_timezone`, see `day_bounds`).
Its `items` and `users` tables are upserts (the rows new or changed that day); `read_snapshot` folds
them into the catalogue as of a day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

import pandas as pd

from recflow.data.schema import KEYS, TABLES, conform, empty


@dataclass(frozen=True)
class Batch:
    """One day's raw batch: its date and folder."""

    day: date
    path: Path

    def table(self, name: str) -> Path:
        return self.path / f"{name}.parquet"

    def read(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.table(name))


def day_bounds(day: date, timezone: str = "UTC") -> tuple[pd.Timestamp, pd.Timestamp]:
    """`[start, end)` of the calendar day `day` in `timezone`, as UTC instants.

    A day is 24 hours except where daylight saving time starts (23) or ends (25).
    """
    start = pd.Timestamp(day).tz_localize(timezone).tz_convert("UTC")
    end = pd.Timestamp(day + timedelta(days=1)).tz_localize(timezone).tz_convert("UTC")
    return start, end


def write_raw_batch(root: Path, day: date, frames: dict[str, pd.DataFrame]) -> Batch:
    """Land one raw batch. An existing batch is never overwritten (raw data is immutable).

    Writes to a temporary folder and renames it, so a crash never leaves half a batch.
    """
    path = root / day.isoformat()
    if path.exists():
        return Batch(day, path)
    tmp = root / f".{day.isoformat()}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frames[name].to_parquet(tmp / f"{name}.parquet", index=False)
    tmp.rename(path)
    return Batch(day, path)


def list_batches(root: Path) -> list[Batch]:
    """The complete batches under `root`, oldest first."""
    if not root.exists():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith("."):
            try:
                out.append(Batch(date.fromisoformat(p.name), p))
            except ValueError:
                continue
    return out


def read_events(root: Path, days: Iterable[date] | None = None) -> pd.DataFrame:
    """All events under `root` (raw or validated), optionally only for `days`, sorted by time."""
    wanted = None if days is None else set(days)
    frames = [_read_file(b.table("events")) for b in list_batches(root) if wanted is None or b.day in wanted]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty("events")
    return pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable").reset_index(drop=True)


def _read_file(path: Path) -> pd.DataFrame:
    """A batch's parquet table, cached by the file's identity (path, size, modification time).

    Monitoring reads the same days again and again (each day of the dashboards reads its training
    window); batches are write-once, and a rewritten file has a new identity, so it is read again.
    """
    return _read_parquet(*_identity(path))


@lru_cache(maxsize=512)  # a year of daily batches' events (catalogue files: `_read_conformed`)
def _read_parquet(path: str, size: int, mtime_ns: int) -> pd.DataFrame:
    return pd.read_parquet(path)


@lru_cache(maxsize=2048)  # both catalogue tables of a few years of days: a pass over a year's snapshots
def _read_conformed(path: str, size: int, mtime_ns: int, table: str) -> pd.DataFrame:
    """A catalogue file in the contract's columns and types, cached by its identity like `_read_parquet`
    (conforming costs more than reading a day's mostly empty upserts: a replay reads each a month long)."""
    return conform(pd.read_parquet(path), table)


def _catalogue_table(table: str) -> None:
    if table not in ("items", "users"):
        raise ValueError(f"Unknown catalogue table {table!r}: expected 'items' or 'users'")


def read_upserts(root: Path, table: str, day: date | None = None) -> pd.DataFrame:
    """Every row of a catalogue table (`items` or `users`) in the batches up to `day` (all when None).

    The rows keep their batch order (oldest first) and carry the batch's date in a `day` column;
    a batch written before a contract column existed gets it as nulls (`schema.conform`).

    Raises:
        ValueError: if `table` is not a catalogue table.
    """
    _catalogue_table(table)
    frames = [
        _read_conformed(*_identity(b.table(table)), table).assign(day=b.day)
        for b in list_batches(root)
        if day is None or b.day <= day
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty(table).assign(day=pd.Series(dtype=object))
    return pd.concat(frames, ignore_index=True)


def read_snapshot(root: Path, table: str, day: date | None = None) -> pd.DataFrame:
    """The catalogue table (`items` or `users`) as of `day`: the latest row per key over the batches up to
    `day` (every batch when None), in the contract's columns, sorted by key.

    Batches hold upserts (rows new or changed that day); a full snapshot is a valid upsert, so this
    reads sources of either kind. A key is never removed.

    Raises:
        FileNotFoundError: if `root` holds no batch up to `day`.
    """
    batches = [b for b in list_batches(root) if day is None or b.day <= day]
    if not batches:
        when = "" if day is None else f" on or before {day}"
        raise FileNotFoundError(f"no batches{when} under {root}: run ingestion first")
    _catalogue_table(table)
    return _snapshot(table, _files(batches, (table,))).copy()  # a copy: callers may change theirs


def batch_files(root: Path, day: date, tables: Iterable[str] = tuple(TABLES)) -> tuple:
    """The identities (real path, size, modification time) of the batch files of `tables` under `root` up
    to `day`: a key for results computed from them that changes when a day is written again."""
    return _files([b for b in list_batches(root) if b.day <= day], tables)


def _files(batches: list[Batch], tables: Iterable[str]) -> tuple[tuple[str, int, int], ...]:
    return tuple(_identity(b.table(t)) for b in batches for t in tables)


SNAPSHOT_FILES_KEPT = 8


def snapshot_file(root: Path, table: str, day: date, folder: Path) -> Path:
    """`read_snapshot(root, table, day)` as a parquet file under `folder`, written once per state.

    The file is named by the identities of the batch files it folds, so a re-validated day gives a new
    file; the `SNAPSHOT_FILES_KEPT` newest files of `table` stay, the older go. A loop that builds a
    window home every day (`flows.loop.window_home`) links the file instead of writing the catalogue.
    """
    import hashlib

    digest = hashlib.sha1(repr(batch_files(root, day, (table,))).encode()).hexdigest()[:16]
    path = folder / f"{table}-{day.isoformat()}-{digest}.parquet"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        read_snapshot(root, table, day).to_parquet(tmp, index=False)
        tmp.replace(path)
        kept = sorted(folder.glob(f"{table}-*.parquet"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in kept[SNAPSHOT_FILES_KEPT:]:
            old.unlink(missing_ok=True)
    return path


def _identity(path: Path) -> tuple[str, int, int]:
    """A file's identity: its real path (homes that link another's day folders share it), size, mtime."""
    real = path.resolve()
    st = real.stat()
    return str(real), st.st_size, st.st_mtime_ns


SNAPSHOTS_KEPT = 32
_snapshots: dict[tuple[str, tuple], pd.DataFrame] = {}


def _snapshot(table: str, files: tuple) -> pd.DataFrame:
    """`read_snapshot`'s fold of `files` (identities, oldest first), cached by them.

    Incremental: a cached fold of a prefix of `files` (yesterday's catalogue) is the start, and only
    the newer files are read and folded onto it, so a loop that asks for each next day's catalogue
    reads one file a day instead of the whole history. The `SNAPSHOTS_KEPT` most recently used folds
    are kept.
    """
    hit = _snapshots.pop((table, files), None)
    if hit is not None:
        _snapshots[(table, files)] = hit  # the most recently used is kept longest
        return hit
    start, base = 0, None
    for n in range(len(files) - 1, 0, -1):
        base = _snapshots.get((table, files[:n]))
        if base is not None:
            start = n
            break
    frames = [base] if base is not None else []
    frames += [f for f in (_read_conformed(*file, table) for file in files[start:]) if len(f)]
    key = KEYS[table]
    if frames:
        rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        latest = rows.drop_duplicates(key, keep="last")
    else:
        latest = empty(table)
    latest = latest.sort_values(key, kind="stable").reset_index(drop=True)
    _snapshots[(table, files)] = latest
    while len(_snapshots) > SNAPSHOTS_KEPT:
        del _snapshots[next(iter(_snapshots))]  # the least recently used
    return latest
