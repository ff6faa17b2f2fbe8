"""Erasure: remove one user from every store the platform writes, and record that it was done.

`forget_user(settings, user_id)` walks every file under `settings.home` and the online store:

- **parquet** (raw batches, validated data, batch quarantine, the offline feature tables, anything
  else): rewritten without the rows whose text columns hold the id, every other row and the schema kept;
  a file is replaced by an atomic rename, so a reader sees the old or the new file, never half of one.
  Raw batches stay write-once for everything else: only the erased user's rows go.
- **JSON lines** (the live event log `incoming/`, the live quarantine `quarantine/live/`, experiment
  logs): the lines that name the id are dropped.
- **text** (JSON, HTML, YAML, CSV, logs: validation results and Data Docs, Evidently snapshots and
  reports): the id is replaced by `[erased]` wherever it occurs.
- **SQLite** (the Feast online store, experiment stores, anything else): rows whose text columns equal
  the id or whose binary columns contain it (Feast's serialized entity keys) are deleted, other text that
  contains it is redacted, then the file is vacuumed so no freed page keeps the bytes.
- **Prometheus multiprocess files** of a running service (BentoML labels requests by path, so
  `DELETE /users/<id>` leaves the id in a label): the id is overwritten in place with `*`s.
- **Redis** (when `features.online_store` is redis): the project's keys that contain the id are deleted.
- **PostgreSQL** experiment store (when `experiments.database_url` is set): the user's rows are deleted.

Files of any other kind that still contain the id are listed in the report as `unhandled` (none on the
platform's own layout; a test keeps it so). The audit log `<home>/audit/erasures.jsonl` is append-only
and holds, per erasure, the time, a salted SHA-256 of the id (the salt is `<home>/audit/salt`, made once)
and what was removed where, never the id itself. `audit_hashes` lets a running service recognise the
users erased since it started, without reading any id.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from recflow.settings import Settings

REDACTED = "[erased]"
TEXT_SUFFIXES = (".json", ".html", ".htm", ".yaml", ".yml", ".csv", ".txt", ".log", ".md", ".js")
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class ErasureReport:
    """What one erasure removed: per file the rows or lines dropped or the places redacted."""

    user_hash: str
    at: str
    files: dict[str, int] = field(default_factory=dict)
    redis_keys: int = 0
    unhandled: list[str] = field(default_factory=list)
    source: str = "cli"

    @property
    def removed(self) -> int:
        return sum(self.files.values()) + self.redis_keys


def audit_dir(settings: Settings) -> Path:
    return settings.home / "audit"


def user_hash(settings: Settings, user_id: str) -> str:
    """The salted SHA-256 of a user id that the audit log records (the salt is made once per home)."""
    salt_path = audit_dir(settings) / "salt"
    if not salt_path.exists():
        salt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = salt_path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(16))
        os.replace(tmp, salt_path)
    return hashlib.sha256((salt_path.read_text() + user_id).encode()).hexdigest()


def audit_hashes(settings: Settings) -> list[str]:
    """The user hashes of every erasure in the audit log, oldest first."""
    path = audit_dir(settings) / "erasures.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["user_hash"] for line in path.read_text().splitlines() if line.strip()]


def forget_user(settings: Settings, user_id: str, source: str = "cli") -> ErasureReport:
    """Remove `user_id` from every file under the home and from the online store; append the audit entry.

    Raises:
        ValueError: if `user_id` is empty, longer than 64 characters or shorter than 3 (an id that short
            would match inside other values).
    """
    if not 3 <= len(user_id) <= 64 or user_id != user_id.strip():
        raise ValueError(
            f"Not a user id to erase: {len(user_id)} characters; expected 3-64, no outer spaces."
        )
    report = ErasureReport(user_hash(settings, user_id), datetime.now(UTC).isoformat(), source=source)
    needle = user_id.encode()
    skip = audit_dir(settings).resolve()
    for path in sorted(p for p in settings.home.rglob("*") if p.is_file() and not p.is_symlink()):
        if skip in path.resolve().parents:
            continue
        count = _erase_file(path, user_id)
        if count:
            report.files[str(path.relative_to(settings.home))] = count
        if path.exists() and needle in path.read_bytes():
            report.unhandled.append(str(path.relative_to(settings.home)))
    if settings.features.online_store == "redis":
        report.redis_keys = _erase_redis(settings, needle)
    if settings.experiments.database_url is not None:  # the SQLite default is a file under the home
        from recflow.experiments import ExperimentStore

        report.files["experiments database"] = ExperimentStore(settings).forget(user_id)
    _append_audit(settings, report)
    return report


def _erase_file(path: Path, user_id: str) -> int:
    if path.suffix == ".parquet":
        return _erase_parquet(path, user_id)
    if path.suffix == ".jsonl":
        return _erase_lines(path, user_id)
    if path.parent.name == "prometheus_multiproc_dir":
        return _redact_in_place(path, user_id)
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        return _erase_sqlite(path, user_id)
    if path.suffix in TEXT_SUFFIXES:
        return _redact_text(path, user_id)
    return 0


def _erase_parquet(path: Path, user_id: str) -> int:
    """Rewrite a parquet file without the rows whose text columns contain the id."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    hit = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            found = pc.fill_null(pc.match_substring(column, user_id), False)
            hit |= np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
    dropped = int(hit.sum())
    if not dropped:
        return 0
    kept = table.filter(pa.array(~hit))
    tmp = path.with_name(f".{path.name}.erasing")
    pq.write_table(kept, tmp)
    os.replace(tmp, path)
    return int(dropped)


