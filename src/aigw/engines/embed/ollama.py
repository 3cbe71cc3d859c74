"""An embedding engine on an Ollama server's `/api/embed` (a batch of inputs per request)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from aigw.engines.embed.base import Purpose, Vectors, checked_dimensions, empty, in_batches, normalised, text_list
from aigw.engines.llm.upstream import UpstreamClient, error_text
from aigw.errors import EngineUnavailable

_READY_TIMEOUT = 3.0


class OllamaEmbeddingEngine:
    modality = "embeddings"

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        timeout: float = 60.0,
        api_key: str | None = None,
        max_batch: int = 64,
    ) -> None:
        self.name = name
        self.model = model
        self.model_id = f"ollama:{model}"
        self.dimensions: int | None = None
        self.max_batch = max_batch
        base_url = base_url.rstrip("/")
        self._embed_url = f"{base_url}/api/embed"
        self._tags_url = f"{base_url}/api/tags"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(name, headers=headers, timeout=timeout)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        purpose: Purpose = "document",  # noqa: ARG002 -- Ollama's API does not tell queries from documents
    ) -> Vectors:
        batch = text_list(texts)
        if not batch:
            return empty(self.dimensions)
        return await in_batches(batch, self.max_batch, self._embed_batch)

    async def _embed_batch(self, texts: list[str]) -> Vectors:
        reply = await self._client.post_json(self._embed_url, orjson.dumps({"model": self.model, "input": texts}))
        vectors = normalised(_embeddings(reply, self.name), expected=len(texts), source=self.name)
        self.dimensions = checked_dimensions(self.dimensions, vectors, self.name)
        return vectors

    async def ready(self) -> bool:
        return await self._client.ok(self._tags_url, _READY_TIMEOUT)

    async def close(self) -> None:
        await self._client.close()


def _embeddings(reply: Any, name: str) -> Any:
    if not isinstance(reply, dict):
        raise EngineUnavailable(f"{name}: malformed response: not a JSON object")
    if "embeddings" not in reply:
        raise EngineUnavailable(f"{name}: {error_text(reply) or 'malformed response: no embeddings'}")
    return reply["embeddings"]
