"""The data contract: Great Expectations validates every raw batch; bad data is quarantined, never lost.

The expectation suites are versioned JSON files in `features/expectations/` (one per table). A batch's
tables are validated in catalogue order (users, items, then events, whose ids must be known to the
validated catalogue as of that day: the earlier validated batches' upserts plus the day's own) and its
events must lie in the batch's calendar day in the shop's time zone. Every input row ends in exactly one
place:

* **validated**: `validated/<day>/<table>.parquet`, the rows that met every expectation;
* **quarantine**: `quarantine/<day>/<table>.parquet` with the failed rows, a `__failed_expectations`
  column saying which expectations each row broke, and `report.json` with the validation result.

Row-level or batch-level (`settings.data.validation`):

* `rows` (default): a row that breaks a row-level expectation (null, range, set, unknown id, outside the
  batch's day, duplicate id) is quarantined alone and the good rows go on. The whole batch is quarantined
  if a table-level expectation fails (missing column, wrong type) or if more than
  `settings.data.max_bad_row_share` of a table's rows are bad: such a batch is not trusted at all.
* `batch`: any failure quarantines the whole batch.

A quarantined batch stops the run before training. Re-validating a batch rewrites its outputs in
place (never appends), so re-running ingestion does not duplicate rows.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.data.batches import Batch, day_bounds, list_batches
from recflow.data.schema import KEYS, TABLES
from recflow.settings import Settings

SUITES_DIR = Path(__file__).parent / "expectations"
TABLE_ORDER = ("users", "items", "events")


@dataclass
class TableOutcome:
    """What validation did with one table of one batch."""

    table: str
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    failed_expectations: list[str] = field(default_factory=list)
    table_level_failure: bool = False


@dataclass
class BatchOutcome:
    """What validation did with one daily batch."""

    day: str
    status: str  # "valid", "partial" (some rows quarantined) or "quarantined" (whole batch)
    suite_version: str
    tables: dict[str, TableOutcome]
    reason: str = ""

    @property
    def success(self) -> bool:
        return self.status != "quarantined"

    @property
    def rows_in(self) -> int:
        return sum(t.rows_in for t in self.tables.values())

    @property
    def rows_valid(self) -> int:
        return sum(t.rows_valid for t in self.tables.values())

    @property
    def rows_quarantined(self) -> int:
        return sum(t.rows_quarantined for t in self.tables.values())

    def to_dict(self) -> dict:
        return asdict(self) | {"success": self.success}


def load_suite_spec(table: str) -> dict:
    """The versioned expectation suite of `table`, as stored in the repository."""
    return json.loads((SUITES_DIR / f"{table}.json").read_text())


def suite_version() -> str:
    """Combined version of the three suites, e.g. `events=1,items=1,users=1`."""
    return ",".join(f"{t}={load_suite_spec(t)['meta']['version']}" for t in sorted(TABLE_ORDER))


class Validator:
    """A Great Expectations file context under `settings.home/gx` with the repository's suites loaded."""

    def __init__(self, settings: Settings) -> None:
        import great_expectations as gx
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        self.settings = settings
        root = settings.home / "gx"
        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=root)
        self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        source = self.context.data_sources.add_or_update_pandas("raw_batches")
        self.definitions = {}
        for table in TABLE_ORDER:
            spec = load_suite_spec(table)
            suite = gx.ExpectationSuite(name=spec["name"], meta=spec["meta"])
            for exp in spec["expectations"]:
                config = ExpectationConfiguration(
                    type=exp["type"], kwargs=exp["kwargs"], meta=exp.get("meta")
                )
                suite.add_expectation_configuration(config)
            suite = self.context.suites.add_or_update(suite)
            try:
                asset = source.get_asset(table)
            except LookupError:
                asset = source.add_dataframe_asset(table)
            try:
                batch_def = asset.get_batch_definition(f"{table}_daily")
            except (KeyError, LookupError, ValueError):
                batch_def = asset.add_batch_definition_whole_dataframe(f"{table}_daily")
            definition = gx.ValidationDefinition(name=f"validate_{table}", data=batch_def, suite=suite)
            self.definitions[table] = self.context.validation_definitions.add_or_update(definition)
        self._ids: dict[tuple[str, date], frozenset[str]] = {}
        self._known: dict[str, tuple[list[date], frozenset[str]]] = {}
        """Per table, the last `known_ids` answer: (the validated days it read, their keys)."""
        self.seconds: dict[str, float] = dict.fromkeys(TABLE_ORDER, 0.0)
        """Seconds spent validating each table so far (the throughput benchmark reads them)."""
        self.runs: dict[str, int] = dict.fromkeys(TABLE_ORDER, 0)
        """Great Expectations runs per table so far."""

    def known_ids(self, table: str, before: date) -> set[str]:
        """The keys of `table` (`users` or `items`) in the validated batches of the days before `before`.

        Upserts never remove a key, so this is the key set of the validated catalogue as of the day
        before. Each day's keys are read once per Validator (only the key column) and kept.
        """
        days = [b for b in list_batches(self.settings.validated_dir) if b.day < before]
        start, out = 0, set()
        held = self._known.get(table)  # the key set of an earlier call: extended, not rebuilt
        if held is not None and held[0] == [b.day for b in days[: len(held[0])]]:
            start, out = len(held[0]), set(held[1])
        for batch in days[start:]:
            ids = self._ids.get((table, batch.day))
            if ids is None:
                column = pq.read_table(batch.table(table), columns=[KEYS[table]]).column(0)
                ids = self._ids[(table, batch.day)] = frozenset(column.drop_null().to_pylist())
            out |= ids
        self._known[table] = ([b.day for b in days], frozenset(out))
        return out

    def forget(self, day: date) -> None:
        """Drop the kept keys of `day` (its validated folder is being rewritten)."""
        for key in [k for k in self._ids if k[1] == day]:
            del self._ids[key]
        for table, (days, _) in list(self._known.items()):
            if day in days:
                del self._known[table]

    def validate(
        self, table: str, df: pd.DataFrame, parameters: dict
    ) -> tuple[dict, set[int], list[str], bool]:
        """Validate one table.

        Returns:
            (the JSON-able validation result, positions of failing rows, names of failed expectations,
            whether a table-level expectation failed).
        """
        start = time.perf_counter()
        # Arrow-backed strings: GX copies the frame for many of its metrics, and copying (and null-testing)
        # Python-object strings is what most of a large run spends; verdicts are the same.
        df = df.reset_index(drop=True)
        df = df.assign(**{c: _one_chunk(df[c]) for c, t in df.dtypes.items() if str(t) == "string"})
        result = self.definitions[table].run(
            batch_parameters={"dataframe": df},
            expectation_parameters=parameters,
            result_format={"result_format": "COMPLETE"},
        )
        bad_rows: set[int] = set()
        failed: list[str] = []
        table_level = False
        for r in result.results:
            if r.success:
                continue
            name = _describe(r.expectation_config)
            failed.append(name)
            index = (r.result or {}).get("unexpected_index_list")
            if index is None or r.exception_info.get("raised_exception"):
                table_level = True
            else:
                bad_rows.update(int(i) for i in index)
        report = result.describe_dict()
        for exp in report.get("expectations", []):  # row positions as ints (GX gives some as strings)
            res = exp.get("result") or {}
            if res.get("unexpected_index_list") is not None:
                res["unexpected_index_list"] = [int(i) for i in res["unexpected_index_list"]]
        self.seconds[table] += time.perf_counter() - start
        self.runs[table] += 1
        return report, bad_rows, failed, table_level

    def build_docs(self) -> Path:
        """Render Data Docs (HTML) for every validation so far; returns the index page."""
        self.context.build_data_docs()
        return self.settings.home / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _one_chunk(values: pd.Series) -> pd.Series:
    """`values` as Arrow-backed strings in one contiguous chunk (frames pooled by `pd.concat` hold one
    chunk per part, which slows Great Expectations' per-row metrics)."""
    if values.dtype != pd.StringDtype("pyarrow"):
        return values.astype("string[pyarrow]")
    column = pa.chunked_array(pa.array(values.array)).combine_chunks()
    return pd.Series(pd.arrays.ArrowStringArray(column), index=values.index, name=values.name)


