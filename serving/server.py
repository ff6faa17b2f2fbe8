"""Start the BentoML HTTP server: in the foreground for a person (`recflow serve`), or as a child process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from recflow.settings import Settings, load_settings
from serving.package import REPO_ROOT, SERVICE

SETTINGS_ENV = "RECFLOW_SETTINGS_JSON"


def settings_to_env(settings: Settings) -> str:
    """The settings as JSON for `RECFLOW_SETTINGS_JSON` (secrets in clear: the env is the process's own)."""
    data = settings.model_dump(mode="json")
    data["home"] = str(settings.home.resolve())
    data["serving"]["api_key"] = (
        settings.serving.api_key.get_secret_value() if settings.serving.api_key else None
    )
    data["serving"]["api_keys"] = dict(settings.serving.api_keys)
    if settings.experiments.database_url is not None:
        data["experiments"]["database_url"] = settings.experiments.database_url.get_secret_value()
    if settings.features.redis_password is not None:
        data["features"]["redis_password"] = settings.features.redis_password.get_secret_value()
    return json.dumps(data)


def settings_from_env() -> Settings:
    """The settings the server was started with, or `load_settings()` from `RECFLOW_*` variables."""
    raw = os.environ.get(SETTINGS_ENV)
    return Settings.model_validate_json(raw) if raw else load_settings()


def server_env(settings: Settings) -> dict[str, str]:
    """The environment the service process needs: the settings, BentoML's home, library switches."""
    env = dict(os.environ)
    env.update(
        {
            SETTINGS_ENV: settings_to_env(settings),
            "BENTOML_HOME": str(settings.bentoml_home.resolve()),
            "BENTOML_DO_NOT_TRACK": "True",
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "RECFLOW_SERVING__WORKERS": str(settings.serving.workers),
            "RECFLOW_SERVING__ACCESS_LOG": str(settings.serving.access_log).lower(),
            # one request's graphs are tiny: thread hand-offs inside TF cost more than they save
            "TF_NUM_INTRAOP_THREADS": env.get("TF_NUM_INTRAOP_THREADS", "1"),
            "TF_NUM_INTEROP_THREADS": env.get("TF_NUM_INTEROP_THREADS", "1"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        }
    )
    return env


def serve_command(settings: Settings, port: int | None = None) -> list[str]:
    """`bentoml serve` for the recflow service on the configured host and port."""
    return [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        settings.serving.host,
        "--port",
        str(port or settings.serving.port),
        "--working-dir",
        str(REPO_ROOT),
    ]


def serve(settings: Settings) -> None:
    """Serve the champion model on `settings.serving.host:port` until interrupted (`recflow serve`)."""
    from serving.package import champion_tag, latest_tag, promote

    if champion_tag(settings) is None:
        tag = latest_tag(settings)
        if tag is None:
            raise SystemExit(f"No packaged model in {settings.bentoml_home}: run `recflow run` first.")
        print(f"No champion promoted yet: promoting the newest packaged model {tag}.")
        promote(settings, tag)
    url = f"http://{settings.serving.host}:{settings.serving.port}"
    print(f"Serving on {url}  (POST /recommend, /similar-items, /events; GET /metadata, /livez, /metrics)")
    os.execve(sys.executable, serve_command(settings), server_env(settings))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    settings: Settings, port: int | None = None, timeout: float = 120.0, wait_for: str = "/readyz"
) -> Iterator[str]:
    """Run the service in a child process until the block ends; yields its base URL once it is ready.

    `wait_for` is the path that must answer 200 first: "/readyz" needs a promoted model, "/livez" not.

    Raises:
        RuntimeError: if the server exits or is not ready within `timeout` seconds (its output is quoted).
    """
    port = port or free_port(settings.serving.host)
    url = f"http://{settings.serving.host}:{port}"
    log_path = settings.home / "serving" / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            serve_command(settings, port),
            env=server_env(settings),
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(f"{url}{wait_for}", proc, timeout, log_path)
            yield url
        finally:
            _stop(proc)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float, log_path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"Server at {url} not ready after {timeout:.0f}s:\n{log_path.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (the arbiter and its workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
