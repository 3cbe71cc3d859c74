"""Voices: six presets in code, and each user's clones in the database with their recordings on disk.

A preset is an engine speaker: for English, Piper's voice or a Kokoro style; for Kokoro's languages a style or
a blend of two; for the rest an espeak-ng variant; each with its own pitch and pace. A clone is what
`aigw.speech.cloning` measured from a recording. Clone ids are `clone_<slug of the name>`, unique per user: a
second clone with a name already taken gets `_2`, `_3`... Another user's clone is a 404; presets cannot be
deleted (403).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aigw.engines.tts.base import Prosody, Speaker
from aigw.errors import Conflict, Forbidden, InvalidField, NotFound
from aigw.speech.audio import wav_bytes
from aigw.speech.cloning import Cloner
from aigw.speech.tts import TtsService
from aigw.store.models import Voice

log = logging.getLogger("aigw.speech")

DEFAULT_VOICE = "preset_aria"
PREVIEW_TEXT = "Hello! I am {name}. I can read your documents, your messages and your answers aloud."


@dataclass(frozen=True)
class VoiceInfo:
    voice_id: str
    name: str
    type: str  # "preset" or "clone"
    speaker: Speaker
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # for clones: what the approximation chose


PRESETS: dict[str, VoiceInfo] = {
    voice.voice_id: dataclasses.replace(voice, speaker=dataclasses.replace(voice.speaker, remote_voice=voice.voice_id))
    for voice in (
        VoiceInfo(
            "preset_aria",
            "Aria",
            "preset",
            Speaker(piper=True, kokoro=(("jm_kumo", 1.0),), espeak=""),
            "Warm and clear; English in the Piper voice, the fastest",
        ),
        VoiceInfo(
            "preset_nova",
            "Nova",
            "preset",
            Speaker(kokoro=(("jf_alpha", 1.0),), espeak="f3"),
            "Bright, higher voice",
        ),
        VoiceInfo(
            "preset_sage",
            "Sage",
            "preset",
            Speaker(kokoro=(("jf_gongitsune", 1.0),), espeak="f2", speed=0.94),
            "Calm, measured pace",
        ),
        VoiceInfo(
            "preset_luna",
            "Luna",
            "preset",
            Speaker(kokoro=(("jf_nezumi", 1.0),), espeak="f4", pitch=1.06),
            "Light and lively",
        ),
        VoiceInfo(
            "preset_ember",
            "Ember",
            "preset",
            Speaker(kokoro=(("jf_tebukuro", 0.7), ("jf_alpha", 0.3)), espeak="f1", speed=1.05),
            "Soft, a blend of two styles",
        ),
        VoiceInfo(
            "preset_atlas",
            "Atlas",
            "preset",
            Speaker(piper=True, kokoro=(("jm_kumo", 0.8), ("jf_tebukuro", 0.2)), espeak="m3", pitch=0.88, speed=0.95),
            "Deep and steady",
        ),
    )
}


def slug(name: str) -> str:
    """ "My Voice" -> "my_voice"; accents dropped, anything else not a letter or digit becomes one `_`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:60] or "voice"


def _speaker_json(speaker: Speaker, measured: dict[str, Any]) -> str:
    """What the clone is spoken with, and what was measured to choose it (shown in the voice listing)."""
    chosen = {"kokoro": speaker.kokoro, "pitch": speaker.pitch, "speed": speaker.speed, "piper": speaker.piper}
    return json.dumps({**chosen, "measured": measured})