def describe_expectation(kind: str, column: str | None = None) -> str:
    """How reports name an expectation: `type(column)`, or `type` for a table-level one."""
    return f"{kind}({column})" if column else kind


def _describe(config) -> str:
    return describe_expectation(config.type, config.kwargs.get("column"))


def validate_batch(validator: Validator, batch: Batch, settings: Settings) -> BatchOutcome:
    """Validate one raw batch and route every row to the validated store or to quarantine."""
    return validate_batches(validator, [batch], settings)[0]


def validate_batches(
    validator: Validator, batches: list[Batch], settings: Settings, days_per_run: int | None = None
) -> list[BatchOutcome]:
    """Validate raw batches in day order, several days per Great Expectations run where that is exact.

    One GX run costs ~0.2 s whatever its size, more than a day of a grocery shop's events takes to
    check, so consecutive days are validated together (up to `days_per_run`, default
    `settings.data.validation_days_per_run`) when every verdict comes out as it would one day at a time:
    each day's tables have exactly the contract's columns and types and every event lies inside its own
    day (the pooled window is the days' union). In the pooled frames each key (event, item, user id)
    is prefixed with its day, so uniqueness is checked within a day as before; known ids are resolved
    per day (see `_known_tokens`); a day whose batch is quarantined ends its group (its ids are not
    known to the later days, which are validated after it). Every day gets its own outcome,
    validated/quarantine folders and report (`_day_report`), as `validate_batch` gives.
    """
    days_per_run = days_per_run or settings.data.validation_days_per_run
    pending = sorted(batches, key=lambda b: b.day)
    frames: dict[date, dict[str, pd.DataFrame]] = {}
    raw: dict[date, dict[str, pa.Table]] = {}
    outcomes: list[BatchOutcome] = []
    while pending:
        for batch in pending[:days_per_run]:
            if batch.day not in frames:
                raw[batch.day], frames[batch.day] = _read_day(batch)
        group = _poolable(pending[:days_per_run], frames, settings)
        done = _validate_group(validator, group, frames, raw, settings)
        outcomes += done
        for batch in pending[: len(done)]:
            frames.pop(batch.day, None)
            raw.pop(batch.day, None)
        pending = pending[len(done) :]
    return outcomes


