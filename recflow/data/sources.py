"""Landing raw data: the synthetic generator or a real data set, cut into daily raw batches."""

from __future__ import annotations

from datetime import date, timedelta

from rich.progress import track

from recflow.data.batches import Batch, write_raw_batch
from recflow.settings import Settings


def land_batches(settings: Settings, until: date | None = None) -> list[Batch]:
    """Write every daily raw batch of the configured source that is not on disk yet; return all of them.

    `settings.data.source` is `synthetic` (default), `amazon:PATH`, `completejourney` or
    `completejourney:DIR` (see `recflow.data.completejourney`). With `until`, only the days up to it
    land (the live replay's clock: the rest has not happened yet).
    """
    return [b for b in _land(settings, until) if until is None or b.day <= until]


def _land(settings: Settings, until: date | None) -> list[Batch]:
    source = settings.data.source
    root = settings.raw_dir
    root.mkdir(parents=True, exist_ok=True)
    if source == "synthetic":
        from recflow.data.synthetic import build_world, generate_day

        world = build_world(settings.data, settings.seed)
        out = []
        n_days = settings.data.n_days
        if until is not None:
            n_days = min(n_days, (until - settings.data.start_date).days + 1)
        for d in track(range(n_days), description="landing synthetic batches", transient=True):
            day = settings.data.start_date + timedelta(days=d)
            path = root / day.isoformat()
            frames = None if path.exists() else generate_day(world, settings.data, settings.seed, d)
            out.append(write_raw_batch(root, day, frames) if frames else Batch(day, path))
        return out
    if source.startswith("amazon:"):
        from recflow.data.amazon import amazon_daily_batches

        return [
            write_raw_batch(root, day, frames)
            for day, frames in amazon_daily_batches(source.split(":", 1)[1], settings)
            if until is None or day <= until
        ]
    if source == "completejourney" or source.startswith("completejourney:"):
        from recflow.data.completejourney import completejourney_daily_batches

        return [
            write_raw_batch(root, day, frames)
            for day, frames in completejourney_daily_batches(source)
            if until is None or day <= until
        ]
    raise ValueError(
        f"Unknown data source {source!r}: expected 'synthetic', 'amazon:PATH', 'completejourney' or "
        "'completejourney:DIR'"
    )


def source_days(settings: Settings) -> list[date]:
    """Every day the configured source holds, oldest first, without landing anything."""
    source = settings.data.source
    if source == "synthetic":
        return [settings.data.start_date + timedelta(days=d) for d in range(settings.data.n_days)]
    if source.startswith("amazon:"):
        from recflow.data.amazon import amazon_daily_batches

        return [day for day, _ in amazon_daily_batches(source.split(":", 1)[1], settings)]
    if source == "completejourney" or source.startswith("completejourney:"):
        from recflow.data.completejourney import completejourney_daily_batches

        return [day for day, _ in completejourney_daily_batches(source)]
    raise ValueError(
        f"Unknown data source {source!r}: expected 'synthetic', 'amazon:PATH', 'completejourney' or "
        "'completejourney:DIR'"
    )
