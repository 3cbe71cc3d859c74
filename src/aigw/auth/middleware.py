"""The request path every call takes: request id, body limit, credentials, CSRF, rate limit, usage.

A pure ASGI middleware, not BaseHTTPMiddleware: it adds no task or copy per request, and for an
authenticated call on a warm worker it does no database round trip (see auth/principal.py).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigw.auth.principal import CredentialKind, Principal
from aigw.auth.sessions import COOKIE_NAME
from aigw.auth.usage import UsageMeter
from aigw.errors import error_response

if TYPE_CHECKING:
    from aigw.runtime import Runtime

access_log = logging.getLogger("aigw.access")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _credential(headers: dict[bytes, bytes]) -> tuple[CredentialKind, str] | None:
    auth = headers.get(b"authorization")
    if auth is not None:
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return "key", token.strip()
        return "key", ""
    cookie = headers.get(b"cookie")
    if cookie is not None:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie.decode("latin-1"))
        except CookieError:  # a malformed Cookie header is the client's problem: treat as no session
            return None
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None and morsel.value:
            return "session", morsel.value
    return None


def _origin_allowed(headers: dict[bytes, bytes], trusted: list[str]) -> bool:
    origin = headers.get(b"origin")
    if origin is None:
        return True  # not a browser cross-site request; SameSite keeps the cookie off those anyway
    origin_text = origin.decode("latin-1").rstrip("/")
    host = headers.get(b"host", b"").decode("latin-1")
    return origin_text in {f"http://{host}", f"https://{host}", *trusted}


class RouteTemplates:
    """Names the route of a request that was answered before routing (429, 403, 413) from the OpenAPI paths."""

    def __init__(self) -> None:
        self._table: list[tuple[re.Pattern[str], str]] | None = None

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", scope["path"]))
        if self._table is None:
            paths = scope["app"].openapi()["paths"]
            self._table = [(compile_path(path)[0], path) for path in paths]
        for pattern, template in self._table:
            if pattern.match(scope["path"]):
                return template
        return "(unmatched)"


@dataclass
class _Exchange:
    """One request's bookkeeping as it passes through: the headers added to its response, its status, who it is."""

    scope: Scope
    runtime: Runtime
    headers: dict[bytes, bytes]
    started: float = field(default_factory=time.perf_counter)
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    status: int = 500
    principal: Principal | None = None

    def refusal(self, status: int, message: str, code: str) -> Response:
        response = error_response(status, message, code)
        response.raw_headers.extend(self.extra_headers)
        self.status = status
        return response

    def limited(self, receive: Receive, limit: int) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI turns any other exception raised while reading a body into a 400.
                    raise HTTPException(413, f"Request body larger than {limit} bytes")
            return message

        return limited_receive

    def sending(self, send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                message["headers"] = [*message.get("headers", ()), *self.extra_headers]
            await send(message)

        return send_with_headers


class GatewayMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, scope["state"]["runtime"], dict(scope["headers"]))
        request_id = exchange.headers.get(b"x-request-id", b"")[:64] or os.urandom(8).hex().encode()
        state = scope["state"]
        state["request_id"] = request_id.decode("latin-1")
        state["started"] = exchange.started
        exchange.extra_headers.append((b"x-request-id", request_id))
        try:
            refusal = self._oversized(exchange) or await self._admit(exchange)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            limit = exchange.runtime.settings.max_body_bytes
            await self.app(scope, exchange.limited(receive, limit), exchange.sending(send))
        finally:
            self._account(exchange)

    @staticmethod
    def _oversized(exchange: _Exchange) -> Response | None:
        """A refusal for a declared body over the limit (or a Content-Length that is no number)."""
        limit = exchange.runtime.settings.max_body_bytes
        declared = exchange.headers.get(b"content-length")
        if declared is None:
            return None
        if not declared.isdigit():
            return exchange.refusal(400, "Invalid Content-Length", "bad_request")
        if int(declared) > limit:
            return exchange.refusal(413, f"Request body larger than {limit} bytes", "payload_too_large")
        return None

    @staticmethod
    async def _admit(exchange: _Exchange) -> Response | None:
        """Authenticate the credential if any (a bad one is left to the route: public routes ignore it), count the
        call against the rate limit, and refuse a cross-origin write made with a session cookie."""
        state = exchange.scope["state"]
        state["usage"] = UsageMeter()
        credential = _credential(exchange.headers)
        if credential is None:
            state["principal"] = None
            return None
        kind, token = credential
        principal, decision = await exchange.runtime.authenticator.authenticate(kind, token) if token else (None, None)
        state["principal"] = exchange.principal = principal
        state["auth_failed"] = principal is None
        if decision is not None:
            exchange.extra_headers.extend(decision.headers())
            if principal is not None and not decision.allowed:
                exchange.extra_headers.append((b"retry-after", str(decision.retry_after).encode()))
                return exchange.refusal(
                    429,
                    f"Rate limit of {decision.limit} requests per minute exceeded; retry in {decision.retry_after} s",
                    "rate_limited",
                )
        if (
            principal is not None
            and principal.via_session
            and exchange.scope["method"] not in _SAFE_METHODS
            and not _origin_allowed(exchange.headers, exchange.runtime.settings.trusted_origins)
        ):
            return exchange.refusal(403, "Cross-origin request with a session cookie refused", "csrf_origin")
        return None

    def _account(self, exchange: _Exchange) -> None:
        """Record usage for an authenticated call and write the access log line, however the call ended."""
        scope, runtime, principal = exchange.scope, exchange.runtime, exchange.principal
        latency_ms = (time.perf_counter() - exchange.started) * 1000
        endpoint = self.route_template(scope)
        if principal is not None:
            runtime.usage.record(
                user_id=principal.user_id,
                key_id=principal.key_id,
                endpoint=endpoint,
                method=scope["method"],
                status=exchange.status,
                latency_ms=latency_ms,
                meter=scope["state"].get("usage"),
            )
        if runtime.settings.access_log:
            access_log.info(
                "request",
                extra={
                    "request_id": scope["state"]["request_id"],
                    "method": scope["method"],
                    "path": endpoint,
                    "status": exchange.status,
                    "ms": round(latency_ms, 3),
                    "user_id": principal.user_id if principal else None,
                },
            )
