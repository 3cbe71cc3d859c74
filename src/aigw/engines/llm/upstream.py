"""The HTTP boundary of remote engines: upstream errors become the engine's typed errors, once, here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from aigw.engines.llm.base import EngineRejected
from aigw.errors import EngineUnavailable


def error_text(body: Any) -> str:
    """The message in `{"error": {"message": ...}}`, `{"error": "..."}`, `{"message": ...}` or `{"detail": ...}`."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    message = error or body.get("message") or body.get("detail")
    if message is None:
        return ""
    return message if isinstance(message, str) else orjson.dumps(message).decode()


async def raise_for_status(name: str, response: httpx.Response) -> None:
    await response.aread()
    try:
        message = error_text(orjson.loads(response.content))
    except orjson.JSONDecodeError:
        message = ""
    message = f"{name}: HTTP {response.status_code}: {(message or response.text or response.reason_phrase)[:500]}"
    if response.status_code >= 500:
        raise EngineUnavailable(message)
    raise EngineRejected(message)


@contextlib.contextmanager
def upstream_errors(name: str) -> Iterator[None]:
    """Translate httpx's and the wire format's exceptions into the engine's own."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise EngineUnavailable(f"{name}: timed out ({type(exc).__name__})") from exc
    except httpx.RequestError as exc:
        raise EngineUnavailable(f"{name}: {type(exc).__name__}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise EngineUnavailable(f"{name}: malformed stream: {exc}") from exc
