"""Headless Debian Chromium driven by Playwright, and the helpers to run a UI server for it.

Chromium is Debian's (`/usr/bin/chromium`, installed by `.ci/browser`), never a browser Playwright
downloads. `pytest tests/browser --screenshots docs/screenshots` writes the README's screenshots.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

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
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--screenshots",
        default=None,
        help="folder to save the UI screenshots in (e.g. docs/screenshots); a temporary one by default",
    )


@pytest.fixture(scope="session")
def screenshots(request, tmp_path_factory) -> Path:
    """Where the screenshots go."""
    chosen = request.config.getoption("--screenshots")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile (`--user-data-dir`), no background traffic."""
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


def off_machine(urls: list[str]) -> list[str]:
    """The URLs that would leave this machine (not loopback, not data:/blob:)."""
    return [
        u
        for u in urls
        if urlparse(u).scheme in ("http", "https", "ws", "wss") and urlparse(u).hostname not in LOCAL_HOSTS
    ]


@contextmanager
def background(
    command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Run `command` in its own process group until the block ends, output to `log`."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(timeout=10)
