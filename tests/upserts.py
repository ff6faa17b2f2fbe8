"""Turn the full daily snapshots of a batch store into upserts (the catalogue rows new or changed each day)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recflow.data.batches import list_batches
from recflow.data.schema import KEYS


def as_upserts(root: Path) -> None:
    """Rewrite the `items` and `users` of every batch after the first under `root` as upserts."""
    batches = list_batches(root)
    rewritten = {}
    for previous, batch in zip(batches, batches[1:], strict=False):
        for table in ("items", "users"):
            before = previous.read(table).set_index(KEYS[table])
            now = batch.read(table).set_index(KEYS[table])
            old = now.index.isin(before.index)
            same = pd.Series(False, index=now.index)
            same[old] = (
                (now[old].astype(str) == before.loc[now.index[old]].astype(str)).all(axis=1).to_numpy()
            )
            rewritten[(batch.path, table)] = now[~same.to_numpy()].reset_index()
    for (path, table), frame in rewritten.items():
        frame.to_parquet(path / f"{table}.parquet", index=False)
