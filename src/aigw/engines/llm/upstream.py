"""The HTTP boundary of remote engines: one pooled client per engine, and upstream errors turned into the
engine's typed errors, once, here.

aiohttp, not httpx, on this path: measured by bench/gateway_overhead.py, httpx's pure-Python HTTP/1.1
stack (h11, and a connection pool that checks every pooled connection on each request) was half of the
gateway's CPU per proxied call and grew with concurrency; aiohttp parses with llhttp in C.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson

from aigw.engines.llm.base import EngineRejected
from aigw.errors import EngineUnavailable

_READ_BUFFER = 1 << 20  # an SSE or NDJSON line (a large tool call) may be long


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


@contextlib.contextmanager
def upstream_errors(name: str) -> Iterator[None]:
    """Translate the client's and the wire format's exceptions into the engine's own."""
    try:
        yield
    except TimeoutError as exc:
        raise EngineUnavailable(f"{name}: timed out") from exc
    except aiohttp.ClientError as exc:
        raise EngineUnavailable(f"{name}: {type(exc).__name__}: {exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise EngineUnavailable(f"{name}: malformed stream: {exc}") from exc


class UpstreamClient:
    def __init__(self, name: str, *, headers: dict[str, str], timeout: float) -> None:
        self.name = name
        self._headers = {"Content-Type": "application/json", **headers}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0), sock_read=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the event loop that will use it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=connector,
                read_bufsize=_READ_BUFFER,
                auto_decompress=True,
            )
        return self._session

    @contextlib.asynccontextmanager
    async def post_lines(self, url: str, body: bytes) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST `body` and yield the response's lines (without line endings); 4xx/5xx raise typed errors."""
        with upstream_errors(self.name):
            async with self._client().post(url, data=body) as response:
                if response.status >= 400:
                    await self._raise_for_status(response)
                yield _lines(response)

    async def post_json(self, url: str, body: bytes) -> Any:
        """POST `body` and return the parsed JSON response; 4xx/5xx raise typed errors."""
        return orjson.loads(await self.post_bytes(url, body))

    async def post_form(self, url: str, form: aiohttp.FormData) -> Any:
        """POST a multipart form and return the parsed JSON response; 4xx/5xx raise typed errors."""
        return orjson.loads(await self.post_bytes(url, form))

    async def post_bytes(self, url: str, body: bytes | aiohttp.FormData) -> bytes:
        """POST a JSON body or a multipart form and return the response's bytes (audio, say)."""
        headers = None
        data: Any = body
        if isinstance(body, aiohttp.FormData):
            data = body()
            headers = {"Content-Type": data.content_type}
        with upstream_errors(self.name):
            async with self._client().post(url, data=data, headers=headers) as response:
                if response.status >= 400:
                    await self._raise_for_status(response)
                return await response.read()

    async def ok(self, url: str, timeout: float) -> bool:
        try:
            async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _raise_for_status(self, response: aiohttp.ClientResponse) -> None:
        raw = await response.read()
        try:
            message = error_text(orjson.loads(raw))
        except orjson.JSONDecodeError:
            message = ""
        text = message or raw.decode(errors="replace") or (response.reason or "")
        message = f"{self.name}: HTTP {response.status}: {text[:500]}"
        if response.status >= 500:
            raise EngineUnavailable(message)
        raise EngineRejected(message)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for line in response.content:
        yield line.rstrip(b"\r\n")
