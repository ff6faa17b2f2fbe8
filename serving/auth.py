"""Who may do what: API keys with roles, checked in front of every route of the service.

A key holds one or more roles (`serving.api_keys`, key -> "read", "write", "admin" or a comma-separated
list; the older single `serving.api_key` holds read and write). An admin key may do everything.

| role  | routes                                                   |
|-------|----------------------------------------------------------|
| read  | `POST /recommend`, `POST /similar-items`, `GET /metadata` |
| write | `POST /events`                                           |
| admin | `DELETE /users/{id}`, `/experiment` (every method)       |

Health, metrics and the API docs stay open. With no key configured, read and write routes are open (a
laptop's `recflow serve` works as before) and admin routes refuse every request until an admin key is
configured. With keys configured, a request without a known key gets 401 and a known key without the
route's role gets 403; neither gets data. Keys are compared as SHA-256 digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.responses import JSONResponse

from recflow.settings import ROLES, Settings

OPEN_PATHS = ("/", "/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json")
ASSETS = "/static_content/"
"""Swagger UI's files, served by BentoML itself from the copy in its wheel (no CDN): `/docs` loads them."""

ANY = "any"
"""The role of a route not in the table: any known key (when keys are configured)."""


def required_role(method: str, path: str) -> str | None:
    """The role a request needs: None for open routes, `ANY` for routes that only need a known key."""
    if path in OPEN_PATHS or path.startswith(ASSETS):
        return None
    if path in ("/recommend", "/similar-items", "/metadata"):
        return "read"
    if path == "/events":
        return "write"
    if path.startswith("/users/") or path == "/experiment" or path.startswith("/experiment/"):
        return "admin"
    return ANY


@dataclass(frozen=True)
class KeyRing:
    """The configured keys, as SHA-256 digests with their roles."""

    digests: tuple[tuple[bytes, frozenset[str]], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        keys: dict[str, frozenset[str]] = {}
        if settings.serving.api_key is not None:
            keys[settings.serving.api_key.get_secret_value()] = frozenset({"read", "write"})
        for key, roles in settings.serving.api_keys.items():
            named = frozenset(r.strip() for r in roles.split(","))
            keys[key] = keys.get(key, frozenset()) | (frozenset(ROLES) if "admin" in named else named)
        return cls(tuple((_digest(k), roles) for k, roles in keys.items() if k))

    @property
    def configured(self) -> bool:
        return bool(self.digests)

    @property
    def has_admin(self) -> bool:
        return any("admin" in roles for _, roles in self.digests)

    def roles(self, key: str | None) -> frozenset[str] | None:
        """The roles of `key`, None when it is missing or unknown (every digest compared, no early exit)."""
        if not key:
            return None
        presented = _digest(key)
        found: frozenset[str] | None = None
        for digest, roles in self.digests:
            if hmac.compare_digest(digest, presented):
                found = roles
        return found


def decide(ring: KeyRing, method: str, path: str, authorization: str | None) -> tuple[int, str] | None:
    """None when the request may go on, else the status (401 or 403) and the message to answer with."""
    role = required_role(method, path)
    if role is None:
        return None
    if role == "admin" and not ring.has_admin:
        return 403, (
            "Admin routes are closed until an admin key is configured: set RECFLOW_SERVING__API_KEYS, "
            'e.g. \'{"<key>": "admin"}\'.'
        )
    if not ring.configured:
        return None
    key = authorization.removeprefix("Bearer ").strip() if authorization else None
    roles = ring.roles(key if authorization and authorization.startswith("Bearer ") else None)
    if roles is None:
        return 401, "Missing or wrong API key: send the header 'Authorization: Bearer <key>'."
    if role != ANY and role not in roles:
        return 403, f"This API key lacks the {role!r} role that {method} {path} needs."
    return None


class ApiKeyMiddleware:
    """ASGI middleware that applies `decide` to every HTTP request before the service sees it."""

    def __init__(self, app, settings: Settings | None = None) -> None:
        from serving.server import settings_from_env

        self.app = app
        self.ring = KeyRing.from_settings(settings or settings_from_env())

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization")
        refused = decide(
            self.ring,
            scope.get("method", "GET"),
            scope.get("path", ""),
            authorization.decode("latin-1") if authorization else None,
        )
        if refused is not None:
            status, message = refused
            challenge = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await JSONResponse({"error": message}, status_code=status, headers=challenge)(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
