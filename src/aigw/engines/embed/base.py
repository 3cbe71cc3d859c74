"""The embeddings protocol: texts in, one L2-normalised float32 vector per text out.

Every embedding engine (sentence-transformers in process, Ollama, any OpenAI-compatible server)
implements `embed`. Vectors are only comparable within one vector space, so each engine names
its space in `model_id`, and whoever stores vectors stores that name with them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from aigw.errors import EngineUnavailable

Purpose = Literal["query", "document"]
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class EmbeddingEngine(Protocol):
    name: str
    modality: str  # "embeddings"
    dimensions: int | None  # known after load or the first call
    model_id: str  # the vector space, e.g. "all-MiniLM-L6-v2" or "ollama:nomic-embed-text"
    max_batch: int  # texts per model call or upstream request

    async def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        """Embed `texts`.

        Args:
            texts: The texts, in order. Long texts are truncated by the model to its own limit.
            purpose: "query" for a search (served before queued document work where that matters),
                "document" for text being indexed.

        Returns:
            A float32 array of shape (len(texts), dimensions), each row L2-normalised; an empty input
            gives shape (0, dimensions), or (0, 0) while the dimensions are not known.
        """
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


@runtime_checkable
class TokenizingEmbeddingEngine(EmbeddingEngine, Protocol):
    """An embedding engine whose tokenizer callers can use (the embedded model): an optional capability."""

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model reads of each text: its special tokens included, cut at its length limit."""
        ...

    async def detokenize(self, arrays: Sequence[Sequence[int]]) -> list[str]:
        """The text of each array of token ids of the model's own vocabulary (special tokens dropped).

        Raises:
            InvalidField: an id outside the vocabulary (code "invalid_token_id").
        """
        ...


class EmbeddingConfig(BaseModel):
    """Which engine turns text into vectors for knowledge bases."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["local", "ollama", "openai"] = "local"
    model: str | None = Field(
        default=None,
        description="Upstream model name (ollama, openai); local: a sentence-transformers model dir "
        "(default: the packaged all-MiniLM-L6-v2)",
    )
    base_url: str | None = Field(default=None, description="http://host:11434 (ollama) or http://host/v1 (openai)")
    api_key: SecretStr | None = None
    timeout: float = Field(default=60.0, gt=0)
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto", description="local: bfloat16 autocast where the CPU has native bf16 (auto), or forced"
    )
    threads: int | None = Field(default=None, ge=1, description="local: CPU threads (default: all cores)")
    runtime: Literal["onnx", "torch"] = Field(
        default="onnx", description="local: ONNX Runtime with int8 weights exported once from the model, or torch"
    )

    @model_validator(mode="after")
    def _check(self) -> EmbeddingConfig:
        if self.engine != "local" and not (self.base_url and self.model):
            raise ValueError(f"an {self.engine} embedding engine needs base_url and model")
        return self


def text_list(texts: Sequence[str]) -> list[str]:
    # A str is a Sequence[str] too: embedding its characters one by one is never what the caller meant.
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string")
    return list(texts)


def empty(dimensions: int | None) -> Vectors:
    return np.zeros((0, dimensions or 0), dtype=np.float32)


def normalised(rows: Any, *, expected: int, source: str) -> Vectors:
    """Check what an upstream sent (a list of `expected` equal-length numeric vectors) and L2-normalise it."""
    if not isinstance(rows, list) or len(rows) != expected:
        got = f"{len(rows)} vectors" if isinstance(rows, list) else type(rows).__name__
        raise EngineUnavailable(f"{source}: malformed response: expected {expected} vectors, got {got}")
    try:
        vectors = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError) as exc:  # ragged rows, or something other than numbers
        raise EngineUnavailable(f"{source}: malformed response: vectors of unequal length or not numbers") from exc
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise EngineUnavailable(f"{source}: malformed response: vectors of shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise EngineUnavailable(f"{source}: malformed response: vectors with NaN or infinite values")
    return unit_rows(vectors)


def unit_rows(vectors: Vectors) -> Vectors:
    """Scale each row to length 1 in float32; an all-zero row (no direction) stays zero."""
    vectors = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit


def checked_dimensions(known: int | None, vectors: Vectors, source: str) -> int:
    """The upstream's vector size, which must not change between calls: vectors of two sizes cannot share a store."""
    size = int(vectors.shape[1])
    if known is not None and size != known:
        raise EngineUnavailable(f"{source}: returned {size}-dimensional vectors, earlier {known}-dimensional")
    return size


async def in_batches(texts: list[str], size: int, embed_batch: Callable[[list[str]], Awaitable[Vectors]]) -> Vectors:
    """Embed `texts` `size` at a time, one batch after another, and join the vectors in order."""
    parts = [await embed_batch(texts[start : start + size]) for start in range(0, len(texts), size)]
    joined: Vectors = np.concatenate(parts)
    return joined
