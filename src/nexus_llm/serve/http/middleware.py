"""Pure-ASGI middleware: per-request observation, and body limits checked before any parsing.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) so that streamed responses pass through untouched
and a client disconnect still reaches the endpoint's ``receive``.
"""

from __future__ import annotations

from nexus_llm.serve.http.errors import TYPES, APIError
from nexus_llm.serve.http.metrics import RequestRecord, ServeMetrics

API_PATHS = frozenset({"/generate", "/v1/completions", "/v1/chat/completions", "/v1/models"})
KNOWN_PATHS = API_PATHS | {"/health", "/metrics", "/tokenize", "/detokenize", "/tokenizer_info", "/"}


class ObserveMiddleware:
    """Count every request and time it to its last byte; API requests also get an EMF line."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        rec = RequestRecord(endpoint=path if path in KNOWN_PATHS else "other")
        scope.setdefault("state", {})["record"] = rec
        done = False

        async def observed_send(message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                rec.status = message["status"]
                if rec.status >= 400 and rec.error_type is None:
                    rec.error_type = TYPES.get(rec.status, "error")
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done = True
                self._finish(rec)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            rec.status, rec.error_type = 500, "internal_error"  # answered by the outer error middleware
            raise
        finally:
            self.metrics.in_flight.dec()
            if not done:  # the client left mid-response (or the app failed before answering)
                if rec.error_type is None:
                    rec.error_type = "client_disconnected"
                self._finish(rec)

    def _finish(self, rec: RequestRecord) -> None:
        self.metrics.observe(rec, emf=rec.endpoint in API_PATHS)


class BodyMiddleware:
    """Refuse oversized (413) and non-JSON (415) POST bodies before they are parsed.

    The body is read here, bounded, and replayed to the app; later ``receive`` calls go to the server,
    so the endpoint still sees ``http.disconnect``.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        error = self._check_headers(headers)
        if error is None:
            body, error = await self._read(receive)
        if error is not None:
            await error.response()(scope, receive, send)
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _check_headers(self, headers: dict[bytes, bytes]) -> APIError | None:
        ctype = headers.get(b"content-type", b"application/json").decode("latin-1").lower()
        if "json" not in ctype:
            return APIError(415, f"send a JSON body with 'Content-Type: application/json' (got {ctype!r})")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return APIError(400, "invalid Content-Length header")
            if n > self.max_bytes:
                return self._too_large(n)
        return None

    async def _read(self, receive) -> tuple[bytes, APIError | None]:
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", APIError(400, "the client disconnected while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", self._too_large(size)
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), None

    def _too_large(self, size: int) -> APIError:
        return APIError(
            413, f"the body has {size}+ bytes; the limit is {self.max_bytes}", code="body_too_large"
        )