def _write_atomically(path: Path, data: bytes) -> None:
    """A file that is either whole or absent, whatever happens while it is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def _speaker_from(row: Voice, samples_dir: Path) -> Speaker:
    data = json.loads(row.speaker)
    return Speaker(
        kokoro=tuple((str(name), float(weight)) for name, weight in data["kokoro"]),
        piper=bool(data.get("piper", False)),
        pitch=float(data["pitch"]),
        speed=float(data["speed"]),
        reference=samples_dir / row.sample,
        remote_voice=row.voice_id,
    )


class VoiceService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], tts: TtsService, cloner: Cloner, data_dir: Path
    ) -> None:
        self.sessions = sessions
        self.tts = tts
        self.cloner = cloner
        self.samples = data_dir / "voices"
        self.previews = data_dir / "voices" / "previews"
        self._preview_locks: dict[str, asyncio.Lock] = {}

    async def list(self, user_id: int) -> list[VoiceInfo]:
        async with self.sessions() as db:
            rows = (await db.scalars(select(Voice).where(Voice.user_id == user_id).order_by(Voice.id))).all()
        return [*PRESETS.values(), *(self._clone_info(row) for row in rows)]

    async def get(self, user_id: int, voice_id: str | None) -> VoiceInfo:
        """A preset, or one of the user's clones; 404 for anything else (another user's clone included)."""
        voice_id = voice_id or DEFAULT_VOICE
        if voice_id in PRESETS:
            return PRESETS[voice_id]
        async with self.sessions() as db:
            row = await db.scalar(select(Voice).where(Voice.user_id == user_id, Voice.voice_id == voice_id))
        if row is None:
            raise NotFound(f"No voice {voice_id!r}; GET /api/voices lists yours", code="voice_not_found")
        return self._clone_info(row)

    async def clone(self, user_id: int, name: str, data: bytes) -> VoiceInfo:
        """Measure the recording, keep it normalised, and record the clone under a free `clone_<slug>` id."""
        name = " ".join(name.split())
        if not name:
            raise InvalidField("The voice needs a name", code="invalid_name")
        clone = await self.cloner.analyse(data)
        sample = f"{user_id}-{secrets.token_hex(8)}.wav"
        await asyncio.to_thread(_write_atomically, self.samples / sample, wav_bytes(clone.audio, clone.rate))
        base = f"clone_{slug(name)}"
        try:
            for attempt in range(1, 100):
                voice_id = base if attempt == 1 else f"{base}_{attempt}"
                try:
                    async with self.sessions() as db, db.begin():
                        row = Voice(
                            user_id=user_id,
                            voice_id=voice_id,
                            name=name,
                            speaker=_speaker_json(clone.speaker, clone.details),
                            sample=sample,
                            seconds=clone.seconds,
                        )
                        db.add(row)
                    log.info("voice cloned", extra={"user_id": user_id, "voice_id": voice_id, **clone.details})
                    return self._clone_info(row)
                except IntegrityError:
                    continue  # the id is taken (perhaps by a clone made at the same moment): try the next
            raise Conflict(f"Too many voices named {name!r}", code="voice_exists")
        except BaseException:
            (self.samples / sample).unlink(missing_ok=True)
            raise

    async def delete(self, user_id: int, voice_id: str) -> None:
        if voice_id in PRESETS:
            raise Forbidden("Preset voices cannot be deleted", code="preset_voice")
        async with self.sessions() as db, db.begin():
            row = await db.scalar(select(Voice).where(Voice.user_id == user_id, Voice.voice_id == voice_id))
            if row is None:
                raise NotFound(f"No voice {voice_id!r}", code="voice_not_found")
            await db.execute(delete(Voice).where(Voice.id == row.id))
        (self.samples / row.sample).unlink(missing_ok=True)
        self._preview_path(row.sample).unlink(missing_ok=True)

    async def preview(self, user_id: int, voice_id: str) -> bytes:
        """A WAV of the voice saying a sentence, synthesised on the first request and kept."""
        voice = await self.get(user_id, voice_id)
        key = voice.voice_id if voice.type == "preset" else str(voice.speaker.reference.name)  # type: ignore[union-attr]
        path = self._preview_path(key)
        lock = self._preview_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not path.exists():
                speech = await self.tts.speak(PREVIEW_TEXT.format(name=voice.name), "en", voice.speaker, Prosody())
                await asyncio.to_thread(_write_atomically, path, wav_bytes(speech.samples, speech.rate))
        return await asyncio.to_thread(path.read_bytes)

    def _preview_path(self, key: str) -> Path:
        return self.previews / f"{Path(key).stem}.wav"

    def _clone_info(self, row: Voice) -> VoiceInfo:
        speaker = _speaker_from(row, self.samples)
        details = {
            "cloning": "reference" if self.cloner.uses_reference else "approximate",
            **json.loads(row.speaker).get("measured", {}),
            "styles": {name: round(weight, 3) for name, weight in speaker.kokoro},
            "pitch": round(speaker.pitch, 3),
            "speed": round(speaker.speed, 3),
            "seconds": round(row.seconds, 2),
        }
        return VoiceInfo(row.voice_id, row.name, "clone", speaker, details=details)