_ARROW_STRINGS = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}


def _read_day(batch: Batch) -> tuple[dict[str, pa.Table], dict[str, pd.DataFrame]]:
    """A raw batch's tables as read (Arrow: its validated rows are written back from them, filtered, with
    the raw file's own schema) and as the frames the checks see, their strings Arrow-backed (their dtype
    is still the contract's `string`; Great Expectations and the known-id tokens work on them without
    converting every value to a Python object and back)."""
    raw = {t: pq.read_table(batch.table(t)) for t in TABLE_ORDER}
    return raw, {t: table.to_pandas(types_mapper=_ARROW_STRINGS.get) for t, table in raw.items()}


def _poolable(candidates: list[Batch], frames: dict, settings: Settings) -> list[Batch]:
    """The longest prefix of `candidates` (at least the first) whose days one GX run validates exactly."""
    group: list[Batch] = []
    for batch in candidates:
        tables = frames[batch.day]
        clean = all(_exact_schema(tables[t], t) for t in TABLE_ORDER) and _inside_day(
            tables["events"], batch.day, settings
        )
        if group and not clean:
            break
        group.append(batch)
        if not clean:  # a day that breaks a schema or window check is validated alone
            break
    return group


def _exact_schema(df: pd.DataFrame, table: str) -> bool:
    return list(df.columns) == list(TABLES[table]) and [str(t) for t in df.dtypes] == list(
        TABLES[table].values()
    )


def _inside_day(events: pd.DataFrame, day: date, settings: Settings) -> bool:
    start, end = day_bounds(day, settings.data.shop_timezone)
    stamps = events["timestamp"].dropna()
    return bool(((stamps >= start) & (stamps < end)).all())


KNOWN = "(known)"
"""What a known id becomes in the frame Great Expectations checks against `known_*_ids = [KNOWN]`."""
UNKNOWN_TOKEN = "(unknown)"
"""What an id spelled like `KNOWN` but not known becomes (so it still fails the check)."""


