"""The load of `recflow bench serving`, for Locust: POST /recommend about once a second per simulated user.

The users to ask for come from the JSON list in `RECFLOW_BENCH_USERS` (known users with a share of
never-seen ones, as `benchmarks.serving.request_users` picks them); `RECFLOW_BENCH_HEADERS` holds extra
headers (the API key). Locust's user count is the request rate.
"""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

from geventhttpclient.connectionpool import ConnectionPool
from locust import FastHttpUser, between, task

_create_tcp_socket = ConnectionPool._create_tcp_socket


def _without_nagle(self, family: int, socktype: int, protocol: int):
    """geventhttpclient's sockets with TCP_NODELAY, as production HTTP clients and proxies set it.

    The client writes a request's headers and body in two sends; with Nagle's algorithm on, the body
    can wait for the server's delayed ACK of the headers (40 ms or more on Linux) on a connection that
    idled between requests, which is every simulated shopper's: a raw client with 100 such
    connections measured p50 46.7 ms with Nagle and 4.6 ms without against the same service.
    """
    sock = _create_tcp_socket(self, family, socktype, protocol)
    if family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


ConnectionPool._create_tcp_socket = _without_nagle  # type: ignore[method-assign]

USERS: list[str] = json.loads(Path(os.environ["RECFLOW_BENCH_USERS"]).read_text())
HEADERS: dict[str, str] = json.loads(os.environ.get("RECFLOW_BENCH_HEADERS", "{}"))


class Shopper(FastHttpUser):
    """A shopper who opens a page with recommendations about once a second."""

    # a random think time, 1 s on average: the shoppers' requests arrive spread out as real traffic
    # does; a fixed 1 s pace keeps the shoppers in step, and every second starts with a burst of
    # `rate` requests at once (measured: p50 ~170 ms at 100 req/s with hey or Locust in step, 5 ms spread)
    wait_time = between(0.0, 2.0)

    @task
    def recommend(self) -> None:
        self.client.post("/recommend", json={"user_id": random.choice(USERS), "k": 10}, headers=HEADERS)
