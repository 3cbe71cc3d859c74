"""A test double of an OpenAI-compatible embeddings server (`POST /v1/embeddings`, `GET /v1/models`)."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from doubles.ollama import ServerThread, text_vector


class OpenAIEmbeddingsDouble:
    """A test double (not OpenAI) that answers `/v1/embeddings` in OpenAI's wire format.

    Each input gets `text_vector(input, dimensions)`. Script the next replies with `reply_status` (an error body
    as OpenAI sends it), `reply_body` (any 200 body, to send a malformed one) or `reply_reversed` (the right
    vectors with `data` in reverse order: the format orders by `index`, not by position). Every request's
    headers and body are kept in `requests`.
    """

    def __init__(self, *, dimensions: int = 8) -> None:
        self.dimensions = dimensions
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._replies: deque[tuple[int, dict[str, Any]] | str] = deque()
        app = Starlette(
            routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"]), Route("/v1/models", self._models)]
        )
        self._server = ServerThread(app)
        self.url = self._server.url + "/v1"

    def start(self) -> OpenAIEmbeddingsDouble:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reply_status(self, status: int, message: str) -> None:
        error = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}
        self._replies.append((status, {"error": {**error, "param": None, "code": None}}))

    def reply_body(self, body: dict[str, Any]) -> None:
        self._replies.append((200, body))

    def reply_reversed(self) -> None:
        self._replies.append("reversed")

    @property
    def last_request(self) -> tuple[dict[str, str], dict[str, Any]]:
        return self.requests[-1]

    async def _models(self, _: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "double-embed", "object": "model", "owned_by": "me"}]})

    async def _embeddings(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append((dict(request.headers), body))
        reply = self._replies.popleft() if self._replies else None
        if isinstance(reply, tuple):
            status, content = reply
            return JSONResponse(content, status_code=status)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": index, "embedding": text_vector(text, self.dimensions)}
            for index, text in enumerate(inputs)
        ]
        if reply == "reversed":
            data.reverse()
        tokens = sum(len(text.split()) for text in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