def _known_tokens(values: pd.Series, known: set[str]) -> pd.Series:
    """`values` with every known id replaced by `KNOWN` (nulls and unknown ids kept).

    The known-id expectations get `value_set=[KNOWN]`: each row's verdict is the same as with the
    known ids as the value set, while the set stays one value long. Great Expectations 1.24.1 rebuilds
    an expectation's kwargs, value set included, ~120 times per run (`Expectation.configuration` is a
    pydantic `.dict()` called per kwarg in `_get_domain_kwargs` / `_get_success_kwargs`): a day of
    3,600 known ids cost ~1 s a run, the 92k-product catalogue ~25 s.
    """
    text = _as_string(values)
    codes, uniques = pd.factorize(text)
    ids = uniques.tolist()
    tokens = np.array(
        [KNOWN if u in known else UNKNOWN_TOKEN if u == KNOWN else u for u in ids], dtype=object
    )
    # each distinct id replaced once, then spread over the rows (nulls, code -1, stay null)
    out = pd.array(tokens, dtype=text.dtype).take(codes, allow_fill=True)
    return pd.Series(out, index=values.index, name=values.name)


def _as_string(values: pd.Series) -> pd.Series:
    """`values` as the contract's `string` dtype; string columns (Python- or Arrow-backed) as they are."""
    return values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")


def _by_day(frame: pd.DataFrame, table: str, n: int, pooled: bool) -> pd.DataFrame:
    """`frame` as it enters a pooled run: its key prefixed with the day's number (uniqueness per day)."""
    key = KEYS[table]
    if not pooled or key not in frame:
        return frame
    return frame.assign(**{key: f"{n}/" + _as_string(frame[key])})


def _validate_group(
    validator: Validator, group: list[Batch], frames: dict, raw: dict, settings: Settings
) -> list[BatchOutcome]:
    """Validate `group`'s days with one GX run per table; returns the outcomes of the days it settled
    (all of them, or up to the first quarantined day when later days depended on its ids)."""
    day_rows = {t: [len(frames[b.day][t]) for b in group] for t in TABLE_ORDER}
    bounds = {t: np.concatenate([[0], np.cumsum(day_rows[t])]) for t in TABLE_ORDER}
    results: dict[str, tuple[dict, set[int], list[str], bool]] = {}
    good_keys: dict[str, list[set[str]]] = {}
    pooled = len(group) > 1
    for table in ("users", "items"):
        df = pd.concat(
            [_by_day(frames[b.day][table], table, n, pooled) for n, b in enumerate(group)], ignore_index=True
        )
        results[table] = validator.validate(table, df, {})
        good = ~np.isin(np.arange(len(df)), list(results[table][1]))
        good_keys[table] = [
            _ids(frames[b.day][table][good[bounds[table][n] : bounds[table][n + 1]]], KEYS[table])
            for n, b in enumerate(group)
        ]
    parts = []
    known = {t: validator.known_ids(t, group[0].day) for t in ("users", "items")}  # grows day by day
    for n, batch in enumerate(group):
        events = _by_day(frames[batch.day]["events"], "events", n, pooled).copy()
        for table, column in (("users", "user_id"), ("items", "item_id")):
            known[table] |= good_keys[table][n]  # the catalogue as of day n: the days before and its own
            if column in events:  # a missing column fails the table-level expectation
                events[column] = _known_tokens(events[column], known[table])
        parts.append(events)
    window_start = day_bounds(group[0].day, settings.data.shop_timezone)[0]
    window_end = day_bounds(group[-1].day, settings.data.shop_timezone)[1]
    params = events_parameters([KNOWN], [KNOWN], window_start, window_end)
    results["events"] = validator.validate("events", pd.concat(parts, ignore_index=True), params)
    if len(group) > 1 and any(r[3] for r in results.values()):
        # a table-level failure cannot be pinned on one day: validate the days one by one
        return [o for b in group for o in _validate_group(validator, [b], frames, raw, settings)]
    outcomes = []
    for n, batch in enumerate(group):
        reports = {
            t: _day_report(results[t][0], bounds[t][n], bounds[t][n + 1], frames[batch.day][t])
            for t in TABLE_ORDER
        }
        outcome = _settle(
            validator,
            batch,
            frames[batch.day],
            raw[batch.day],
            reports,
            results,
            settings,
            single=len(group) == 1,
        )
        outcomes.append(outcome)
        if outcome.status == "quarantined" and n + 1 < len(group):
            break  # its ids counted as known for the later days: they are validated again after it
    return outcomes


