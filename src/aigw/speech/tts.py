"""Text to speech as a service: a text, a speaker and a language in; speech out, sentence by sentence.

`stream()` yields each sentence's audio as soon as it is synthesised (voicechat and the realtime socket send it
on at once; closing the stream stops before the next sentence). `speak()` joins them. The engine for a language
comes from the measured table in `aigw.speech.languages`, unless a remote engine is configured for everything.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping

import numpy as np

from aigw.engines.tts.base import Prosody, Speaker, Speech, TtsEngine
from aigw.errors import EngineUnavailable, InvalidField
from aigw.speech.audio import resample
from aigw.speech.languages import LANGUAGES
from aigw.speech.service import language_code

OUTPUT_RATE = 24_000
PAUSE_SECONDS = 0.18  # between two sentences
MAX_SENTENCE_CHARS = 300  # longer sentences are cut at a comma, then at a space

# A sentence ends at . ! ? … (and the Armenian, Arabic and Devanagari marks) before a space, or at a CJK mark.
_SENTENCE_END = re.compile(
    r"(?<=[.!?…։؟।])\s+|(?<=[.!?…][\"'”’)\]])\s+|(?<=[。！？])\s*|\n\s*\n|\n(?=\s*[-*•\d])"  # noqa: RUF001
)


def split_sentences(text: str) -> list[str]:
    """The text's sentences, none longer than MAX_SENTENCE_CHARS, empty ones dropped."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > MAX_SENTENCE_CHARS:
            cut = sentence.rfind(", ", 0, MAX_SENTENCE_CHARS)
            if cut < MAX_SENTENCE_CHARS // 3:
                cut = sentence.rfind(" ", 0, MAX_SENTENCE_CHARS)
            if cut <= 0:
                cut = MAX_SENTENCE_CHARS
            out.append(sentence[: cut + 1].strip())
            sentence = sentence[cut + 1 :].strip()
        if any(ch.isalnum() for ch in sentence):
            out.append(sentence)
    return out


def sentence_boundary(text: str) -> int:
    """Where the last complete sentence of `text` ends (0 when none has ended yet)."""
    end = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
    return end


class TtsService:
    def __init__(self, engines: Mapping[str, TtsEngine], remote: TtsEngine | None = None) -> None:
        self.engines = dict(engines)  # "piper", "kokoro", "espeak"
        self.remote = remote

    def languages(self) -> dict[str, str]:
        """ISO code -> English name, for every language some configured engine speaks."""
        if self.remote is not None:
            spoken = self.remote.languages()
            return {code: LANGUAGES[code].name if code in LANGUAGES else code for code in sorted(spoken)}
        return {code: language.name for code, language in LANGUAGES.items() if language.engine in self.engines}

    def language(self, language: str | None) -> str:
        """A client's language ("en", "EN", "pt-BR") as a listed code; 422 for one we do not speak."""
        code = language_code(language, frozenset(self.languages())) or "en"
        return code

    def engine_for(self, language: str, speaker: Speaker) -> TtsEngine:
        if self.remote is not None:
            return self.remote
        wanted = LANGUAGES[language].engine
        if wanted == "piper" and not speaker.piper and "kokoro" in self.engines:
            wanted = "kokoro"  # a preset or clone built on a Kokoro style speaks English with it too
        engine = self.engines.get(wanted)
        if engine is None:
            raise EngineUnavailable(f"No text-to-speech engine for {language!r} is configured")
        return engine

    async def stream(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> AsyncIterator[Speech]:
        """Each sentence's speech at OUTPUT_RATE, followed by a short pause, as soon as it is synthesised."""
        sentences = split_sentences(text)
        if not sentences:
            raise InvalidField("There is nothing to say: the text has no words", code="empty_text")
        engine = self.engine_for(language, speaker)
        pause = np.zeros(round(PAUSE_SECONDS * OUTPUT_RATE), np.float32)
        for i, sentence in enumerate(sentences):
            speech = await engine.synthesize(sentence, language, speaker, prosody)
            samples = resample(speech.samples, speech.rate, OUTPUT_RATE)
            if i < len(sentences) - 1:
                samples = np.concatenate([samples, pause])
            yield Speech(samples, OUTPUT_RATE)

    async def speak(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:
        parts = [speech.samples async for speech in self.stream(text, language, speaker, prosody)]
        return Speech(np.concatenate(parts) if parts else np.zeros(0, np.float32), OUTPUT_RATE)
