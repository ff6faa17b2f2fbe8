"""Erasure in the running service: `DELETE /users/{id}`'s answer, the in-memory forgetting, a log that keeps no id."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from pydantic import BaseModel, Field

USER_PATH = re.compile(r"/users/[^,)\s]+")


class ErasureResponse(BaseModel):
    """What `DELETE /users/{id}` removed; the id itself is not repeated (the audit log holds its salted hash)."""

    user_hash: str = Field(description="salted SHA-256 of the id, as the audit log records it")
    removed: int = Field(description="rows, lines, redactions and online-store keys removed in all")
    files: dict[str, int] = Field(description="per file under the home (relative path): what was removed")
    redis_keys: int = Field(description="online-store keys deleted in Redis (0 on SQLite)")
    unhandled: list[str] = Field(description="files that still contain the id (none expected)")


class RedactUserPaths(logging.Filter):
    """Keeps erased ids out of BentoML's access log: `/users/<id>` is logged as `/users/[erased]`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("/users/" in str(a) for a in record.args):
            record.args = tuple(
                USER_PATH.sub("/users/[erased]", a) if isinstance(a, str) else a for a in record.args
            )
        elif "/users/" in str(record.msg):
            record.msg = USER_PATH.sub("/users/[erased]", str(record.msg))
        return True


def install_log_filter() -> None:
    """Redact user paths in the access log and uvicorn's own request log (call once per worker)."""
    for name in ("bentoml.access", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUserPaths) for f in logger.filters):
            logger.addFilter(RedactUserPaths())


def metrics_dir() -> Path:
    """Where BentoML's workers keep their Prometheus multiprocess files (set by BentoML in the worker)."""
    return Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"))
