"""The embeddings modality: one protocol, three engines, and the factory that builds the configured one.

Engines are imported by the factory, not here, so importing the package does not import an HTTP client
or the model's dependencies it will not use.
"""

from __future__ import annotations

from pathlib import Path

from aigw.engines.embed.base import EmbeddingConfig, EmbeddingEngine, Purpose, TokenizingEmbeddingEngine, Vectors

__all__ = [
    "EmbeddingConfig",
    "EmbeddingEngine",
    "Purpose",
    "TokenizingEmbeddingEngine",
    "Vectors",
    "build_embedding_engine",
]


def build_embedding_engine(config: EmbeddingConfig, models_dir: Path | None = None) -> EmbeddingEngine:
    if config.engine == "local":
        from aigw.engines.embed.local import SentenceTransformerEngine

        path = Path(config.model).expanduser() if config.model else None
        return SentenceTransformerEngine(
            name="minilm" if path is None else f"sentence-transformers/{path.name}",
            model_path=path,
            dtype=config.dtype,
            threads=config.threads,
            runtime=config.runtime,
            models_dir=models_dir,
        )
    # The config's validator has made sure remote engines have both.
    assert config.base_url is not None and config.model is not None
    api_key = config.api_key.get_secret_value() if config.api_key else None
    host = config.base_url.split("://", 1)[-1].split("/", 1)[0]
    name = f"embeddings/{config.engine}@{host}/{config.model}"
    if config.engine == "ollama":
        from aigw.engines.embed.ollama import OllamaEmbeddingEngine

        return OllamaEmbeddingEngine(
            name=name, base_url=config.base_url, model=config.model, timeout=config.timeout, api_key=api_key
        )
    from aigw.engines.embed.openai_compat import OpenAIEmbeddingEngine

    return OpenAIEmbeddingEngine(
        name=name, base_url=config.base_url, model=config.model, api_key=api_key, timeout=config.timeout
    )
