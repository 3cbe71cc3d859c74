"""The request path every call takes: request id, body limit, credentials, CSRF, rate limit, usage.

A pure ASGI middleware, not BaseHTTPMiddleware: it adds no task or copy per request, and for an
authenticated call on a warm worker it does no database round trip (see auth/principal.py).
"""

from __future__ import annotations

import logging
import os
import re
import time
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
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
        except Exception:  # a malformed Cookie header is the client's problem: treat as no session
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


class GatewayMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        runtime: Runtime = scope["state"]["runtime"]
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"")[:64] or os.urandom(8).hex().encode()
        state = scope["state"]
        state["request_id"] = request_id.decode("latin-1")
        state["started"] = started
        extra_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id)]
        status = 500
        principal: Principal | None = None

        async def reply(response: Any) -> None:
            nonlocal status
            status = response.status_code
            response.raw_headers.extend(extra_headers)
            await response(scope, receive, send)

        try:
            limit = runtime.settings.max_body_bytes
            declared = headers.get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                code = 413 if declared.isdigit() else 400
                await reply(
                    error_response(
                        code,
                        f"Request body larger than {limit} bytes" if code == 413 else "Invalid Content-Length",
                        "payload_too_large" if code == 413 else "bad_request",
                    )
                )
                return
            credential = _credential(headers)
            if credential is not None:
                kind, token = credential
                principal, decision = await runtime.authenticator.authenticate(kind, token) if token else (None, None)
                if decision is not None:
                    extra_headers.extend(decision.headers())
                    if principal is not None and not decision.allowed:
                        extra_headers.append((b"retry-after", str(decision.retry_after).encode()))
                        await reply(
                            error_response(
                                429,
                                f"Rate limit of {decision.limit} requests per minute exceeded; "
                                f"retry in {decision.retry_after} s",
                                "rate_limited",
                            )
                        )
                        return
                if (
                    principal is not None
                    and principal.via_session
                    and scope["method"] not in _SAFE_METHODS
                    and not _origin_allowed(headers, runtime.settings.trusted_origins)
                ):
                    await reply(
                        error_response(403, "Cross-origin request with a session cookie refused", "csrf_origin")
                    )
                    return
                state["auth_failed"] = principal is None
            state["principal"] = principal
            state["usage"] = UsageMeter()

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

            async def send_with_headers(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), *extra_headers]
                await send(message)

            await self.app(scope, limited_receive, send_with_headers)
        finally:
            latency_ms = (time.perf_counter() - started) * 1000
            endpoint = self.route_template(scope)
            if principal is not None:
                runtime.usage.record(
                    user_id=principal.user_id,
                    key_id=principal.key_id,
                    endpoint=endpoint,
                    method=scope["method"],
                    status=status,
                    latency_ms=latency_ms,
                    meter=state.get("usage"),
                )
            if runtime.settings.access_log:
                access_log.info(
                    "request",
                    extra={
                        "request_id": state["request_id"],
                        "method": scope["method"],
                        "path": endpoint,
                        "status": status,
                        "ms": round(latency_ms, 3),
                        "user_id": principal.user_id if principal else None,
                    },
                )
