"""Remote speech-to-text over the OpenAI transcription API (`POST {base_url}/audio/transcriptions`): OpenAI, a
faster-whisper server, vLLM, or another aigw. The audio goes as 16 kHz 16-bit WAV; `verbose_json` with segment
(and, on request, word) times comes back. Such servers name the language ("english") and most do not report
their confidence: a detected language then has `language_probability` 0, a given one 1."""

from __future__ import annotations

from typing import Any

import aiohttp

from aigw.engines.llm.upstream import UpstreamClient
from aigw.engines.stt.base import SAMPLE_RATE, Audio, Segment, SttConfig, Transcript, Word, whisper_languages
from aigw.errors import EngineUnavailable
from aigw.speech.audio import wav_bytes

_READY_TIMEOUT = 3.0


class RemoteSttEngine:
    modality = "stt"

    def __init__(self, config: SttConfig) -> None:
        assert config.base_url is not None
        self.model = config.model
        self.model_id = f"openai:{config.model}"
        self.name = f"stt/{config.model}@{config.base_url.split('://')[-1].split('/')[0]}"
        base_url = config.base_url.rstrip("/")
        self._url = base_url + "/audio/transcriptions"
        self._ready_url = base_url + "/models"
        api_key = config.api_key.get_secret_value() if config.api_key else None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(self.name, headers=headers, timeout=config.timeout)
        self._names = whisper_languages()
        self._codes = {name: code for code, name in self._names.items()}

    def languages(self) -> frozenset[str]:
        return frozenset(self._names)

    async def ready(self) -> bool:
        return await self._client.ok(self._ready_url, _READY_TIMEOUT)

    async def transcribe(self, audio: Audio, *, language: str | None = None, words: bool = False) -> Transcript:
        form = aiohttp.FormData()
        form.add_field("file", wav_bytes(audio, SAMPLE_RATE), filename="audio.wav", content_type="audio/wav")
        form.add_field("model", self.model)
        form.add_field("response_format", "verbose_json")
        form.add_field("timestamp_granularities[]", "segment")
        if words:
            form.add_field("timestamp_granularities[]", "word")
        if language:
            form.add_field("language", language)
        reply = await self._client.post_form(self._url, form)
        try:
            return self._transcript(reply, audio, language)
        except (KeyError, TypeError, ValueError) as exc:  # a reply that is not the protocol's: the engine's fault
            raise EngineUnavailable(f"{self.name}: malformed transcription reply: {exc!r}") from exc

    def _transcript(self, reply: Any, audio: Audio, language: str | None) -> Transcript:
        if not isinstance(reply, dict) or not isinstance(reply.get("text"), str):
            raise EngineUnavailable(f"{self.name}: the reply is not a verbose_json transcription")
        said = str(reply.get("language") or language or "")
        code = said if said in self._names else self._codes.get(said.lower(), said)
        words = [
            Word(float(w["start"]), float(w["end"]), str(w["word"]).strip(), float(w.get("probability", 1.0)))
            for w in reply.get("words") or []
        ]
        segments = [
            Segment(
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]).strip(),
                words=[w for w in words if s["start"] <= w.start < s["end"]],
            )
            for s in reply.get("segments") or []
        ]
        probability = reply.get("language_probability")
        return Transcript(
            text=reply["text"].strip(),
            language=code,
            language_probability=float(probability) if probability is not None else (1.0 if language else 0.0),
            duration=float(reply.get("duration") or len(audio) / SAMPLE_RATE),
            segments=segments,
        )

    async def close(self) -> None:
        await self._client.close()
