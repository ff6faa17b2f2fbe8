"""Online experiments: which user sees which model, what each response showed, and what users did next.

An experiment shows a challenger model to a share of users. A user's variant is a stable function of a
salted hash of the user id (`Experiment.variant`): the same user gets the same variant on every request
and in every worker, and a new experiment (a new salt) reshuffles users. In shadow mode every user is
shown the champion; the challenger scores the requests of its share unseen, and its latency and the
overlap of its list with the champion's are logged.

Everything is stored durably in one SQL database (`ExperimentStore`): SQLite at
`<home>/experiments/experiments.db` by default, PostgreSQL when `RECFLOW_EXPERIMENTS__DATABASE_URL` is
set (e.g. `postgresql+psycopg://user@host:5432/recflow`). Tables:

- `experiments`: id, challenger tag, champion tag at start, share, shadow, salt, started_at, stopped_at;
- `assignments`: the first time a user was assigned in an experiment, and the variant;
- `impressions`: one row per item shown: request_id, position (0-based), item_id, user_id, variant, model,
  the answer's model latency;
- `outcomes`: an event that named a `request_id` and an item that request showed: its type, the variant
  and the position it was attributed to;
- `shadow`: per shadow-scored request, the challenger's latency and its overlap with the champion's list.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from recflow.settings import Settings

VARIANTS = ("champion", "challenger")

metadata = sa.MetaData()
experiments_table = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("challenger", sa.String(128), nullable=False),
    sa.Column("champion", sa.String(128)),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("shadow", sa.Boolean, nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("stopped_at", sa.String(40)),
)
assignments_table = sa.Table(
    "assignments",
    metadata,
    sa.Column("experiment_id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("variant", sa.String(16), nullable=False),
    sa.Column("assigned_at", sa.String(40), nullable=False),
)
impressions_table = sa.Table(
    "impressions",
    metadata,
    sa.Column("request_id", sa.String(32), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("experiment_id", sa.String(32), index=True),
    sa.Column("variant", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("shown_at", sa.String(40), nullable=False),
    sa.Column("latency_ms", sa.Float, doc="time the variant's model took for the whole answer"),
)
outcomes_table = sa.Table(
    "outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(32), nullable=False, index=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("experiment_id", sa.String(32), index=True),
    sa.Column("variant", sa.String(16), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
)
shadow_table = sa.Table(
    "shadow",
    metadata,
    sa.Column("request_id", sa.String(32), primary_key=True),
    sa.Column("experiment_id", sa.String(32), nullable=False, index=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("champion_latency_ms", sa.Float, nullable=False),
    sa.Column(
        "overlap", sa.Float, nullable=False, doc="share of the champion's items in the challenger's list"
    ),
    sa.Column("at", sa.String(40), nullable=False),
)
USER_TABLES = (assignments_table, impressions_table, outcomes_table, shadow_table)


@dataclass(frozen=True)
class Experiment:
    """One experiment: the challenger, the share of users it gets, shadow or shown, the assignment salt."""

    id: str
    challenger: str
    champion: str | None
    share: float
    shadow: bool
    salt: str
    started_at: str
    stopped_at: str | None = None

    def variant(self, user_id: str) -> str:
        """'challenger' for a user whose salted hash falls in the first `share` of [0, 1), else 'champion'."""
        digest = hashlib.sha256(f"{self.salt}:{user_id}".encode()).digest()
        return "challenger" if int.from_bytes(digest[:8], "big") / 2**64 < self.share else "champion"


class ExperimentError(RuntimeError):
    """An experiment command that cannot be done as asked (one already runs, none runs)."""


class ExperimentStore:
    """The experiments database: SQLite under the home, or PostgreSQL when configured. Tables made on open."""

    def __init__(self, settings: Settings) -> None:
        url = settings.experiments.database_url
        if url is not None:
            self.engine = sa.create_engine(url.get_secret_value(), pool_pre_ping=True)
        else:
            path = (settings.home / "experiments" / "experiments.db").resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        metadata.create_all(self.engine)

    # ---- experiments -----------------------------------------------------------------------------
    def start(
        self, challenger: str, share: float, shadow: bool, champion: str | None, salt: str | None = None
    ) -> Experiment:
        """Start an experiment; raises ExperimentError while another one runs.

        `salt` fixes the assignment (a simulation replays the same split for a seed); a new random
        salt by default, so every experiment reshuffles users.
        """
        if not 0 < share < 1:
            raise ValueError(f"share must be between 0 and 1 (exclusive); got {share}.")
        if challenger == champion:
            raise ExperimentError(f"The challenger {challenger} is the champion: nothing to compare.")
        with self.engine.begin() as db:
            running = self._active(db)
            if running is not None:
                raise ExperimentError(
                    f"Experiment {running.id} (challenger {running.challenger}) is running: stop it first."
                )
            experiment = Experiment(
                id=secrets.token_hex(6),
                challenger=challenger,
                champion=champion,
                share=share,
                shadow=shadow,
                salt=salt or secrets.token_hex(16),
                started_at=_now(),
            )
            db.execute(experiments_table.insert().values(**experiment.__dict__))
        return experiment

    def stop(self) -> Experiment:
        """Stop the running experiment; raises ExperimentError when none runs."""
        with self.engine.begin() as db:
            running = self._active(db)
            if running is None:
                raise ExperimentError("No experiment is running.")
            stopped_at = _now()
            db.execute(
                experiments_table.update()
                .where(experiments_table.c.id == running.id)
                .values(stopped_at=stopped_at)
            )
        return Experiment(**{**running.__dict__, "stopped_at": stopped_at})

    def active(self) -> Experiment | None:
        with self.engine.connect() as db:
            return self._active(db)

    def latest(self) -> Experiment | None:
        """The running experiment, else the one stopped last."""
        with self.engine.connect() as db:
            row = db.execute(
                experiments_table.select().order_by(experiments_table.c.started_at.desc())
            ).first()
        return Experiment(**row._mapping) if row else None

    def _active(self, db: sa.Connection) -> Experiment | None:
        row = db.execute(experiments_table.select().where(experiments_table.c.stopped_at.is_(None))).first()
        return Experiment(**row._mapping) if row else None

    # ---- logs ------------------------------------------------------------------------------------
    def write(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        """Insert rows per table name (`assignments` keeps the first assignment of a user) in one transaction."""
        tables = {t.name: t for t in USER_TABLES}
        with self.engine.begin() as db:
            for name, batch in rows.items():
                if not batch:
                    continue
                if name == "assignments":
                    known = {
                        (r.experiment_id, r.user_id)
                        for r in db.execute(
                            sa.select(assignments_table.c.experiment_id, assignments_table.c.user_id).where(
                                assignments_table.c.user_id.in_({r["user_id"] for r in batch})
                            )
                        )
                    }
                    batch = [r for r in _unique(batch) if (r["experiment_id"], r["user_id"]) not in known]
                    if not batch:
                        continue
                db.execute(tables[name].insert(), batch)

    def shown(self, request_id: str) -> list[dict[str, Any]]:
        """The impressions of one response (empty when the request id is unknown)."""
        with self.engine.connect() as db:
            rows = db.execute(impressions_table.select().where(impressions_table.c.request_id == request_id))
            return [dict(r._mapping) for r in rows]

    def summary(self, experiment_id: str) -> dict[str, dict[str, Any]]:
        """Per variant: users assigned, responses, impressions, outcomes by type, shadow figures."""
        out: dict[str, dict[str, Any]] = {v: {"users": 0, "responses": 0, "impressions": 0} for v in VARIANTS}
        with self.engine.connect() as db:
            a, i, o, s = assignments_table.c, impressions_table.c, outcomes_table.c, shadow_table.c
            for variant, n in db.execute(
                sa.select(a.variant, sa.func.count())
                .where(a.experiment_id == experiment_id)
                .group_by(a.variant)
            ):
                out[variant]["users"] = n
            for variant, responses, shown in db.execute(
                sa.select(i.variant, sa.func.count(sa.distinct(i.request_id)), sa.func.count())
                .where(i.experiment_id == experiment_id)
                .group_by(i.variant)
            ):
                out[variant].update(responses=responses, impressions=shown)
            for variant, kind, n in db.execute(
                sa.select(o.variant, o.event_type, sa.func.count())
                .where(o.experiment_id == experiment_id)
                .group_by(o.variant, o.event_type)
            ):
                out[variant][f"{kind}s"] = n
            row = db.execute(
                sa.select(sa.func.count(), sa.func.avg(s.latency_ms), sa.func.avg(s.overlap)).where(
                    s.experiment_id == experiment_id
                )
            ).first()
            if row and row[0]:
                out["challenger"]["shadow"] = {
                    "requests": row[0],
                    "latency_ms_mean": row[1],
                    "overlap_mean": row[2],
                }
        return out

    def forget(self, user_id: str) -> int:
        """Delete every row of a user (erasure); returns how many."""
        with self.engine.begin() as db:
            return sum(db.execute(t.delete().where(t.c.user_id == user_id)).rowcount for t in USER_TABLES)


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for r in rows:
        key = (r["experiment_id"], r["user_id"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _sqlite_wal(connection, _record) -> None:
    connection.execute("PRAGMA journal_mode=WAL")


def _now() -> str:
    return datetime.now(UTC).isoformat()
