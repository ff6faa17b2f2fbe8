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
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recflow.data.batches import Batch, day_bounds, list_batches
from recflow.data.schema import KEYS
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
        self.seconds: dict[str, float] = dict.fromkeys(TABLE_ORDER, 0.0)
        """Seconds spent validating each table so far (the throughput benchmark reads them)."""

    def known_ids(self, table: str, before: date) -> set[str]:
        """The keys of `table` (`users` or `items`) in the validated batches of the days before `before`.

        Upserts never remove a key, so this is the key set of the validated catalogue as of the day
        before. Each day's keys are read once per Validator (only the key column) and kept.
        """
        out: set[str] = set()
        for batch in list_batches(self.settings.validated_dir):
            if batch.day >= before:
                break
            ids = self._ids.get((table, batch.day))
            if ids is None:
                column = pq.read_table(batch.table(table), columns=[KEYS[table]]).column(0)
                ids = self._ids[(table, batch.day)] = frozenset(column.drop_null().to_pylist())
            out |= ids
        return out

    def forget(self, day: date) -> None:
        """Drop the kept keys of `day` (its validated folder is being rewritten)."""
        for key in [k for k in self._ids if k[1] == day]:
            del self._ids[key]

    def validate(
        self, table: str, df: pd.DataFrame, parameters: dict
    ) -> tuple[dict, set[int], list[str], bool]:
        """Validate one table.

        Returns:
            (the JSON-able validation result, positions of failing rows, names of failed expectations,
            whether a table-level expectation failed).
        """
        start = time.perf_counter()
        df = df.reset_index(drop=True)
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
        self.seconds[table] += time.perf_counter() - start
        return report, bad_rows, failed, table_level

    def build_docs(self) -> Path:
        """Render Data Docs (HTML) for every validation so far; returns the index page."""
        self.context.build_data_docs()
        return self.settings.home / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _describe(config) -> str:
    column = config.kwargs.get("column")
    return f"{config.type}({column})" if column else config.type


def validate_batch(validator: Validator, batch: Batch, settings: Settings) -> BatchOutcome:
    """Validate one raw batch and route every row to the validated store or to quarantine."""
    frames = {t: batch.read(t) for t in TABLE_ORDER}
    window_start, window_end = day_bounds(batch.day, settings.data.shop_timezone)
    outcomes: dict[str, TableOutcome] = {}
    reports: dict[str, dict] = {}
    good: dict[str, pd.DataFrame] = {}
    bad: dict[str, pd.DataFrame] = {}
    for table in TABLE_ORDER:
        df = frames[table].reset_index(drop=True)
        params: dict = {}
        if table == "events":
            params = {
                "known_user_ids": sorted(
                    validator.known_ids("users", batch.day) | _ids(good["users"], "user_id")
                ),
                "known_item_ids": sorted(
                    validator.known_ids("items", batch.day) | _ids(good["items"], "item_id")
                ),
                "window_start": window_start,
                "window_end": window_end,
            }
        report, bad_rows, failed, table_level = validator.validate(table, df, params)
        reports[table] = report
        mask = df.index.isin(sorted(bad_rows))
        bad[table] = df[mask].assign(__failed_expectations=_row_reasons(df, mask, report))
        good[table] = df[~mask]
        outcomes[table] = TableOutcome(
            table, len(df), int((~mask).sum()), int(mask.sum()), failed, table_level
        )

    status, reason = _decide(outcomes, settings)
    if status == "quarantined":
        for t in TABLE_ORDER:  # the whole batch: every row goes to quarantine
            bad[t] = frames[t].assign(__failed_expectations=f"batch quarantined: {reason}")
            outcomes[t].rows_quarantined, outcomes[t].rows_valid = len(frames[t]), 0
            good[t] = frames[t].iloc[0:0]
    outcome = BatchOutcome(batch.day.isoformat(), status, suite_version(), outcomes, reason)
    validator.forget(batch.day)
    _write(settings, batch, good, bad, outcome, reports)
    return outcome


def _ids(df: pd.DataFrame, column: str) -> set[str]:
    return set(df[column].dropna().astype(str))


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
        for table, df in good.items():
            df.to_parquet(folder / f"{table}.parquet", index=False)

    def quarantined(folder: Path) -> None:
        for table, df in bad.items():
            if len(df):
                df.to_parquet(folder / f"{table}.parquet", index=False)
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
