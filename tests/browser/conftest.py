"""Headless Debian Chromium driven by Playwright, and the helpers to run a UI server for it.

Chromium is Debian's (`/usr/bin/chromium`, installed by `.ci/browser`), never a browser Playwright
downloads. `pytest tests/browser --screenshots docs/screenshots` writes the README's screenshots.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def screenshots(request, tmp_path_factory) -> Path:
    """Where the screenshots go."""
    chosen = request.config.getoption("--screenshots", default=None)  # declared in tests/conftest.py
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile (`--user-data-dir`), no background traffic.

    Module-scoped, never session-scoped: Playwright's sync API keeps an asyncio loop running in
    this thread while it is open, and every later test would then look "async" to Prefect and
    BentoML (their sync calls return coroutines).
    """
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run `bash .ci/browser` (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    """A new tab that records every URL it requests (to show nothing comes from off this machine)."""
    tab = browser.new_page()
    tab.requested = []
    tab.on("request", lambda r: tab.requested.append(r.url))
    yield tab
    tab.close()
