"""Daily batches on disk: raw (immutable), validated and quarantined.

Layout under `settings.home`::

    raw/<YYYY-MM-DD>/{events,items,users}.parquet          as they arrived, never modified
    validated/<YYYY-MM-DD>/{events,items,users}.parquet    rows that passed validation
    quarantine/<YYYY-MM-DD>/{table}.parquet + report.json  rows that failed, with the reasons
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from recflow.data.schema import TABLES


@dataclass(frozen=True)
class Batch:
    """One day's raw batch: its date and folder."""

    day: date
    path: Path

    def table(self, name: str) -> Path:
        return self.path / f"{name}.parquet"

    def read(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.table(name))


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
    frames = [b.read("events") for b in list_batches(root) if wanted is None or b.day in wanted]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in TABLES["events"].items()})
    return pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable").reset_index(drop=True)


def read_latest(root: Path, table: str) -> pd.DataFrame:
    """The newest snapshot of a catalogue table (`items` or `users`) under `root`."""
    batches = list_batches(root)
    if not batches:
        raise FileNotFoundError(f"no batches under {root}: run ingestion first")
    return batches[-1].read(table)
