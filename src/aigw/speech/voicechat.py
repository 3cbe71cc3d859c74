"""Voice chat: a recording in; what was heard, what the assistant answered, and that answer spoken, out.

Speech to text, then chat with the user's knowledge-base context (the same chat service as /api/chat), then
text to speech. Synthesis starts with the reply's first complete sentence while the model writes the rest, so a
short answer's audio is ready soon after its last token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from aigw.chat.service import ChatService
from aigw.engines.llm.base import ChatMessage, ChatOptions, ChatRequest, TextDelta
from aigw.engines.stt.base import Transcript
from aigw.engines.tts.base import Prosody, Speaker, Speech
from aigw.errors import InvalidField
from aigw.speech.service import SpeechService
from aigw.speech.tts import OUTPUT_RATE, PAUSE_SECONDS, TtsService, sentence_boundary, split_sentences

log = logging.getLogger("aigw.speech")

REPLY_TOKENS = 300  # a spoken answer is short; this bounds one that runs on
SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your reply will be spoken aloud: answer in one to three short sentences, "
    "in the language the user speaks, in plain words without lists, code or markdown."
)


@dataclass
class VoiceReply:
    transcript: Transcript
    text: str  # the assistant's reply
    language: str  # the language it was spoken in
    speech: Speech
    sources: list[dict[str, object]]


class SentenceBuffer:
    """Tokens in; each complete sentence out as soon as the text after it has begun."""

    def __init__(self) -> None:
        self.text = ""
        self._pending = ""

    def add(self, piece: str) -> list[str]:
        self.text += piece
        self._pending += piece
        end = sentence_boundary(self._pending)
        if not end:
            return []
        done, self._pending = self._pending[:end], self._pending[end:]
        return split_sentences(done)

    def rest(self) -> list[str]:
        done, self._pending = self._pending, ""
        return split_sentences(done)


class VoiceChat:
    def __init__(self, stt: SpeechService, chat: ChatService, tts: TtsService) -> None:
        self.stt = stt
        self.chat = chat
        self.tts = tts

    async def reply(
        self,
        user_id: int,
        audio: bytes,
        history: list[ChatMessage],
        speaker: Speaker,
        language: str | None = None,
        model: str | None = None,
    ) -> VoiceReply:
        transcript = await self.stt.transcribe(audio, language)
        if not transcript.text.strip():
            raise InvalidField("No speech was heard in the recording", code="no_speech")
        spoken_language = self._reply_language(language, transcript.language)
        messages = list(history)
        if not any(m.role == "system" for m in messages):
            messages.insert(0, ChatMessage(role="system", content=SYSTEM_PROMPT))
        messages.append(ChatMessage(role="user", content=transcript.text))
        options = ChatOptions(num_predict=REPLY_TOKENS)
        session = await self.chat.start(user_id, model, ChatRequest(messages=messages, options=options))
        buffer = SentenceBuffer()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        speaking = asyncio.create_task(self._speak_all(queue, spoken_language, speaker))
        try:
            async for event in session.events():
                if isinstance(event, TextDelta):
                    for sentence in buffer.add(event.text):
                        queue.put_nowait(sentence)
            for sentence in buffer.rest():
                queue.put_nowait(sentence)
            queue.put_nowait(None)
            parts = await speaking
        finally:
            if not speaking.done():
                speaking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaking
        text = buffer.text.strip()
        if not parts:
            raise InvalidField("The assistant's reply had nothing to say aloud", code="empty_reply")
        speech = Speech(np.concatenate(parts), OUTPUT_RATE)
        return VoiceReply(transcript, text, spoken_language, speech, session.sources)

    async def _speak_all(self, queue: asyncio.Queue[str | None], language: str, speaker: Speaker) -> list[np.ndarray]:
        parts: list[np.ndarray] = []
        pause = np.zeros(round(PAUSE_SECONDS * OUTPUT_RATE), np.float32)
        while (sentence := await queue.get()) is not None:
            async for speech in self.tts.stream(sentence, language, speaker, Prosody()):
                parts += [speech.samples, pause]
        return parts[:-1]

    def _reply_language(self, asked: str | None, heard: str) -> str:
        """The language asked for, else the one heard if we speak it, else English."""
        if asked:
            return self.tts.language(asked)
        return heard if heard in self.tts.languages() else "en"
