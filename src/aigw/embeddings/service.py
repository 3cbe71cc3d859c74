"""Embeddings for API callers: resolve the model, turn token arrays into text, embed, check the size, count tokens.

Routes call `EmbeddingService.embed()`; it knows nothing of the wire format (float lists or base64 are the
route's business). The vectors are the engine's own L2-normalised ones, embedded as documents: OpenAI's API
does not tell queries from documents, and a document vector is what a client stores to search later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from aigw.engines.embed.base import EmbeddingConfig, EmbeddingEngine, TokenizingEmbeddingEngine, Vectors
from aigw.errors import InvalidField, NotFound, PayloadTooLarge

# OpenAI's own limits: 2048 inputs a request and about 300k tokens in all (here counted as characters or ids).
MAX_INPUTS = 2048
MAX_TOTAL_CHARS = 1_000_000
MAX_TOTAL_TOKEN_IDS = 300_000
_CHARS_PER_TOKEN = 4  # the usual estimate for English, where the upstream's own count does not reach us

EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]


@dataclass
class Embeddings:
    model: str
    vectors: Vectors  # (inputs, dimensions) float32, each row of length 1
    prompt_tokens: int


class EmbeddingService:
    def __init__(self, engine: EmbeddingEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._aliases = {name, engine.model_id}

    @classmethod
    def from_settings(cls, config: EmbeddingConfig, engine: EmbeddingEngine) -> EmbeddingService:
        """The public model name is the upstream's for a remote engine, and the lower-cased model id for the
        embedded one ("all-minilm-l6-v2"); the engine's model id ("all-MiniLM-L6-v2") is accepted too."""
        name = config.model if config.engine != "local" and config.model else engine.model_id.lower()
        return cls(engine, name)

    @property
    def models(self) -> list[str]:
        return [self.name]

    def resolve(self, model: str) -> str:
        if model not in self._aliases:
            raise NotFound(
                f"Unknown embedding model {model!r}; this gateway embeds with {self.name!r} (GET /v1/models)",
                code="model_not_found",
            )
        return self.name

    async def embed(self, model: str, inputs: EmbeddingInput, *, dimensions: int | None = None) -> Embeddings:
        """Embed each input, in order.

        Args:
            model: A name `resolve()` accepts.
            inputs: One text, a list of texts, one array of token ids, or a list of such arrays. Token ids are
                of the embedding model's own vocabulary, so only an engine with a tokenizer takes them.
            dimensions: The vector size the caller wants; the models here give their native size only.

        Raises:
            NotFound: an unknown model.
            InvalidField: empty or malformed input, token arrays the engine cannot read, other dimensions.
            PayloadTooLarge: more than MAX_TOTAL_CHARS characters or MAX_TOTAL_TOKEN_IDS token ids.
            EngineUnavailable: the engine is down or busy (EngineBusy, with Retry-After).
        """
        name = self.resolve(model)
        native = self.engine.dimensions
        if dimensions is not None and native is not None and dimensions != native:
            raise _unsupported_dimensions(name, native, dimensions)
        texts = await self._texts(inputs)
        vectors = await self.engine.embed(texts, purpose="document")
        if dimensions is not None and vectors.shape[1] != dimensions:  # a remote engine's size, known only now
            raise _unsupported_dimensions(name, int(vectors.shape[1]), dimensions)
        return Embeddings(name, vectors, await self._count_tokens(texts))

    async def _texts(self, inputs: EmbeddingInput) -> list[str]:
        items: Sequence[object] = [inputs] if isinstance(inputs, str) else inputs
        if not items:
            raise InvalidField("input must not be empty", code="empty_input")
        if all(isinstance(item, str) for item in items):
            return _checked_texts(cast("Sequence[str]", items))
        arrays = [items] if all(isinstance(item, int) for item in items) else list(items)  # one array, or several
        return await self._detokenized(cast("list[Sequence[int]]", arrays))

    async def _detokenized(self, arrays: list[Sequence[int]]) -> list[str]:
        if len(arrays) > MAX_INPUTS:
            raise _too_many(len(arrays))
        if any(not ids for ids in arrays):
            raise InvalidField("input has an empty token array", code="empty_input")
        if sum(len(ids) for ids in arrays) > MAX_TOTAL_TOKEN_IDS:
            raise PayloadTooLarge(f"input has more than {MAX_TOTAL_TOKEN_IDS} token ids in all", code="input_too_large")
        if not isinstance(self.engine, TokenizingEmbeddingEngine):
            raise InvalidField(
                f"{self.name!r} takes text only: token arrays are read with the embedded model's tokenizer, and "
                "this model runs on a remote engine; send the text instead",
                code="token_input_unsupported",
            )
        return await self.engine.detokenize(arrays)

    async def _count_tokens(self, texts: list[str]) -> int:
        if isinstance(self.engine, TokenizingEmbeddingEngine):
            return sum(await self.engine.count_tokens(texts))
        return sum(max(1, math.ceil(len(text) / _CHARS_PER_TOKEN)) for text in texts)


def _checked_texts(texts: Sequence[str]) -> list[str]:
    if len(texts) > MAX_INPUTS:
        raise _too_many(len(texts))
    empty = next((i for i, text in enumerate(texts) if not text), None)
    if empty is not None:
        raise InvalidField(f"input[{empty}] is an empty string", code="empty_input")
    if sum(len(text) for text in texts) > MAX_TOTAL_CHARS:
        raise PayloadTooLarge(f"input has more than {MAX_TOTAL_CHARS} characters in all", code="input_too_large")
    return list(texts)


def _too_many(count: int) -> InvalidField:
    return InvalidField(
        f"input has {count} items; at most {MAX_INPUTS} are embedded per request", code="too_many_inputs"
    )


def _unsupported_dimensions(name: str, native: int, wanted: int) -> InvalidField:
    return InvalidField(
        f"{name!r} gives {native}-dimensional vectors and was not trained to be shortened to {wanted}; "
        f"omit dimensions or pass {native}",
        code="dimensions_not_supported",
    )