def _settle(validator, batch, frames, raw, reports, results, settings, single: bool) -> BatchOutcome:
    """Route one day's rows from its (day-level) reports and write its folders (the rows are taken from
    the raw Arrow tables `raw`, so both folders keep the raw files' schema; quarantined rows gain a
    `__failed_expectations` column)."""
    outcomes: dict[str, TableOutcome] = {}
    good: dict[str, pa.Table] = {}
    bad: dict[str, pa.Table] = {}
    for table in TABLE_ORDER:
        df = frames[table]
        report = reports[table]
        bad_rows = {
            int(i)
            for e in report.get("expectations", [])
            if not e.get("success")
            for i in ((e.get("result") or {}).get("unexpected_index_list") or [])
        }
        failed = [
            describe_expectation(e["expectation_type"], e["kwargs"].get("column"))
            for e in report.get("expectations", [])
            if not e.get("success")
        ]
        table_level = results[table][3] if single else False
        mask = df.index.isin(sorted(bad_rows))
        bad[table] = _with_reasons(raw[table].filter(pa.array(mask)), _row_reasons(df, mask, report))
        good[table] = raw[table].filter(pa.array(~mask)) if mask.any() else raw[table]
        outcomes[table] = TableOutcome(
            table, len(df), int((~mask).sum()), int(mask.sum()), failed, table_level
        )
    status, reason = _decide(outcomes, settings)
    if status == "quarantined":
        for t in TABLE_ORDER:  # the whole batch: every row goes to quarantine
            bad[t] = _with_reasons(raw[t], [f"batch quarantined: {reason}"] * raw[t].num_rows)
            outcomes[t].rows_quarantined, outcomes[t].rows_valid = len(frames[t]), 0
            good[t] = raw[t].slice(0, 0)
    outcome = BatchOutcome(batch.day.isoformat(), status, suite_version(), outcomes, reason)
    validator.forget(batch.day)
    _write(settings, batch, good, bad, outcome, reports)
    return outcome


def _day_report(report: dict, lo: int, hi: int, frame: pd.DataFrame) -> dict:
    """One day's share of a run's report: per expectation, its rows `[lo, hi)` renumbered from 0.

    Row-level results are filtered to the day (success, counts, index lists) and their unexpected values
    are read back from the day's own `frame` (the run saw known-id tokens and, pooled, day-prefixed
    keys); a table-level result is kept as it is. `pooled_rows` says which rows of the run the day was.
    """
    lo, hi = int(lo), int(hi)
    out = {k: v for k, v in report.items() if k not in ("expectations", "statistics", "success")}
    expectations = []
    for exp in report.get("expectations", []):
        result = dict(exp.get("result") or {})
        index = result.get("unexpected_index_list")
        if index is not None:
            rows = np.asarray(index, dtype=np.int64)
            keep = (rows[(rows >= lo) & (rows < hi)] - lo).tolist()
            result["unexpected_index_list"] = keep
            column = exp.get("kwargs", {}).get("column")
            if column in frame and "unexpected_list" in result:
                values = []
                if keep:
                    picked = frame[column].iloc[keep]
                    values = picked.astype(object).where(picked.notna(), None).tolist()
                result["unexpected_list"] = values
                result["partial_unexpected_list"] = values[:20]
                counts = Counter(values).most_common(20)
                result["partial_unexpected_counts"] = [{"value": v, "count": c} for v, c in counts]
            if "partial_unexpected_index_list" in result:
                result["partial_unexpected_index_list"] = keep[:20]
            result["element_count"] = hi - lo
            result["unexpected_count"] = len(keep)
            result["unexpected_percent"] = 100.0 * len(keep) / (hi - lo) if hi > lo else 0.0
            expectations.append({**exp, "result": result, "success": not keep})
        else:
            expectations.append(exp)
    passed = sum(bool(e.get("success")) for e in expectations)
    out["expectations"] = expectations
    out["success"] = passed == len(expectations)
    out["statistics"] = {
        "evaluated_expectations": len(expectations),
        "successful_expectations": passed,
        "unsuccessful_expectations": len(expectations) - passed,
        "success_percent": 100.0 * passed / len(expectations) if expectations else 100.0,
    }
    out["pooled_rows"] = [lo, hi]
    return out


