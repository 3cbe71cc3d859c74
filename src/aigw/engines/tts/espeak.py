"""Embedded speech for every other language: eSpeak NG (formant synthesis, 100+ languages, ~20 ms a sentence).

It sounds robotic, but it is intelligible and it speaks languages no shipped neural voice does. It runs as the
Debian `espeak-ng` program, one process per sentence (text on stdin, WAV on stdout), so nothing of its global
state is shared between requests. A speaker's variant (`f3`, `m2`...) and pitch carry over; `cfg_weight` sets
the rate in words a minute; espeak-ng has no sampling and no expressiveness setting.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import wave

import numpy as np

from aigw.engines.tts.base import Prosody, Speaker, Speech
from aigw.errors import EngineBusy, EngineUnavailable

PROGRAM = "espeak-ng"
WORDS_PER_MINUTE = 165
_CONCURRENT = 2  # processes at once; each takes tens of milliseconds


class EspeakEngine:
    modality = "tts"
    model_id = "espeak-ng"
    name = "tts/espeak-ng"

    def __init__(self, languages: dict[str, str], max_queue: int) -> None:
        self._voices = languages  # ISO 639-1 -> espeak-ng voice name
        self._slots = asyncio.Semaphore(_CONCURRENT)
        self._max_queue = max_queue
        self._waiting = 0

    def languages(self) -> frozenset[str]:
        return frozenset(self._voices)

    async def ready(self) -> bool:
        return shutil.which(PROGRAM) is not None

    async def synthesize(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:
        program = shutil.which(PROGRAM)
        if program is None:
            raise EngineUnavailable("espeak-ng is not installed (Debian package espeak-ng); run `make run`")
        if self._waiting >= self._max_queue:
            raise EngineBusy(
                "espeak-ng has too many sentences in hand; try again shortly", headers={"Retry-After": "1"}
            )
        voice = self._voices.get(language, language)
        if speaker.espeak:
            voice = f"{voice}+{speaker.espeak}"
        rate = round(WORDS_PER_MINUTE * speaker.speed * prosody.pace)
        pitch = round(float(np.clip(50 * speaker.pitch, 0, 99)))
        command = [program, "--stdout", "-b", "1", "-v", voice, "-s", str(rate), "-p", str(pitch)]
        self._waiting += 1
        try:
            async with self._slots:
                process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                try:
                    out, err = await process.communicate(text.encode())
                except asyncio.CancelledError:
                    process.kill()
                    await process.wait()
                    raise
        finally:
            self._waiting -= 1
        if process.returncode != 0 or not out:
            raise EngineUnavailable(f"espeak-ng failed: {err.decode(errors='replace').strip()[:200]}")
        return _read_wav(out)

    async def close(self) -> None:
        return None


def _read_wav(data: bytes) -> Speech:
    with wave.open(io.BytesIO(data)) as wav:
        rate = wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return Speech(samples, rate)
