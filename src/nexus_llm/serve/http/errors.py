"""OpenAI-style error bodies, and the handlers that give every failure one.

Every error leaves the server as ``{"error": {"message", "type", "param", "code"}}`` with the status
that says whose fault it was: 4xx for the client (naming the offending field in ``param``), 429/503
with ``Retry-After`` for capacity, and 500 only for a bug of ours (with no internals in the message).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("nexus_llm.serve")

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error to send as an OpenAI-style body (raise it anywhere below the routers)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "internal_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


_UNION_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "tagged-union"}


def param_name(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """pydantic's error location as a field path: ``("body", "messages", 0, "content")`` → ``messages[0].content``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" not in str(part) and str(part) not in _UNION_TAGS:  # skip pydantic's union-member tags
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(err: RequestValidationError) -> APIError:
    """The first problem of a body that failed validation, as a 400 naming the field."""
    errors = err.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return APIError(
            400, f"the body is not valid JSON: {ctx.get('error', 'decode error')}", code="invalid_json"
        )
    param = param_name(first.get("loc", ()))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing" and param is None:
        return APIError(400, "the request needs a JSON body", code="missing_body")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = f"{param}: " if param else ""
    return APIError(400, f"{where}{msg}{more}", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if status == 404:
            message = (
                "no such endpoint: see /v1/models, /v1/completions, /v1/chat/completions, /generate, "
                "/tokenize, /detokenize"
            )
        elif status == 400 and "parsing the body" in message:
            message = "the body could not be read as JSON text (is it valid UTF-8?)"
        return APIError(status, message, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return APIError(500, "internal server error", code="internal_error").response()
