"""The speech-to-text engine protocol: 16 kHz mono audio in, a transcript with its language and timed segments out."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

SAMPLE_RATE = 16_000


@functools.cache
def whisper_languages() -> dict[str, str]:
    """Whisper's 100 languages, ISO code to English name ("en": "english"); transformers carries the table."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return dict(LANGUAGES)


Audio = NDArray[np.float32]  # mono, SAMPLE_RATE, in [-1, 1]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    language_probability: float
    duration: float  # seconds of audio
    segments: list[Segment]


class SttEngine(Protocol):
    name: str
    modality: str  # "stt"
    model_id: str

    async def transcribe(self, audio: Audio, *, language: str | None = None, words: bool = False) -> Transcript:
        """Transcribe `audio`; `language` (an ISO 639-1 code) skips detection; `words` adds word times."""
        ...

    def languages(self) -> frozenset[str]:
        """The language codes the model knows."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class SttConfig(BaseModel):
    """`AIGW_STT`: which speech-to-text model runs, and how."""

    model_config = ConfigDict(extra="forbid")
    engine: str = Field(
        default="local",
        pattern="^(local|openai)$",
        description="local: faster-whisper in process; openai: an OpenAI-compatible transcription server",
    )
    model: str = Field(
        default="base",
        description="local: base (packaged, multilingual), tiny.en (packaged, English only) or the path of a "
        "faster-whisper (CTranslate2) model directory, such as large-v3; openai: the server's model name "
        "(default whisper-1)",
    )
    base_url: str | None = Field(default=None, description="openai: the API's base URL, e.g. http://host:8000/v1")
    api_key: SecretStr | None = Field(default=None, description="openai: sent as a Bearer token")
    timeout: float = Field(default=300, gt=0, description="openai: seconds to wait for a transcription")
    compute_type: str = Field(default="int8", description="CTranslate2 compute type: int8, int8_float32, float32")
    beam_size: int = Field(default=1, ge=1, le=10, description="1 is greedy decoding: fastest, nearly as accurate")
    vad: bool = Field(default=True, description="skip silence with faster-whisper's bundled Silero VAD")
    threads: int = Field(default=0, ge=0, description="CPU threads (0: all cores)")
    max_queue: int = Field(default=8, ge=1, description="transcriptions waiting before 503")

    @model_validator(mode="after")
    def _remote_needs_a_url(self) -> SttConfig:
        if self.engine == "openai":
            if not self.base_url:
                raise ValueError("an openai STT engine needs base_url")
            if self.model == "base":
                self.model = "whisper-1"
        return self
