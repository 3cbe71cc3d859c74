"""Typed errors and the one place that turns them into HTTP responses.

AigwError                     status  code
├── BadRequest                  400   bad_request / malformed_json
├── Unauthorized                401   unauthorized
├── Forbidden                   403   forbidden
├── NotFound                    404   not_found
├── Conflict                    409   conflict
├── PayloadTooLarge             413   payload_too_large
├── UnsupportedMediaType        415   unsupported_media_type
├── InvalidField                422   invalid
├── RateLimited                 429   rate_limited      (+ Retry-After, X-RateLimit-*)
└── EngineUnavailable           503   engine_unavailable (+ Retry-After)
    └── EngineBusy              503   engine_busy
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

log = logging.getLogger("aigw.errors")


class AigwError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class BadRequest(AigwError):
    status = 400
    code = "bad_request"


class Unauthorized(AigwError):
    status = 401
    code = "unauthorized"


class Forbidden(AigwError):
    status = 403
    code = "forbidden"


class NotFound(AigwError):
    status = 404
    code = "not_found"


class Conflict(AigwError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AigwError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AigwError):
    status = 415
    code = "unsupported_media_type"


class InvalidField(AigwError):
    status = 422
    code = "invalid"


class RateLimited(AigwError):
    status = 429
    code = "rate_limited"


class EngineUnavailable(AigwError):
    status = 503
    code = "engine_unavailable"


class EngineBusy(EngineUnavailable):
    code = "engine_busy"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, message: str, code: str, headers: Mapping[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": message, "code": code})
    return Response(body, status_code=status, headers=dict(headers or {}), media_type="application/json")


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    """Malformed JSON is a 400; a well-formed body with a wrong field is a 422 naming the field."""
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            return 400, "Malformed JSON body", "malformed_json"
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return 422, "; ".join(parts) or "Invalid request", "invalid"


def install_error_handlers(app: FastAPI) -> None:
    async def on_aigw(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, AigwError)
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        status, message, code = describe_validation(exc)
        return error_response(status, message, code)

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, str(exc.detail), code, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return error_response(500, "Internal server error", "internal")

    app.add_exception_handler(AigwError, on_aigw)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
