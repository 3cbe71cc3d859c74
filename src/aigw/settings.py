"""Typed settings: `AIGW_*` environment variables, then an optional `aigw.toml`, then defaults."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aigw.engines.embed.base import EmbeddingConfig
from aigw.engines.stt.base import SttConfig
from aigw.engines.tts.base import TtsConfig

DEFAULT_CHAT_MODEL = "qwen2.5-coder-0.5b"


class ChatBackend(BaseModel):
    """One place a chat model can be served from; a model lists several as an ordered fallback chain."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["llama", "ollama", "openai"]
    model: str | None = Field(default=None, description="Upstream model name (ollama, openai)")
    base_url: str | None = Field(default=None, description="http://host:11434 (ollama) or http://host/v1 (openai)")
    api_key: SecretStr | None = None
    path: Path | None = Field(default=None, description="GGUF file (llama); default: the packaged Qwen2.5-Coder")
    timeout: float = Field(default=120.0, gt=0)
    n_ctx: int = Field(default=8192, ge=512, description="llama: context window in tokens")
    n_threads: int | None = Field(default=None, ge=1, description="llama: CPU threads (default: all cores)")
    max_queue: int = Field(default=16, ge=1, description="llama: requests waiting beyond this get 503")

    @model_validator(mode="after")
    def _check(self) -> ChatBackend:
        if self.engine != "llama" and not (self.base_url and self.model):
            raise ValueError(f"a {self.engine} backend needs base_url and model")
        return self


class ChatModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    backends: list[ChatBackend] = Field(min_length=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIGW_", extra="forbid", toml_file="aigw.toml")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in the data dir when unset")
    redis_url: str | None = Field(default=None, description="Shared rate limits and revocation across workers")
    db_pool_size: int = Field(default=10, ge=1, le=1000, description="Database connections each worker keeps")
    db_max_overflow: int = Field(default=20, ge=0, le=1000, description="Extra connections a worker may open at peaks")
    secret_key: SecretStr | None = Field(default=None, description="Keyed hashes of keys and sessions")

    admin_email: str | None = None
    admin_password: SecretStr | None = None

    host: str = "127.0.0.1"
    port: int = 8080

    default_rate_limit: int = Field(default=60, ge=1, description="Requests per minute for new users")
    session_ttl_hours: int = Field(default=168, ge=1)
    cookie_secure: bool = Field(default=False, description="Mark the session cookie Secure (behind HTTPS)")
    trusted_origins: list[str] = Field(default_factory=list, description="Extra origins allowed to use the cookie")
    max_body_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    usage_flush_seconds: float = Field(default=1.0, gt=0)

    chat_models: list[ChatModelConfig] = Field(
        default_factory=lambda: [ChatModelConfig(name=DEFAULT_CHAT_MODEL, backends=[ChatBackend(engine="llama")])],
        description="JSON list of {name, backends: [{engine, model, base_url, ...}]}; backends are tried in order",
    )
    default_chat_model: str = DEFAULT_CHAT_MODEL
    models_dir: Path | None = Field(default=None, description="Assembled model files (default: <data dir>/models)")
    preload_models: bool = Field(default=True, description="Load embedded models when the server starts")

    embedding: EmbeddingConfig = Field(
        default_factory=EmbeddingConfig,
        description='Embedding engine, JSON: {"engine": "local"|"ollama"|"openai", "model", "base_url", ...}',
    )
    stt: SttConfig = Field(
        default_factory=SttConfig,
        description='Speech-to-text engine, JSON: {"engine": "local", "model": "base"|PATH, "beam_size", ...}',
    )
    stt_max_seconds: float = Field(default=1800, gt=0, le=4 * 3600, description="Longest audio transcribed, seconds")
    tts: TtsConfig = Field(
        default_factory=TtsConfig,
        description='Text-to-speech engine, JSON: {"engine": "local"|"openai"|"chatterbox", "base_url", "voices", ...}',
    )
    image_max_pixels: int = Field(
        default=50_000_000, ge=1_000_000, description="Largest image read (width x height); more is 413"
    )
    vision_model: str | None = Field(
        default=None,
        description="A chat model (ollama or openai backends) that reads images, for /api/vision/analyze; "
        "unset: the embedded composite of detectors and OCR, written up by the default chat model",
    )
    tts_max_chars: int = Field(default=4096, ge=1, le=100_000, description="Longest text spoken in one request")
    kb_chunk_chars: int = Field(default=1000, ge=200, le=8000, description="Largest chunk, in characters")
    kb_chunk_overlap: int = Field(default=0, ge=0, le=2000, description="Characters shared by adjacent chunks")
    kb_ann_min_chunks: int = Field(
        default=20_000, ge=1, description="SQLite: from this many vectors, scopes this large search an HNSW graph"
    )
    kb_fetch_allow: list[str] = Field(
        default_factory=list,
        description="Networks a URL may resolve to despite the SSRF rules (CIDRs, e.g. an intranet wiki)",
    )
    kb_max_pages: int = Field(default=2000, ge=1, description="PDF pages or TIFF frames read of one document")
    kb_ocr_seconds: float = Field(default=900.0, gt=0, description="Seconds of OCR one document may take in all")
    kb_fetch_timeout: float = Field(default=20.0, gt=0, description="Seconds for a URL fetch, redirects included")
    kb_fetch_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    kb_ingest_workers: int = Field(
        default=2, ge=1, le=32, description="Documents each server process ingests at once (they share its models)"
    )
    kb_job_lease_seconds: float = Field(
        default=30.0, ge=1, description="An ingestion job whose worker stops renewing its lease is taken over"
    )
    # One passage's window keeps a one-line question's first token within ~1.4 s (p95) on two cores with the same
    # answer quality as four whole chunks (bench/kb_ttft.py); two raise context recall at ~1.5 s p50, 2.5 s p95.
    kb_context_chunks: int = Field(default=1, ge=0, le=20, description="Passages injected into a chat (0: none)")
    kb_context_chars: int = Field(default=450, ge=200, description="Most characters of context injected in all")
    kb_context_window_chars: int = Field(
        default=450, ge=80, description="Most characters of one passage: the sentences around its best match"
    )
    kb_context_margin: float = Field(
        default=0.1, ge=0, le=2, description="A passage is injected only within this cosine similarity of the best"
    )
    kb_min_similarity: float = Field(
        default=0.3, ge=-1, le=1, description="Cosine similarity a chunk needs to be injected into a chat"
    )

    @model_validator(mode="after")
    def _check_vision_model(self) -> Settings:
        if self.vision_model is None:
            return self
        model = next((m for m in self.chat_models if m.name == self.vision_model), None)
        if model is None:
            raise ValueError(f"vision_model {self.vision_model!r} is not one of the chat_models")
        if any(backend.engine == "llama" for backend in model.backends):
            raise ValueError("vision_model needs ollama or openai backends: the embedded llama.cpp reads no images")
        return self

    log_level: str = "info"
    access_log: bool = Field(default=True, description="One structured log line per request")
    log_json: bool = Field(default=True, description="Logs as JSON lines (false: plain text)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - not used: env and aigw.toml only
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("AIGW_CONFIG", "aigw.toml"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, toml)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'aigw.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def secret(self) -> bytes:
        """The server secret; generated once into the data dir, so every worker shares it."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return load_or_create_secret(self.data_dir / "secret_key")


def normalize_database_url(url: str) -> str:
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


_SECRET_PARAMETERS = frozenset({"password", "passwd", "pass", "sslpassword", "token", "secret"})


def redacted_url(url: str) -> str:
    """A database or Redis URL fit to print: its password replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        query = {k: "***" if k.lower() in _SECRET_PARAMETERS else v for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://(unparsable URL not shown)"


def load_or_create_secret(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return path.read_bytes().strip()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_bytes(secrets.token_urlsafe(48).encode())
    os.chmod(tmp, 0o600)
    try:
        # link() fails if another worker won the race; then everyone reads the winner's secret.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
