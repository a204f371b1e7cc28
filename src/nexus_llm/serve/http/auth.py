"""Bearer API keys: checked in constant time, before the body is read, and never logged.

Keys come from ``--api-key`` (repeatable) and ``NEXUS_API_KEYS`` (comma-separated). Only their SHA-256
digests are kept; a presented key is hashed and compared with every digest using
``hmac.compare_digest``, so neither the comparison nor the number of keys checked leaks how much of a
key was right. The check is ASGI middleware so that a request without a valid key is refused before
its body is parsed (an unauthenticated client cannot probe validation).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable

from nexus_llm.serve.http.errors import APIError

ENV_VAR = "NEXUS_API_KEYS"


def keys_from(flags: Iterable[str] = (), env: str | None = None) -> list[str]:
    """Keys from the command line plus ``NEXUS_API_KEYS`` (blank entries dropped)."""
    raw = os.environ.get(ENV_VAR, "") if env is None else env
    keys = [k.strip() for k in [*flags, *raw.split(",")]]
    return [k for k in keys if k]


class APIKeys:
    """The accepted keys, as digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __repr__(self) -> str:  # never print keys, not even their digests
        return f"APIKeys({len(self._digests)} key(s))"

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the keys."""
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = hashlib.sha256(token.strip().encode()).digest()
        ok = False
        for digest in self._digests:  # no early exit
            ok |= hmac.compare_digest(presented, digest)
        return ok


class APIKeyMiddleware:
    """Refuse requests without a valid key (401), except on ``open_paths`` and under ``open_prefixes``
    (the playground's static files: the page itself asks for the key and sends it with its API calls)."""

    def __init__(
        self, app, keys: APIKeys, open_paths: frozenset[str], open_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def _open(self, path: str) -> bool:
        return path in self.open_paths or (bool(self.open_prefixes) and path.startswith(self.open_prefixes))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.keys or self._open(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if self.keys.accepts(header.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        error = APIError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await error.response()(scope, receive, send)
