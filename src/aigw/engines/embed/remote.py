"""What every HTTP embedding engine shares: batching, normalising, a fixed vector size, readiness and close.

A subclass names its endpoints and says how a batch is asked for and how its vectors are read from the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from aigw.engines.embed.base import Purpose, Vectors, checked_dimensions, empty, in_batches, normalised, text_list
from aigw.engines.llm.upstream import UpstreamClient

_READY_TIMEOUT = 3.0


class RemoteEmbeddingEngine:
    modality = "embeddings"
    id_prefix = ""
    embed_path = ""
    ready_path = ""

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
        self.model_id = f"{self.id_prefix}:{model}"
        self.dimensions: int | None = None
        self.max_batch = max_batch
        base_url = base_url.rstrip("/")
        self._embed_url = base_url + self.embed_path
        self._ready_url = base_url + self.ready_path
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(name, headers=headers, timeout=timeout)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        purpose: Purpose = "document",  # noqa: ARG002 -- these APIs do not tell queries from documents
    ) -> Vectors:
        batch = text_list(texts)
        if not batch:
            return empty(self.dimensions)
        return await in_batches(batch, self.max_batch, self._embed_batch)

    async def _embed_batch(self, texts: list[str]) -> Vectors:
        reply = await self._client.post_json(self._embed_url, orjson.dumps(self.request_body(texts)))
        vectors = normalised(self.vectors_of(reply, len(texts)), expected=len(texts), source=self.name)
        self.dimensions = checked_dimensions(self.dimensions, vectors, self.name)
        return vectors

    def request_body(self, texts: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def vectors_of(self, reply: Any, expected: int) -> Any:
        raise NotImplementedError

    async def ready(self) -> bool:
        return await self._client.ok(self._ready_url, _READY_TIMEOUT)

    async def close(self) -> None:
        await self._client.close()
