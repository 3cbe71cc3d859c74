"""An embedding engine on any OpenAI-compatible `/v1/embeddings` (OpenAI, vLLM, llama.cpp server, TEI)."""

from __future__ import annotations

from typing import Any

from aigw.engines.embed.remote import RemoteEmbeddingEngine
from aigw.engines.llm.upstream import error_text
from aigw.errors import EngineUnavailable


class OpenAIEmbeddingEngine(RemoteEmbeddingEngine):
    id_prefix = "openai"
    embed_path = "/embeddings"
    ready_path = "/models"

    def request_body(self, texts: list[str]) -> dict[str, Any]:
        # "float", not the default base64 of some clients: plain JSON numbers are what every server speaks.
        return {"model": self.model, "input": texts, "encoding_format": "float"}

    def vectors_of(self, reply: Any, expected: int) -> Any:
        return _in_order(reply, expected, self.name)


def _in_order(reply: Any, expected: int, name: str) -> list[Any]:
    """The `embedding` of each item of `data`, ordered by `index` (which must be 0..expected-1, each once)."""
    if not isinstance(reply, dict):
        raise EngineUnavailable(f"{name}: malformed response: not a JSON object")
    data = reply.get("data")
    if not isinstance(data, list):
        raise EngineUnavailable(f"{name}: {error_text(reply) or 'malformed response: no data'}")
    if not all(isinstance(item, dict) and isinstance(item.get("index"), int) for item in data):
        raise EngineUnavailable(f"{name}: malformed response: an item without an integer index")
    indexes = sorted(item["index"] for item in data)
    if indexes != list(range(expected)):
        raise EngineUnavailable(
            f"{name}: malformed response: expected {expected} vectors indexed 0..{expected - 1}, got indexes "
            f"{indexes[:10]}{'...' if len(indexes) > 10 else ''}"
        )
    return [item.get("embedding") for item in sorted(data, key=lambda item: item["index"])]