def events_parameters(known_user_ids, known_item_ids, window_start: datetime, window_end: datetime) -> dict:
    """The `$PARAMETER`s of the events suite: known ids, and the window [start, end) events must lie in.

    A batch passes the known-id token (its known ids are resolved per day, see `_known_tokens`) and its
    days; `POST /events` passes the validated catalogue and the live window (see `serving/events.py`).
    """
    return {
        "known_user_ids": known_user_ids,
        "known_item_ids": known_item_ids,
        "window_start": pd.Timestamp(window_start),
        "window_end": pd.Timestamp(window_end),
    }


def _ids(df: pd.DataFrame, column: str) -> set[str]:
    if column not in df:
        return set()
    return set(_as_string(df[column].dropna()).tolist())


def _row_reasons(df: pd.DataFrame, mask, report: dict) -> list[str]:
    """For each failing row, the expectations it broke (from the unexpected index lists)."""
    reasons: dict[int, list[str]] = {}
    for exp in report.get("expectations", []):
        if exp.get("success"):
            continue
        for i in (exp.get("result") or {}).get("unexpected_index_list") or []:
            reasons.setdefault(int(i), []).append(
                f"{exp['expectation_type']}({exp['kwargs'].get('column', '')})"
            )
    return ["; ".join(reasons.get(i, ["batch rejected"])) for i in df.index[mask]]


def _with_reasons(rows: pa.Table, reasons: list[str]) -> pa.Table:
    return rows.append_column("__failed_expectations", pa.array(reasons, pa.string()))


def _decide(outcomes: dict[str, TableOutcome], settings: Settings) -> tuple[str, str]:
    failed = {t: o for t, o in outcomes.items() if o.failed_expectations}
    if not failed:
        return "valid", ""
    summary = "; ".join(f"{t}: {', '.join(o.failed_expectations)}" for t, o in failed.items())
    if settings.data.validation == "batch":
        return "quarantined", f"batch mode, failed expectations: {summary}"
    if any(o.table_level_failure for o in failed.values()):
        return "quarantined", f"table-level expectation failed: {summary}"
    worst = max(o.rows_quarantined / max(o.rows_in, 1) for o in failed.values())
    if worst > settings.data.max_bad_row_share:
        return "quarantined", (
            f"{worst:.0%} bad rows > max_bad_row_share {settings.data.max_bad_row_share:.0%}: {summary}"
        )
    return "partial", f"rows quarantined: {summary}"


def _write(settings, batch, good, bad, outcome: BatchOutcome, reports) -> None:
    """Write validated rows and quarantined rows, each day folder replaced atomically (never appended)."""
    day = batch.day.isoformat()

    def validated(folder: Path) -> None:
        for table, rows in good.items():
            pq.write_table(rows, folder / f"{table}.parquet")

    def quarantined(folder: Path) -> None:
        for table, rows in bad.items():
            if rows.num_rows:
                pq.write_table(rows, folder / f"{table}.parquet")
        report = outcome.to_dict() | {"validation_results": reports, "raw_batch": str(batch.path)}
        (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))

    _replace_day(settings.validated_dir, day, validated if outcome.success else None)
    _replace_day(settings.quarantine_dir, day, quarantined if outcome.rows_quarantined else None)


def _replace_day(root: Path, day: str, fill) -> None:
    """Replace `root/day` with a folder filled by `fill` (written aside, then renamed); None removes it."""
    final, tmp = root / day, root / f".{day}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if fill is not None:
        tmp.mkdir(parents=True)
        fill(tmp)
    shutil.rmtree(final, ignore_errors=True)
    if fill is not None:
        tmp.rename(final)
