"""The three UIs a user opens, rendered by a real (headless) Chromium, from this machine only.

* the Prefect UI lists the three deployments and a completed run of the daily one;
* the Evidently UI shows the drift and quality panels over the logged days;
* the service's `/docs` (Swagger UI) lists every endpoint.

Each test saves a screenshot (`--screenshots docs/screenshots` keeps them for the README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.deployments import build_deployments, prefect_env, wait_for_http
from serving.server import free_port, running_server

from .browser_support import background, off_machine

BIN = Path(sys.executable).parent
TIMEOUT_MS = 90_000  # a busy 2-core machine renders slowly


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_prefect_ui_lists_the_deployments_and_their_runs(page, tiny_settings, screenshots, tmp_path):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    env = {**os.environ, **prefect_env(tiny_settings, port)}
    Path(env["PREFECT_HOME"]).mkdir(parents=True)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background(server, env, tmp_path / "prefect.log"):
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=300)

        def register():
            """The three deployments and one run of the daily one, on the test's server."""
            with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
                deployments = build_deployments(tiny_settings)
                for deployment in deployments:
                    deployment.apply()
                return deployments, run_deployment(
                    "recflow-daily-monitoring/daily-ingest-validate-drift", timeout=0
                )

        # in a thread of its own: Playwright's sync API keeps an event loop running in this one, and
        # Prefect's sync/async dispatch would hand back coroutines here
        with ThreadPoolExecutor(1) as pool:
            deployments, run = pool.submit(register).result()
        executed = subprocess.run(
            [str(BIN / "prefect"), "flow-run", "execute", str(run.id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert executed.returncode == 0, executed.stderr[-3000:]

        page.goto(f"http://127.0.0.1:{port}/deployments")
        for deployment in deployments:
            page.get_by_text(deployment.name, exact=True).wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("At 02:00 AM every day").wait_for(timeout=TIMEOUT_MS)
        page.screenshot(path=screenshots / "prefect-deployments.png")

        page.goto(f"http://127.0.0.1:{port}/runs")
        page.get_by_text(run.name, exact=True).wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("Completed", exact=True).first.wait_for(timeout=TIMEOUT_MS)
        page.get_by_text("daily-ingest-validate-drift").first.wait_for(timeout=TIMEOUT_MS)
        page.screenshot(path=screenshots / "prefect-runs.png")
    assert off_machine(page.requested) == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_evidently_ui_shows_drift_and_quality_over_the_days(page, tiny_settings, screenshots, tmp_path):
    from monitoring.drift import detect_drift
    from monitoring.frames import frames_for_days
    from monitoring.quality import QualityResult
    from monitoring.workspace import log_batch
    from recflow.data.sources import land_batches

    batches = land_batches(tiny_settings)
    for batch in batches:
        shutil.copytree(batch.path, tiny_settings.validated_dir / batch.path.name)
    days = [b.day for b in batches]
    logged = days[3:]
    for n, day in enumerate(logged):
        reference, current = frames_for_days(tiny_settings, days[:3], [day])
        when = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        drift = detect_drift(reference, current, tiny_settings, tmp_path / day.isoformat(), timestamp=when)
        quality = QualityResult(
            k=10, users=40, hit_rate=0.1 + 0.02 * n, coverage=0.5, popularity_bias=0.7, novelty=6.0
        )
        log_batch(tiny_settings, drift, quality, timestamp=when, name=day.isoformat())

    port = free_port()
    ui = [str(BIN / "evidently"), "ui", "--workspace", str(tiny_settings.evidently_dir), "--port", str(port)]
    with background(ui, dict(os.environ), tmp_path / "evidently.log"):
        wait_for_http(f"http://127.0.0.1:{port}/", timeout=120)
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_text("recflow", exact=True).first.click(timeout=TIMEOUT_MS)
        for title in (
            "Share of drifted columns per batch",
            "Key column drift distances",
            "hit_rate@10 per day",
        ):
            page.get_by_text(title, exact=True).wait_for(timeout=TIMEOUT_MS)
        # the time axes carry every logged day: the panels hold data, one point per day
        newest = f"{logged[-1].isoformat()} 00:00:00"
        page.get_by_text(newest, exact=True).first.wait_for(timeout=TIMEOUT_MS)
        body = page.inner_text("body")
        assert body.count(newest) >= 2  # on the drift panels at least
        assert "no value" not in body
        page.screenshot(path=screenshots / "evidently-dashboard.png", full_page=True)
    assert off_machine(page.requested) == []


@pytest.mark.timeout(600)
def test_service_docs_list_every_endpoint(page, tiny_settings, screenshots):
    with running_server(tiny_settings, wait_for="/livez") as url:  # no model needed for the docs
        page.goto(f"{url}/")  # redirects to /docs
        assert page.url == f"{url}/docs"
        for path in ("/recommend", "/similar-items", "/events", "/metadata", "/livez"):
            page.locator(".opblock-summary-path", has_text=path).first.wait_for(timeout=TIMEOUT_MS)
        page.locator(".info .title", has_text="recflow").wait_for(timeout=TIMEOUT_MS)
        page.screenshot(path=screenshots / "bentoml-docs.png", full_page=True)
    assert off_machine(page.requested) == []
    assert any(u.endswith("/static_content/swagger-ui-bundle.js") for u in page.requested)
