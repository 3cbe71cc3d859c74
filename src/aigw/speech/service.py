"""Transcription as a service: bytes and an optional language in, a transcript out. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio

from aigw.engines.stt.base import SttEngine, Transcript
from aigw.errors import InvalidField
from aigw.speech.audio import decode_audio

_ALIASES = {"nb": "no", "iw": "he", "in": "id"}  # Bokmål is Whisper's "no"; two codes ISO withdrew


def language_code(language: str | None, known: frozenset[str]) -> str | None:
    """An ISO 639-1 code from what a client sends ("en", "EN", "en-US", "en_GB"); None for detection."""
    if language is None or not language.strip() or language.strip().lower() == "auto":
        return None
    code = language.strip().lower().replace("_", "-").split("-")[0]
    code = _ALIASES.get(code, code)
    if code not in known:
        raise InvalidField(
            f"Unknown or unsupported language {language!r}: use an ISO 639-1 code such as en, fr or ja",
            code="unsupported_language",
        )
    return code


class SpeechService:
    def __init__(self, stt: SttEngine, max_seconds: float) -> None:
        self.stt = stt
        self.max_seconds = max_seconds

    async def transcribe(self, data: bytes, language: str | None = None, *, words: bool = False) -> Transcript:
        """Decode any audio format (off the event loop), then transcribe it; silence gives an empty text."""
        code = language_code(language, self.stt.languages())
        decoded = await asyncio.to_thread(decode_audio, data, self.max_seconds)
        return await self.stt.transcribe(decoded.samples, language=code, words=words)
