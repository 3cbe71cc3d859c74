"""A test double of an Ollama server, and the thread that serves such doubles on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp


class ServerThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a daemon thread; start() and stop() are synchronous,
    and a stopped server starts again on the same port (to test a backend that goes away and comes back)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.port = 0
        self._prepare()
        self.url = f"http://127.0.0.1:{self.port}"

    def _prepare(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, interface="asgi3", lifespan="off", ws="none", log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> None:
        if self._server.should_exit:
            self._prepare()
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return
            if not self._thread.is_alive():
                break
            time.sleep(0.01)
        raise RuntimeError("the test server did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


@dataclass
class _Stream:
    lines: list[dict[str, Any]]
    delay: float = 0.0


@dataclass
class _Status:
    status: int
    error: str


@dataclass
class _Record:
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # each /api/chat request's Authorization
    client_ports: list[int] = field(default_factory=list)
    streams_abandoned: int = 0
    streams_completed: int = 0
    embed_requests: list[dict[str, Any]] = field(default_factory=list)


def text_vector(text: str, dimensions: int) -> list[float]:
    """A made-up vector that depends only on the text, deliberately not of length 1 (an engine must normalise)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % len(digest)] - 127.5) / 8 for i in range(dimensions)]


class OllamaProtocolDouble:
    """A test double (not Ollama) that speaks Ollama's documented `/api/chat` NDJSON stream, `/api/embed` and
    `/api/tags`.

    Script the next replies with `reply_text`, `reply_tool_call`, `reply_status` and `reply_error_midstream`;
    with nothing scripted it answers "ok". Every `/api/chat` body it received is kept in `requests`, and whether
    the client went away mid-stream in `streams_abandoned`.

    `/api/embed` answers each input with `text_vector(input, embed_dimensions)` unless `reply_embed_status` or
    `reply_embed_body` scripted something else; its bodies are kept in `embed_requests`.
    """

    def __init__(self, *, model: str = "double-model") -> None:
        self.model = model
        self.tags_status = 200
        self.embed_dimensions = 8
        self._replies: deque[_Stream | _Status] = deque()
        self._embed_replies: deque[_Status | dict[str, Any]] = deque()
        self._record = _Record()
        app = Starlette(
            routes=[
                Route("/api/chat", self._chat, methods=["POST"]),
                Route("/api/embed", self._embed, methods=["POST"]),
                Route("/api/tags", self._tags),
            ]
        )
        self._server = ServerThread(app)
        self.url = self._server.url

    def start(self) -> OllamaProtocolDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # -- scripting ---------------------------------------------------------------------------------------

    def reply_text(
        self,
        chunks: list[str],
        *,
        done_reason: str = "stop",
        prompt_eval_count: int = 11,
        eval_count: int | None = None,
        total_duration: int = 123_456_789,
        delay: float = 0.0,
    ) -> None:
        lines = [self._line({"role": "assistant", "content": chunk}) for chunk in chunks]
        final = self._final(done_reason, prompt_eval_count, len(chunks) if eval_count is None else eval_count)
        self._replies.append(_Stream([*lines, {**final, "total_duration": total_duration}], delay))

    def reply_tool_call(self, name: str, arguments: dict[str, Any], *, content: str = "") -> None:
        message = {
            "role": "assistant",
            "content": content,
            "tool_calls": [{"function": {"name": name, "arguments": arguments}}],
        }
        self._replies.append(_Stream([self._line(message), self._final("stop", 20, 9)]))

    def reply_status(self, status: int, error: str) -> None:
        self._replies.append(_Status(status, error))

    def reply_error_midstream(self, chunks: list[str], error: str) -> None:
        lines = [self._line({"role": "assistant", "content": chunk}) for chunk in chunks]
        self._replies.append(_Stream([*lines, {"error": error}]))

    def reply_embed_status(self, status: int, error: str) -> None:
        self._embed_replies.append(_Status(status, error))

    def reply_embed_body(self, body: dict[str, Any]) -> None:
        """The next `/api/embed` answers 200 with exactly this body (to send a malformed one)."""
        self._embed_replies.append(body)

    # -- inspection --------------------------------------------------------------------------------------

    @property
    def authorizations(self) -> list[str | None]:
        return self._record.authorizations

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._record.requests

    @property
    def last_request(self) -> dict[str, Any]:
        return self._record.requests[-1]

    @property
    def embed_requests(self) -> list[dict[str, Any]]:
        return self._record.embed_requests

    @property
    def client_ports(self) -> list[int]:
        """The client's port for each `/api/chat` request: the same port twice means a reused connection."""
        return self._record.client_ports

    @property
    def streams_abandoned(self) -> int:
        return self._record.streams_abandoned

    @property
    def streams_completed(self) -> int:
        return self._record.streams_completed

    # -- the server --------------------------------------------------------------------------------------

    def _line(self, message: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.model, "created_at": "2024-01-01T00:00:00.000000Z", "message": message, "done": False}

    def _final(self, done_reason: str, prompt_eval_count: int, eval_count: int) -> dict[str, Any]:
        return {
            **self._line({"role": "assistant", "content": ""}),
            "done": True,
            "done_reason": done_reason,
            "total_duration": 5_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_eval_count,
            "prompt_eval_duration": 1_000_000,
            "eval_count": eval_count,
            "eval_duration": 3_000_000,
        }

    async def _tags(self, _: Request) -> Response:
        if self.tags_status != 200:
            return JSONResponse({"error": "unavailable"}, status_code=self.tags_status)
        return JSONResponse({"models": [{"name": self.model, "model": self.model, "size": 1, "digest": "0" * 64}]})

    async def _embed(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self._record.embed_requests.append(body)
        reply = self._embed_replies.popleft() if self._embed_replies else None
        if isinstance(reply, _Status):
            return JSONResponse({"error": reply.error}, status_code=reply.status)
        if reply is not None:
            return JSONResponse(reply)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse(
            {
                "model": body["model"],
                "embeddings": [text_vector(text, self.embed_dimensions) for text in inputs],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(text.split()) for text in inputs),
            }
        )

    async def _chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self._record.requests.append(body)
        self._record.authorizations.append(request.headers.get("authorization"))
        self._record.client_ports.append(request.client.port if request.client else 0)
        reply = self._replies.popleft() if self._replies else _Stream([])
        if isinstance(reply, _Status):
            return JSONResponse({"error": reply.error}, status_code=reply.status)
        if not reply.lines:
            reply = _Stream([self._line({"role": "assistant", "content": "ok"}), self._final("stop", 5, 1)])
        if body.get("stream") is False:
            return JSONResponse(self._merged(reply.lines))
        return StreamingResponse(self._ndjson(reply), media_type="application/x-ndjson")

    async def _ndjson(self, reply: _Stream) -> AsyncIterator[bytes]:
        try:
            for line in reply.lines:
                yield orjson.dumps(line) + b"\n"
                if reply.delay:
                    await asyncio.sleep(reply.delay)
        except BaseException:
            self._record.streams_abandoned += 1
            raise
        self._record.streams_completed += 1

    @staticmethod
    def _merged(lines: list[dict[str, Any]]) -> dict[str, Any]:
        final = dict(lines[-1])
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        for line in lines:
            message["content"] += line.get("message", {}).get("content", "")
            if calls := line.get("message", {}).get("tool_calls"):
                message["tool_calls"] = calls
        final["message"] = message
        return final
