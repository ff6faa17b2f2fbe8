"""The processes `recflow up` starts: each in its own process group, recorded, stopped together.

Every child (Prefect server, BentoML service, Evidently UI, the deployment runner) starts as the leader
of a new session, so a signal to its group reaches the workers it forks too (uvicorn, BentoML's
workers, the runner's flow-run subprocesses). Each carries `RECFLOW_UP_HOME=<home>` in its environment,
which its descendants inherit: that is how a later `recflow up` recognises processes of its own.

* `Supervisor.stop` sends SIGTERM to every group at once, and SIGKILL to what is left after a grace
  period: the whole platform is gone within `STOP_SECONDS`.
* The state file (`<home>/run/up.json`) lists the parent and the groups while they run. After a crash
  (kill -9 of `recflow up`) `clean_stale` finds it, stops the groups that outlived their parent, and
  frees the ports held by processes of the same home; a port held by anything else is a clear error.
* Children ask the kernel for SIGTERM when `recflow up` dies (`PR_SET_PDEATHSIG`), so orphans are
  rare to begin with.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HOME_ENV = "RECFLOW_UP_HOME"
STOP_SECONDS = 10.0
GRACE_SECONDS = 6.0  # SIGTERM first; SIGKILL for what is left after this


def state_path(home: Path) -> Path:
    """Where `recflow up` records its processes: `<home>/run/up.json`."""
    return Path(home).resolve() / "run" / "up.json"


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `host:port` (a bind would succeed)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, dead but not yet reaped, do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    import psutil

    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, OSError):
            continue
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(pgids: list[int], grace: float = GRACE_SECONDS, limit: float = STOP_SECONDS) -> list[int]:
    """SIGTERM every group, SIGKILL what is left after `grace` seconds; returns groups still alive at `limit`."""
    for pgid in pgids:
        _signal_group(pgid, signal.SIGTERM)
    start = time.monotonic()
    killed = False
    while True:
        alive = [g for g in pgids if _group_alive(g)]
        elapsed = time.monotonic() - start
        if not alive or elapsed >= limit:
            return alive
        if elapsed >= grace and not killed:
            for pgid in alive:
                _signal_group(pgid, signal.SIGKILL)
            killed = True
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux `PR_SET_PDEATHSIG`)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not Linux: the state file still catches orphans
        pass


@dataclass
class Supervisor:
    """Starts the platform's processes in their own groups and stops them all together.

    Attributes:
        home: the platform home (the state file lives under it; children are tagged with it).
        children: name -> the running `Popen` (its pid is its process group id).
    """

    home: Path
    children: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str], port: int | None = None, **kwargs):
        """Start `command` as the leader of a new process group and record it."""
        env = {**env, HOME_ENV: str(Path(self.home).resolve())}
        process = subprocess.Popen(
            command, env=env, start_new_session=True, preexec_fn=_die_with_parent, **kwargs
        )
        self.children[name] = process
        if port is not None:
            self.ports[name] = port
        self._write()
        return process

    def exited(self) -> dict[str, int]:
        """The children that have exited, with their exit codes."""
        return {n: p.returncode for n, p in self.children.items() if p.poll() is not None}

    def stop(self) -> list[str]:
        """Stop every group (SIGTERM, then SIGKILL after the grace period); returns names still alive."""
        by_group = {p.pid: n for n, p in self.children.items()}
        alive = stop_groups(list(reversed(list(by_group))))
        for process in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.5)
        if not alive:
            state_path(self.home).unlink(missing_ok=True)
        return [by_group[g] for g in alive]

    def _write(self) -> None:
        path = state_path(self.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "children": {n: {"pgid": p.pid, "port": self.ports.get(n)} for n, p in self.children.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)


def _ours(pid: int, home: str) -> bool:
    """Whether process `pid` was started by a `recflow up` of `home` (its environment carries the tag)."""
    import psutil

    try:
        return psutil.Process(pid).environ().get(HOME_ENV) == home
    except (psutil.Error, OSError):
        return False


def _listeners(port: int) -> list[int]:
    """Pids listening on TCP `port` (any address)."""
    import psutil

    pids = set()
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                pids.add(conn.pid)
    return sorted(pids)


class PortInUse(RuntimeError):
    """A port `recflow up` needs is held by a process that is not one of its own."""


def clean_stale(home: Path, ports: list[int]) -> list[str]:
    """Detect and clean what a crashed `recflow up` of `home` left behind; returns what was done.

    Raises:
        RuntimeError: if a `recflow up` of the same home is still running.
        PortInUse: if a port is held by a process that is not ours (named in the message).
    """
    import psutil

    home_tag = str(Path(home).resolve())
    done: list[str] = []
    path = state_path(home)
    if path.exists():
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            state = {}
        parent = state.get("pid")
        if (
            parent
            and parent != os.getpid()
            and psutil.pid_exists(parent)
            and _ours_or_parent(parent, home_tag)
        ):
            raise RuntimeError(
                f"recflow up is already running for {home_tag} (pid {parent}): stop it first "
                f"(kill -TERM {parent}), or use another --home"
            )
        groups = [c["pgid"] for c in state.get("children", {}).values() if _group_alive(c["pgid"])]
        if groups:
            left = stop_groups(groups)
            done.append(f"stopped {len(groups) - len(left)} process group(s) left by a crashed recflow up")
        path.unlink(missing_ok=True)
        done.append(f"removed stale state file {path}")
    for port in ports:
        if port_free(port):
            continue
        holders = _listeners(port)
        mine = [p for p in holders if _ours(p, home_tag)]
        others = [p for p in holders if p not in mine]
        if others or not holders:
            who = ", ".join(_describe(p) for p in others) or "a process this user cannot see"
            raise PortInUse(
                f"port {port} is in use by {who}: stop it or choose another port "
                "(--prefect-port, --serving-port, --evidently-port)"
            )
        left = stop_groups(sorted({os.getpgid(p) for p in mine if psutil.pid_exists(p)}))
        if left or not _wait_free(port):
            raise PortInUse(f"port {port} is still held by an orphan of an earlier recflow up: {mine}")
        done.append(
            f"freed port {port} from an orphan of an earlier recflow up (pid {', '.join(map(str, mine))})"
        )
    return done


def _ours_or_parent(pid: int, home_tag: str) -> bool:
    """A live `recflow up` parent: its command line runs recflow's `up` (it carries no tag itself)."""
    import psutil

    try:
        cmd = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    return "up" in cmd and any("recflow" in part for part in cmd)


def _describe(pid: int) -> str:
    import psutil

    try:
        return f"pid {pid} ({' '.join(psutil.Process(pid).cmdline())[:80]})"
    except (psutil.Error, OSError):
        return f"pid {pid}"


def _wait_free(port: int, timeout: float = STOP_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_free(port):
            return True
        time.sleep(0.2)
    return False


class Stop(Exception):
    """Raised in the main thread by SIGTERM (and SIGINT): unwind and stop the platform."""


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGINT into `Stop` in the main thread for the duration of the block."""

    def handler(signum, _frame):
        raise Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