def _erase_lines(path: Path, user_id: str) -> int:
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if user_id not in line]
    if len(kept) == len(lines):
        return 0
    _replace_text(path, "".join(kept))
    return len(lines) - len(kept)


def _redact_text(path: Path, user_id: str) -> int:
    raw = path.read_bytes()
    count = raw.count(user_id.encode())
    if count:
        tmp = path.with_name(f".{path.name}.erasing")
        tmp.write_bytes(raw.replace(user_id.encode(), REDACTED.encode()))
        os.replace(tmp, path)
    return count


def redact_metrics(directory: Path, user_id: str) -> int:
    """Redact the id in every Prometheus multiprocess file of `directory` (see `_redact_in_place`).

    The service calls it again after answering `DELETE /users/<id>`: BentoML counts that request itself,
    under its path, only once the answer is sent.
    """
    if not directory.is_dir():
        return 0
    return sum(_redact_in_place(p, user_id) for p in directory.glob("*.db") if p.is_file())


def _redact_in_place(path: Path, user_id: str) -> int:
    """Overwrite each occurrence with as many `*` in the file itself (not a new file).

    For the Prometheus multiprocess files of a running service (memory-mapped by its workers): BentoML
    labels its HTTP metrics with the request path, so `DELETE /users/<id>` puts the id in a label. The
    file keeps its layout (same lengths), and the workers, which map the same file, keep counting.
    """
    needle = user_id.encode()
    count = 0
    with path.open("r+b") as f:
        data = f.read()
        start = data.find(needle)
        while start != -1:
            f.seek(start)
            f.write(b"*" * len(needle))
            count += 1
            start = data.find(needle, start + len(needle))
    return count


def _erase_sqlite(path: Path, user_id: str) -> int:
    """Delete the rows that are the user's, redact other text naming the id, vacuum the freed pages."""
    like = f"%{user_id}%"
    changed = 0
    with sqlite3.connect(path, timeout=30) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            if table.startswith("sqlite_"):
                continue
            columns = [(r[1], (r[2] or "").upper()) for r in db.execute(f'PRAGMA table_info("{table}")')]
            for name, kind in columns:
                if "BLOB" in kind or kind == "":
                    cur = db.execute(
                        f'DELETE FROM "{table}" WHERE typeof("{name}") = \'blob\' AND instr("{name}", ?) > 0',
                        (user_id.encode(),),
                    )
                    changed += cur.rowcount
                cur = db.execute(f'DELETE FROM "{table}" WHERE "{name}" = ?', (user_id,))
                changed += cur.rowcount
                cur = db.execute(
                    f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                    f'WHERE typeof("{name}") = \'text\' AND "{name}" LIKE ?',
                    (user_id, REDACTED, like),
                )
                changed += cur.rowcount
    wal = path.with_name(path.name + "-wal")
    if (
        changed
        or user_id.encode() in path.read_bytes()
        or (wal.exists() and user_id.encode() in wal.read_bytes())
    ):
        # deleted rows stay in freed pages and in the write-ahead log until both are rewritten
        db = sqlite3.connect(path, timeout=30)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # VACUUM in WAL mode went through the log
        finally:
            db.close()
    return changed


def _erase_redis(settings: Settings, needle: bytes) -> int:
    """Delete the online store's keys of this project that contain the id (Feast keys one hash per entity)."""
    import redis

    cfg = settings.features
    client = redis.Redis(
        host=cfg.redis_host,
        port=cfg.redis_port,
        db=cfg.redis_db,
        password=cfg.redis_password.get_secret_value() if cfg.redis_password else None,
    )
    keys = [k for k in client.scan_iter(match=f"*{cfg.project}") if needle in k]
    return int(client.delete(*keys)) if keys else 0


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.erasing")
    tmp.write_text(text)
    os.replace(tmp, path)


def _append_audit(settings: Settings, report: ErasureReport) -> None:
    """One JSON line per erasure, appended (the log is never rewritten)."""
    path = audit_dir(settings) / "erasures.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = asdict(report)
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
