"""`recflow up`'s processes: own process groups, stopped together within 10 s, stale state cleaned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from platform_up import free_port, free_ports, start_up

from flows.lifecycle import HOME_ENV, PortInUse, Supervisor, clean_stale, port_free, state_path

# listens on a port, ignores SIGTERM (only SIGKILL stops it) and forks a grandchild into its group
STUBBORN = """
import signal, socket, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(child.pid, flush=True)
time.sleep(300)
"""


def _wait_held(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while port_free(port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"  # a zombie is dead


def test_stop_reaches_the_whole_group_and_kills_what_ignores_sigterm(tmp_path):
    port = free_port()
    supervisor = Supervisor(tmp_path / "home")
    child = supervisor.start(
        "stubborn",
        [sys.executable, "-c", STUBBORN, str(port)],
        dict(os.environ),
        port,
        stdout=subprocess.PIPE,
    )
    grandchild = int(child.stdout.readline())
    _wait_held(port)
    state = json.loads(state_path(tmp_path / "home").read_text())
    assert state["pid"] == os.getpid() and state["children"]["stubborn"] == {"pgid": child.pid, "port": port}

    started = time.monotonic()
    assert supervisor.stop() == []
    assert time.monotonic() - started < 10.0
    assert port_free(port)
    assert not _alive(child.pid) and not _alive(grandchild)  # the forked worker went with its group
    assert not state_path(tmp_path / "home").exists()


def test_a_crashed_parent_leaves_orphans_that_the_next_start_cleans(tmp_path):
    home, port = tmp_path / "home", free_port()
    parent_code = (
        "import os, sys, time; from pathlib import Path; from flows.lifecycle import Supervisor; "
        f"s = Supervisor(Path({str(home)!r})); "
        f"s.start('stubborn', [sys.executable, '-c', {STUBBORN!r}, '{port}'], dict(os.environ), {port}); "
        "print('up', flush=True); time.sleep(300)"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "up"
    _wait_held(port)
    parent.kill()  # kill -9: no chance to stop its children
    parent.wait()
    orphan = json.loads(state_path(home).read_text())["children"]["stubborn"]["pgid"]
    assert _alive(orphan) and not port_free(port)  # ignores the SIGTERM its parent's death sent

    done = clean_stale(home, [port])

    assert any("stopped 1 process group" in line for line in done), done
    assert port_free(port) and not _alive(orphan)
    assert not state_path(home).exists()
    assert clean_stale(home, [port]) == []  # nothing left to clean


def test_a_port_held_by_someone_else_is_a_clear_error(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != HOME_ENV}
    other = subprocess.Popen(
        [sys.executable, "-c", STUBBORN, str(port)], env=env, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        other.stdout.readline()
        _wait_held(port)
        with pytest.raises(PortInUse, match=rf"port {port} is in use by pid {other.pid}"):
            clean_stale(tmp_path / "home", [port])
        assert _alive(other.pid)  # not ours: left alone
    finally:
        os.killpg(other.pid, signal.SIGKILL)  # its forked sleeper too
        other.wait()


# ---------------------------------------------------------------- `recflow up` itself


def _wait_up(ports: dict[str, int], up: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    import httpx

    urls = [
        f"http://127.0.0.1:{ports['prefect']}/api/health",
        f"http://127.0.0.1:{ports['serving']}/livez",
        f"http://127.0.0.1:{ports['evidently']}/",
    ]
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            assert up.poll() is None, f"recflow up exited {up.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{url} not up:\n{log.read_text()[-3000:]}"
            time.sleep(1.0)


def _wait_started(log: Path, starts: int, up: subprocess.Popen, timeout: float = 120.0) -> None:
    """Wait until the log shows `starts` finished start-ups (`recflow up` prints its URLs last)."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("Prefect UI ") < starts:
        assert up.poll() is None, f"recflow up exited {up.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"start-up {starts} never finished:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def _tagged(home: Path) -> list[int]:
    """Processes whose environment carries this home's `recflow up` tag."""
    import psutil

    tag, out = str(home.resolve()), []
    for p in psutil.process_iter():
        try:
            if p.environ().get(HOME_ENV) == tag and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_frees_the_ports_and_a_restart_after_kill_9_works(tmp_path):
    home, log = tmp_path / "home", tmp_path / "up.log"
    ports = free_ports()

    up = start_up(home, ports, log)
    _wait_up(ports, up, log)
    _wait_started(log, 1, up)
    import httpx

    # a fresh home has no model: the service is live, and says so with a 503 rather than a 500
    assert httpx.get(f"http://127.0.0.1:{ports['serving']}/metadata", timeout=10).status_code == 503
    up.send_signal(signal.SIGTERM)
    started = time.monotonic()
    while not all(port_free(p) for p in ports.values()) and time.monotonic() - started < 10.0:
        time.sleep(0.1)
    assert all(port_free(p) for p in ports.values()), {n: port_free(p) for n, p in ports.items()}
    assert up.wait(timeout=10) == 0
    assert _tagged(home) == []  # not one process of the platform outlived it

    crashed = start_up(home, ports, log)
    _wait_up(ports, crashed, log)
    _wait_started(log, 2, crashed)
    crashed.kill()  # kill -9: its children are orphans now, its state file stale
    crashed.wait()
    assert state_path(home).exists()

    again = start_up(home, ports, log)
    try:
        _wait_up(ports, again, log)
        _wait_started(log, 3, again)
        assert "stale state:" in log.read_text()
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=15) == 0
    assert all(port_free(p) for p in ports.values())
    assert _tagged(home) == []
