"""Benchmark double: the cheapest OpenAI-compatible upstream we can serve, so a gateway in front is what gets measured.

Not a model and not a server to deploy: every answer is a fixed, precomputed byte string.
  POST /v1/chat/completions  `"stream": true` -> 20 SSE content chunks, a usage chunk and `data: [DONE]`
                             otherwise        -> one chat.completion JSON with usage
  GET  /v1/models            one model, "fast"
Anything else is 404. The request body is parsed (orjson) only to read `stream`.

Two implementations, same bytes on the wire (`--impl`):
  protocol  a raw asyncio Protocol on uvloop with httptools parsing, writing each response in one call
  asgi      a bare ASGI callable under uvicorn (uvloop + httptools, no access log, no lifespan)
bench/gateway_overhead.py uses `protocol`: measured with `gateway_overhead.py --compare-upstreams` on 2 cores it
serves 3x the requests/s of `asgi` at 64 connections (~100k/s) for half the CPU per request (~10 us).

    .venv/bin/python bench/fast_upstream.py --port 9000 [--impl protocol|asgi]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httptools
import orjson
import uvloop

CONTENT = "Hello! This is a fixed completion from the benchmark upstream."
CHUNKS = 20
CREATED = 1_700_000_000


def _completion() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": "fast",
            "system_fingerprint": "fast-upstream",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 12, "total_tokens": 24},
        }
    )


def _sse_events() -> list[bytes]:
    events = []
    meta = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "fast"}
    for i in range(CHUNKS):
        delta: dict[str, Any] = {"content": f"tok{i} "}
        if i == 0:
            delta["role"] = "assistant"
        finish = "stop" if i == CHUNKS - 1 else None
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        events.append(b"data: " + orjson.dumps({**meta, "choices": [choice]}) + b"\n\n")
    usage = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
    events.append(b"data: " + orjson.dumps({**meta, "choices": [], "usage": usage}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


COMPLETION = _completion()
SSE_EVENTS = _sse_events()
SSE_BODY = b"".join(SSE_EVENTS)
MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": "fast", "object": "model", "created": 0, "owned_by": "bench"}]}
)
NOT_FOUND = b'{"error":{"message":"not found","type":"not_found"}}'


def wants_stream(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


# ---- protocol: raw asyncio + httptools ----


def _fixed(status: str, content_type: bytes, body: bytes, keep_alive: bool) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: ".encode() + content_type
    head += f"\r\ncontent-length: {len(body)}\r\n".encode()
    return head + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n") + body


def _chunked(body_parts: list[bytes], keep_alive: bool) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    head += b"transfer-encoding: chunked\r\n" + (b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in body_parts)
    return head + chunks + b"0\r\n\r\n"


RESPONSES = {
    (kind, keep): data
    for keep in (True, False)
    for kind, data in (
        ("completion", _fixed("200 OK", b"application/json", COMPLETION, keep)),
        ("stream", _chunked(SSE_EVENTS, keep)),
        ("models", _fixed("200 OK", b"application/json", MODELS, keep)),
        ("missing", _fixed("404 Not Found", b"application/json", NOT_FOUND, keep)),
    )
}


class UpstreamProtocol(asyncio.Protocol):
    __slots__ = ("body", "parser", "transport", "url")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(RESPONSES[("missing", False)])
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        path = self.url.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/chat/completions":
            kind = "stream" if wants_stream(b"".join(self.body)) else "completion"
        elif method == b"GET" and path == b"/v1/models":
            kind = "models"
        else:
            kind = "missing"
        keep = self.parser.should_keep_alive()
        assert self.transport is not None
        self.transport.write(RESPONSES[(kind, keep)])
        if not keep:
            self.transport.close()


async def serve_protocol(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


# ---- asgi: uvicorn + a bare callable ----

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == "/v1/chat/completions":
        if wants_stream(body):
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await send({"type": "http.response.body", "body": SSE_BODY})
            return
        status, headers, payload = 200, _JSON_HEADERS, COMPLETION
    elif method == "GET" and path == "/v1/models":
        status, headers, payload = 200, _JSON_HEADERS, MODELS
    else:
        status, headers, payload = 404, _JSON_HEADERS, NOT_FOUND
    headers = [*headers, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--impl", choices=("protocol", "asgi"), default="protocol")
    args = parser.parse_args()
    if args.impl == "asgi":
        import uvicorn

        uvicorn.run(
            asgi_app,
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            date_header=False,
            backlog=1024,
        )
        return
    uvloop.run(serve_protocol(args.host, args.port))


if __name__ == "__main__":
    main()
