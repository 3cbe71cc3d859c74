"""An embedding engine on an Ollama server's `/api/embed` (a batch of inputs per request)."""

from __future__ import annotations

from typing import Any

from aigw.engines.embed.remote import RemoteEmbeddingEngine
from aigw.engines.llm.upstream import error_text
from aigw.errors import EngineUnavailable


class OllamaEmbeddingEngine(RemoteEmbeddingEngine):
    id_prefix = "ollama"
    embed_path = "/api/embed"
    ready_path = "/api/tags"

    def request_body(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def vectors_of(self, reply: Any, expected: int) -> Any:  # noqa: ARG002 - normalised() checks the count
        return _embeddings(reply, self.name)


def _embeddings(reply: Any, name: str) -> Any:
    if not isinstance(reply, dict):
        raise EngineUnavailable(f"{name}: malformed response: not a JSON object")
    if "embeddings" not in reply:
        raise EngineUnavailable(f"{name}: {error_text(reply) or 'malformed response: no embeddings'}")
    return reply["embeddings"]
