"""Starting `recflow up` from a test, as a user would: its own process, free ports, a log file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports() -> dict[str, int]:
    """One free port for each process `recflow up` starts: `prefect`, `serving`, `evidently`."""
    return {name: free_port() for name in ("prefect", "serving", "evidently")}


def start_up(
    home: Path, ports: dict[str, int], log: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`python -m recflow.cli up --profile tiny --home HOME --<name>-port=PORT ... OPTIONS`, its output
    appended to `log` unbuffered (what it printed is in the log as it prints it, even after a kill -9).

    `env` adds variables; the service's access log is off and no outer `PREFECT_API_URL` leaks in.
    """
    environment = os.environ | {"RECFLOW_SERVING__ACCESS_LOG": "false", "PYTHONUNBUFFERED": "1"} | (env or {})
    environment.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "recflow.cli", "up", "--profile", "tiny", "--home", str(home)]
    command += [f"--{name}-port={port}" for name, port in ports.items()]
    command += list(options)
    return subprocess.Popen(command, env=environment, stdout=log.open("a"), stderr=subprocess.STDOUT)
