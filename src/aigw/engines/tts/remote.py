"""Remote speech: an OpenAI-compatible speech server (`POST {base_url}/audio/speech`: OpenAI, vLLM, Kokoro-FastAPI,
another aigw) or a Chatterbox TTS API server, which also clones: a clone's recording goes with each sentence to
`POST {base_url}/audio/speech/upload` as its reference audio, and the seed's `exaggeration`, `temperature` and
`cfg_weight` go through as they are (they are Chatterbox's own).
"""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import av
import numpy as np
import orjson

from aigw.engines.llm.upstream import UpstreamClient
from aigw.engines.tts.base import Prosody, Speaker, Speech, TtsConfig
from aigw.errors import EngineUnavailable
from aigw.speech.languages import LANGUAGES

_READY_TIMEOUT = 3.0


def decode_speech(data: bytes, name: str) -> Speech:
    """The server's audio (WAV, or whatever FFmpeg reads) as float32 mono at its own rate."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.audio[0]
            rate = stream.rate or 24_000
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            parts = [
                out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in resampler.resample(frame)
            ]
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise EngineUnavailable(f"{name}: the reply is not audio") from exc
    return Speech(np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32), rate)


class RemoteTtsEngine:
    modality = "tts"

    def __init__(self, config: TtsConfig) -> None:
        assert config.base_url is not None
        self.kind = config.engine  # "openai" or "chatterbox"
        self.model = config.model
        self.model_id = f"{self.kind}:{config.model}"
        self.name = f"tts/{self.kind}@{config.base_url.split('://')[-1].split('/')[0]}"
        self._base = config.base_url.rstrip("/")
        self._voices = config.voices
        self._languages = frozenset(config.languages or LANGUAGES)
        api_key = config.api_key.get_secret_value() if config.api_key else None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(self.name, headers=headers, timeout=config.timeout)

    def languages(self) -> frozenset[str]:
        return self._languages

    async def ready(self) -> bool:
        url = self._base + "/models" if self.kind == "openai" else self._root() + "/health"
        return await self._client.ok(url, _READY_TIMEOUT)

    def _root(self) -> str:
        return self._base[: -len("/v1")] if self._base.endswith("/v1") else self._base

    async def synthesize(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:
        voice = self._voice(speaker)
        if self.kind == "chatterbox":
            fields: dict[str, Any] = {"input": text, "language": language, **prosody.raw}
            if speaker.reference is not None and speaker.reference.is_file():
                form = aiohttp.FormData()
                for key, value in fields.items():
                    form.add_field(key, str(value))
                form.add_field(
                    "voice_file", speaker.reference.read_bytes(), filename="reference.wav", content_type="audio/wav"
                )
                return decode_speech(
                    await self._client.post_bytes(self._base + "/audio/speech/upload", form), self.name
                )
            body = {**fields, "voice": voice, "response_format": "wav"}
        else:
            body = {
                "model": self.model,
                "input": text,
                "voice": voice,
                "response_format": "wav",
                "speed": round(float(np.clip(speaker.speed * prosody.pace, 0.25, 4.0)), 3),
            }
        return decode_speech(await self._client.post_bytes(self._base + "/audio/speech", orjson.dumps(body)), self.name)

    def _voice(self, speaker: Speaker) -> str:
        name = speaker.remote_voice or "preset_aria"
        return self._voices.get(name, name.removeprefix("preset_"))

    async def close(self) -> None:
        await self._client.close()
