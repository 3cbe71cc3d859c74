"""An embedding engine on any OpenAI-compatible `/v1/embeddings` (OpenAI, vLLM, llama.cpp server, TEI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from aigw.engines.embed.base import Purpose, Vectors, checked_dimensions, empty, in_batches, normalised, text_list
from aigw.engines.llm.upstream import UpstreamClient, error_text
from aigw.errors import EngineUnavailable

_READY_TIMEOUT = 3.0


class OpenAIEmbeddingEngine:
    modality = "embeddings"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_batch: int = 64,
    ) -> None:
        self.name = name
        self.model = model
        self.model_id = f"openai:{model}"
        self.dimensions: int | None = None
        self.max_batch = max_batch
        base_url = base_url.rstrip("/")
        self._embeddings_url = f"{base_url}/embeddings"
        self._models_url = f"{base_url}/models"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(name, headers=headers, timeout=timeout)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        purpose: Purpose = "document",  # noqa: ARG002 -- the OpenAI API does not tell queries from documents
    ) -> Vectors:
        batch = text_list(texts)
        if not batch:
            return empty(self.dimensions)
        return await in_batches(batch, self.max_batch, self._embed_batch)

    async def _embed_batch(self, texts: list[str]) -> Vectors:
        # "float", not the default base64 of some clients: plain JSON numbers are what every server speaks.
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        reply = await self._client.post_json(self._embeddings_url, orjson.dumps(body))
        vectors = normalised(_in_order(reply, len(texts), self.name), expected=len(texts), source=self.name)
        self.dimensions = checked_dimensions(self.dimensions, vectors, self.name)
        return vectors

    async def ready(self) -> bool:
        return await self._client.ok(self._models_url, _READY_TIMEOUT)

    async def close(self) -> None:
        await self._client.close()


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
