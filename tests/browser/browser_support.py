"""Helpers of the browser tests: run a UI server in the background, tell local requests from others.

(Not in conftest.py, and this folder is a package: a `conftest` module of its own would shadow
the one `tests/infra` imports with `from conftest import ...`.)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


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
