"""The text-to-speech engine protocol: one sentence, a language, a speaker and a prosody in; samples out.

Engines speak one sentence at a time; splitting a text into sentences, choosing the engine for a language and
joining the audio is the speech service's work, so that the first sentence can be played (or sent over a
socket) while the next is synthesised, and a cancelled answer stops between two sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Samples = NDArray[np.float32]  # mono, in [-1, 1]


@dataclass(frozen=True)
class Speech:
    samples: Samples
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Speaker:
    """Who speaks, as each engine can express it. Presets and clones are both made of one of these."""

    kokoro: tuple[tuple[str, float], ...] = (("jm_kumo", 1.0),)  # Kokoro style names and blend weights
    piper: bool = False  # English in the packaged Piper voice rather than Kokoro
    espeak: str = ""  # an espeak-ng variant ("f3", "m2"...); "" for the language's default voice
    pitch: float = 1.0  # factor on the engine's natural pitch
    speed: float = 1.0  # factor on its natural speaking rate
    reference: Path | None = None  # a cloning engine's reference recording
    remote_voice: str | None = None  # the voice name a remote engine knows this speaker by


@dataclass(frozen=True)
class Prosody:
    """The seed's three knobs, as factors around their defaults (1.0 = the default of each)."""

    expressiveness: float = 1.0  # exaggeration / 0.5
    variation: float = 1.0  # temperature / 0.8
    pace: float = 1.0  # from cfg_weight: 0.0 -> 0.85, 0.5 -> 1.0, 1.0 -> 1.15 (Chatterbox: low cfg = slower)
    raw: dict[str, float] = field(default_factory=dict)  # the values as sent, for engines that take them natively

    @classmethod
    def from_seed(cls, exaggeration: float, temperature: float, cfg_weight: float) -> Prosody:
        return cls(
            expressiveness=exaggeration / 0.5,
            variation=temperature / 0.8,
            pace=0.85 + 0.3 * cfg_weight,
            raw={"exaggeration": exaggeration, "temperature": temperature, "cfg_weight": cfg_weight},
        )


class TtsEngine(Protocol):
    name: str
    modality: str  # "tts"
    model_id: str

    def languages(self) -> frozenset[str]:
        """The ISO 639-1 codes this engine speaks."""
        ...

    async def synthesize(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:
        """One sentence (or a short paragraph) spoken."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class TtsConfig(BaseModel):
    """`AIGW_TTS`: which text-to-speech engines run, and how."""

    model_config = ConfigDict(extra="forbid")
    engine: str = Field(
        default="local",
        pattern="^(local|openai|chatterbox)$",
        description="local: Piper, Kokoro and espeak-ng in process; openai: an OpenAI-compatible speech server; "
        "chatterbox: a Chatterbox TTS API server (clones speak with their own recording)",
    )
    base_url: str | None = Field(default=None, description="remote: the API's base URL, e.g. http://host:4123/v1")
    api_key: SecretStr | None = Field(default=None, description="remote: sent as a Bearer token")
    model: str = Field(default="tts-1", description="remote: the model name sent to the server")
    voices: dict[str, str] = Field(
        default_factory=dict,
        description="remote: the server's voice for each preset (preset_aria -> alloy); unlisted presets send "
        "the preset's name without its prefix",
    )
    languages: list[str] = Field(
        default_factory=list, description="remote: the languages the server speaks (default: the embedded table's)"
    )
    timeout: float = Field(default=120, gt=0, description="remote: seconds to wait for one sentence")
    threads: int = Field(default=0, ge=0, description="local: CPU threads for Kokoro (0: all cores)")
    max_queue: int = Field(default=8, ge=1, description="sentences waiting per engine before 503")

    @model_validator(mode="after")
    def _remote_needs_a_url(self) -> TtsConfig:
        if self.engine != "local" and not self.base_url:
            raise ValueError(f"a {self.engine} TTS engine needs base_url")
        return self
