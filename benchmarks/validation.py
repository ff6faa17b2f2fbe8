"""Validation throughput: Great Expectations on every daily batch of a source, timed per table.

`recflow bench validation --data completejourney --json OUT` lands the source's raw batches (once, in
`--home`), validates every batch with the platform's own `features.validation.validate_batch` (the
repository's suites, rows routed to the validated store or quarantine) and reports rows per second:
per table from the time inside the Great Expectations run of that table, and end to end (reading,
validating, routing and writing every batch). `--profile` adds the functions where the time goes
(cProfile, cumulative), so a change can be checked against them.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import shutil
import time
from pathlib import Path

from rich.console import Console

from recflow.settings import Settings

console = Console(stderr=True)
TARGET_ROWS_PER_S = 100_000
"""The events table's throughput the dated-source replay needs (issue 14)."""


def top_functions(profile: cProfile.Profile, n: int = 25) -> list[dict]:
    """The `n` functions with the most cumulative time: `{"function", "calls", "cumulative_s", "own_s"}`."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}({name})" if line else name
        rows.append(
            {"function": where, "calls": calls, "cumulative_s": round(cumulative, 3), "own_s": round(own, 3)}
        )
    return sorted(rows, key=lambda r: -r["cumulative_s"])[:n]


def run_validation_bench(
    settings: Settings,
    json_out: Path,
    days: int | None = None,
    profile: bool = False,
    command: str = "",
    baseline: Path | None = None,
) -> dict:
    """Land (if needed) and validate the batches of `settings.data.source`; write and return the figures.

    The validated store and quarantine of `settings.home` are emptied first, so every batch is validated
    from scratch against the suites of this checkout.

    Args:
        settings: platform settings (the source, the home the batches land in).
        json_out: where the JSON goes.
        days: validate only the first N batches (all when None).
        profile: run the validation under cProfile and report the top functions.
        command: the command line, recorded in the JSON.
        baseline: an earlier run's JSON to compare with in the Markdown table written beside the JSON.
    """
    from features.validation import Validator, suite_version, validate_batches
    from recflow.data.sources import land_batches

    t = time.perf_counter()
    batches = land_batches(settings)[:days]
    landing = time.perf_counter() - t
    console.print(f"{len(batches)} raw batches of {settings.data.source} ready in {landing:.1f}s")
    for folder in (settings.validated_dir, settings.quarantine_dir):
        shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    validator = Validator(settings)
    setup = time.perf_counter() - t
    profiler = cProfile.Profile() if profile else None
    statuses: dict[str, int] = {}
    rows = {"events": 0, "items": 0, "users": 0}
    quarantined = 0
    t = time.perf_counter()
    if profiler:
        profiler.enable()
    step = max(settings.data.validation_days_per_run, 30)
    for lo in range(0, len(batches), step):
        for outcome in validate_batches(validator, batches[lo : lo + step], settings):
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            quarantined += outcome.rows_quarantined
            for table, o in outcome.tables.items():
                rows[table] += o.rows_in
        elapsed = time.perf_counter() - t
        done = min(lo + step, len(batches))
        console.print(
            f"  {done}/{len(batches)} batches, {sum(rows.values()) / elapsed:,.0f} rows/s end to end"
        )
    if profiler:
        profiler.disable()
    total = time.perf_counter() - t
    per_table = {
        table: {
            "rows": rows[table],
            "gx_seconds": round(validator.seconds[table], 2),
            "gx_runs": validator.runs[table],
            "rows_per_s": round(rows[table] / validator.seconds[table]) if validator.seconds[table] else None,
        }
        for table in rows
    }
    result = {
        "command": command,
        "source": settings.data.source,
        "batches": len(batches),
        "suite_version": suite_version(),
        "statuses": statuses,
        "rows_quarantined": quarantined,
        "tables": per_table,
        "end_to_end": {
            "rows": sum(rows.values()),
            "seconds": round(total, 2),
            "rows_per_s": round(sum(rows.values()) / total),
            "events_rows_per_s": round(rows["events"] / total),
        },
        "days_per_run": settings.data.validation_days_per_run,
        "setup_seconds": round(setup, 2),
        "target_events_rows_per_s": TARGET_ROWS_PER_S,
        "meets_target": per_table["events"]["rows_per_s"] is not None
        and per_table["events"]["rows_per_s"] >= TARGET_ROWS_PER_S,
        "load_average": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if profiler:
        result["profile_top"] = top_functions(profiler)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2))
    runs = [json.loads(baseline.read_text())] if baseline else []
    json_out.with_suffix(".md").write_text(markdown([*runs, result]))
    for table, row in per_table.items():
        console.print(
            f"{table:7s} {row['rows']:>10,} rows  GX {row['gx_seconds']:>8.2f}s  {row['rows_per_s'] or 0:>10,} rows/s"
        )
    end = result["end_to_end"]
    console.print(
        f"end to end: {end['rows']:,} rows in {end['seconds']}s = {end['rows_per_s']:,} rows/s "
        f"(events {end['events_rows_per_s']:,} rows/s); statuses {statuses}; wrote {json_out}"
    )
    return result


def markdown(runs: list[dict]) -> str:
    """A table of one or more runs (e.g. before and after a change), each with the command that made it."""
    lines = [
        "# Validation throughput",
        "",
        "Written by `recflow bench validation`; do not edit by hand. Rows/s per table are rows over the seconds",
        "inside Great Expectations for that table; end to end adds reading, routing and writing every batch.",
        "",
        "| run | batches | days per GX run | events rows/s | items rows/s | users rows/s | end to end rows/s |"
        " GX runs (events) | load | meets >= 100k events rows/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, run in enumerate(runs, start=1):
        t = run["tables"]
        lines.append(
            f"| {n} | {run['batches']} | {run.get('days_per_run', 1)} | {t['events']['rows_per_s']:,} | "
            f"{t['items']['rows_per_s']:,} | {t['users']['rows_per_s']:,} | {run['end_to_end']['rows_per_s']:,} | "
            f"{t['events'].get('gx_runs', run['batches'])} | {run['load_average']} | {run['meets_target']} |"
        )
    lines += ["", "Commands:", ""]
    for n, run in enumerate(runs, start=1):
        lines += [f"{n}. `{run['command']}`" + (f" (at commit {run['commit']})" if run.get("commit") else "")]
    lines.append("")
    return "\n".join(lines)
