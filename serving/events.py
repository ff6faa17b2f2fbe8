"""`POST /events`: every event meets the same data contract as a batch before it reaches the online store.

A request's events are checked one by one, in two steps:

1. **shape**: each event must parse as `serving.schemas.Event` (fields, types, lengths, event type);
2. **contract**: the row-level rules of the events expectation suite (`features/contract.py`, the same
   suite Great Expectations applies to every batch), with the live parameters: items must be in the
   validated catalogue (`KnownItems`), timestamps inside the live window, from
   `serving.events_max_age_days` ago (older events change no online feature) to
   `serving.events_clock_skew_s` ahead of the server's clock. A new user is valid.

Valid events go on (event log, online store); rejected ones are appended with their reasons to
`<home>/quarantine/live/<YYYY-MM-DD>/events.jsonl`. The service turns the outcome into the answer.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from features.contract import row_violations
from features.validation import events_parameters
from recflow.data.batches import list_batches
from recflow.data.schema import EVENT_COLUMNS, conform
from recflow.settings import Settings
from serving.schemas import Event, EventError


@dataclass
class CheckedEvents:
    """The outcome of checking one request: valid events as a frame, and the errors of the others.

    `valid` is in the raw events contract, indexed by each event's position in the request.
    """

    valid: pd.DataFrame
    errors: list[EventError]

    @property
    def rejected_indexes(self) -> list[int]:
        return sorted({e.index for e in self.errors})


class KnownItems:
    """The item ids of the validated catalogue (every validated day's `items` table), kept current.

    `refresh()` reads only the days validated since the last call, so it is cheap to call often.
    """

    def __init__(self, settings: Settings) -> None:
        self.root = settings.validated_dir
        self.ids: frozenset[str] = frozenset()
        self._days: set[str] = set()
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> int:
        """Add the items of newly validated days; returns how many ids were added."""
        with self._lock:
            new = [b for b in list_batches(self.root) if b.path.name not in self._days]
            if not new:
                return 0
            added: set[str] = set()
            for batch in new:
                if batch.table("items").exists():
                    added.update(batch.read("items")["item_id"].dropna().astype(str))
            before = len(self.ids)
            self.ids = self.ids | added  # one assignment: readers see the old or the new set
            self._days.update(b.path.name for b in new)
            return len(self.ids) - before


def check_events(
    rows: list[Any], known_items: frozenset[str], settings: Settings, now: datetime
) -> CheckedEvents:
    """Check each row of a request against the event shape, then against the events suite's rules.

    Args:
        rows: the request's `events`, as sent (anything JSON can hold).
        known_items: the validated catalogue's item ids.
        settings: platform settings (`serving.events_clock_skew_s`, `serving.events_max_age_days`).
        now: the server's clock (UTC); stamps events that carry no timestamp.
    """
    parsed, errors = _parse(rows, now)
    frame = _frame(parsed)
    if len(frame):
        window_start = now - timedelta(days=settings.serving.events_max_age_days)
        window_end = now + timedelta(seconds=settings.serving.events_clock_skew_s)
        # a new user is valid: the live path knows every user it is told about
        params = events_parameters(set(frame["user_id"]), known_items, window_start, window_end)
        broken = row_violations("events", frame, params)
        errors += [
            EventError(index=int(i), field=v.field, rule=v.rule, reason=v.reason)
            for i, found in broken.items()
            for v in found
        ]
        frame = frame.drop(index=list(broken))
    errors.sort(key=lambda e: e.index)
    return CheckedEvents(frame, errors)


def quarantine_lines(rows: list[Any], errors: list[EventError], received_at: datetime) -> str:
    """JSON lines, one per rejected event: the event as sent, its position, its errors, when it came."""
    by_index: dict[int, list[dict]] = {}
    for e in errors:
        by_index.setdefault(e.index, []).append(e.model_dump(exclude={"index"}))
    return "".join(
        json.dumps(
            {
                "received_at": received_at.isoformat(),
                "index": i,
                "event": _as_sent(rows[i]),
                "errors": found,
            },
            default=str,
        )
        + "\n"
        for i, found in sorted(by_index.items())
    )


def log_lines(frame: pd.DataFrame) -> str:
    """Accepted events as JSON lines in the raw events contract (ISO timestamps)."""
    lines = frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat())).to_json(
        orient="records", lines=True
    )
    return lines if lines.endswith("\n") else lines + "\n"


def append(path: Path, text: str, lock: threading.Lock) -> Path:
    """Append `text` to `path` in one write, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock, path.open("a") as f:
        f.write(text)
    return path


def _parse(rows: list[Any], now: datetime) -> tuple[list[tuple[int, Event]], list[EventError]]:
    """Rows that parse as `Event` (timestamps in UTC), and an error for each field of those that don't."""
    parsed, errors = [], []
    for i, row in enumerate(rows):
        try:
            event = row if isinstance(row, Event) else Event.model_validate(row)
            event = event.model_copy(update={"timestamp": _utc(event.timestamp or now)})
        except ValidationError as e:
            errors += [
                EventError(
                    index=i,
                    field=".".join(str(p) for p in err["loc"]) or None,
                    rule=f"schema:{err['type']}",
                    reason=err["msg"],
                )
                for err in e.errors(include_url=False)
            ]
            continue
        except OverflowError:  # an offset that moves the time outside the years 1-9999
            reason = "with its UTC offset, the time falls outside the years 1-9999"
            errors.append(EventError(index=i, field="timestamp", rule="schema:datetime_range", reason=reason))
            continue
        parsed.append((i, event))
    return parsed, errors


def _frame(parsed: list[tuple[int, Event]]) -> pd.DataFrame:
    """Parsed events as a DataFrame in the raw events contract, indexed by position in the request."""
    rows = [
        {
            "event_id": uuid.uuid4().hex,
            "user_id": e.user_id,
            "item_id": e.item_id,
            "event_type": e.event_type,
            "timestamp": e.timestamp,
            "session_id": e.session_id or f"live-{e.user_id}",
        }
        for _, e in parsed
    ]
    frame = pd.DataFrame(rows, index=pd.Index([i for i, _ in parsed]), columns=list(EVENT_COLUMNS))
    return conform(frame, "events")


def _utc(ts: datetime) -> datetime:
    """Aware timestamps converted to UTC; naive ones taken as UTC."""
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _as_sent(row: Any) -> Any:
    return row.model_dump(mode="json") if isinstance(row, Event) else row
