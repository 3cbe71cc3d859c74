"""Voice cloning: check a recording, keep its speech, and find what the engines can do with it.

With a cloning engine (Chatterbox) the clone speaks with the recording itself. No cloning model ships with its
weights in a package, so with only the embedded engines a clone is an honest approximation: the speaker
encoder picks the packaged voice nearest to the recording (a blend of the two nearest when they are close), and
the recording's measured pitch and speaking rate, relative to that voice's, are applied. `GET /api/voices`
marks such a clone `"cloning": "approximate"`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aigw.engines.stt.base import SAMPLE_RATE, Audio
from aigw.engines.tts.base import Prosody, Speaker, TtsEngine
from aigw.engines.tts.kokoro import STYLES
from aigw.engines.tts.speaker import SpeakerEncoder
from aigw.errors import InvalidField
from aigw.speech.audio import decode_audio, resample

log = logging.getLogger("aigw.speech")

MIN_SECONDS, MAX_SECONDS = 5.0, 30.0  # of speech, after silence is trimmed
MAX_RECORDING_SECONDS = 120.0
REFERENCE_TEXT = (
    "Good morning, and thank you for calling. I will read the summary of the meeting for you. "
    "The project is on time, and the next review is planned for Thursday afternoon."
)
_PIPER = "piper"
_BLEND_TEMPERATURE = 0.02  # cosine-similarity gap at which the second voice still gets a third of the weight


@dataclass(frozen=True)
class Clone:
    audio: Audio  # the speech kept, 16 kHz mono, peak-normalised
    rate: int
    seconds: float
    speaker: Speaker
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    embedding: np.ndarray
    pitch_hz: float
    onsets_per_second: float


def keep_speech(audio: Audio) -> Audio:
    """The recording without its silences (faster-whisper's bundled Silero VAD), padded 0.1 s a side."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=300, speech_pad_ms=100))
    if not spans:
        return np.zeros(0, np.float32)
    return np.concatenate([audio[span["start"] : span["end"]] for span in spans]).astype(np.float32)


def voice_traits(audio: Audio) -> tuple[float, float]:
    """Median pitch (Hz) over the loud frames, and spectral onsets (syllable-like events) per second."""
    import librosa

    f0 = librosa.yin(audio, fmin=65, fmax=400, sr=SAMPLE_RATE, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=audio, frame_length=1024, hop_length=256)[0][: len(f0)]
    voiced = f0[: len(rms)][rms > np.median(rms)]
    pitch = float(np.median(voiced)) if voiced.size else 0.0
    onsets = librosa.onset.onset_detect(y=audio, sr=SAMPLE_RATE, hop_length=256, units="time")
    return pitch, len(onsets) / max(len(audio) / SAMPLE_RATE, 1e-6)


class Cloner:
    def __init__(
        self,
        encoder: SpeakerEncoder,
        kokoro: TtsEngine | None,
        piper: TtsEngine | None,
        cache_dir: Path,
        *,
        uses_reference: bool,
    ) -> None:
        self.encoder = encoder
        self.kokoro = kokoro
        self.piper = piper
        self.cache = cache_dir / "voice-references.npz"
        self.uses_reference = uses_reference  # a cloning engine speaks with the recording itself
        self._references: dict[str, Reference] = {}
        self._lock = asyncio.Lock()

    async def analyse(self, data: bytes) -> Clone:
        """422 unless the recording holds 5-30 s of speech; then what the embedded engines make of it."""
        decoded = await asyncio.to_thread(decode_audio, data, MAX_RECORDING_SECONDS)
        speech = await asyncio.to_thread(keep_speech, decoded.samples)
        seconds = len(speech) / SAMPLE_RATE
        if seconds < MIN_SECONDS:
            raise InvalidField(
                f"The recording holds {seconds:.1f} s of speech; a voice needs {MIN_SECONDS:g}-{MAX_SECONDS:g} s",
                code="sample_too_short",
            )
        if seconds > MAX_SECONDS:
            raise InvalidField(
                f"The recording holds {seconds:.1f} s of speech; a voice needs {MIN_SECONDS:g}-{MAX_SECONDS:g} s "
                "(trim it)",
                code="sample_too_long",
            )
        speech = (speech / max(float(np.max(np.abs(speech))), 1e-6) * 0.9).astype(np.float32)
        if self.kokoro is None:  # a remote engine only: the recording is all there is
            return Clone(speech, SAMPLE_RATE, seconds, Speaker())
        references = await self.references()
        embedding = await self.encoder.embed(speech)
        pitch_hz, onsets = await asyncio.to_thread(voice_traits, speech)
        speaker, details = nearest(embedding, pitch_hz, onsets, references)
        return Clone(speech, SAMPLE_RATE, seconds, speaker, details)

    async def references(self) -> dict[str, Reference]:
        """Each packaged voice's embedding and traits, measured once and kept in the models dir."""
        async with self._lock:
            if not self._references:
                self._references = await asyncio.to_thread(self._load_cache)
            if not self._references:
                self._references = await self._measure()
                await asyncio.to_thread(self._save_cache)
        return self._references

    async def _measure(self) -> dict[str, Reference]:
        voices: list[tuple[str, TtsEngine, Speaker]] = []
        if self.piper is not None:
            voices.append((_PIPER, self.piper, Speaker(piper=True)))
        assert self.kokoro is not None
        voices += [(style, self.kokoro, Speaker(kokoro=((style, 1.0),))) for style in STYLES]
        measured = {}
        for name, engine, speaker in voices:
            speech = await engine.synthesize(REFERENCE_TEXT, "en", speaker, Prosody())
            audio = await asyncio.to_thread(resample, speech.samples, speech.rate, SAMPLE_RATE)
            pitch_hz, onsets = await asyncio.to_thread(voice_traits, audio)
            measured[name] = Reference(await self.encoder.embed(audio), pitch_hz, onsets)
        log.info("voice references measured", extra={"voices": len(measured)})
        return measured

    def _load_cache(self) -> dict[str, Reference]:
        try:
            with np.load(self.cache) as npz:
                names = [str(name) for name in npz["names"]]
                return {
                    name: Reference(npz["embeddings"][i], float(npz["pitch"][i]), float(npz["onsets"][i]))
                    for i, name in enumerate(names)
                }
        except (OSError, KeyError, ValueError):
            return {}

    def _save_cache(self) -> None:
        names = list(self._references)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache.with_name(f".{self.cache.name}.partial.npz")
        np.savez(
            partial,
            names=np.array(names),
            embeddings=np.stack([self._references[n].embedding for n in names]),
            pitch=np.array([self._references[n].pitch_hz for n in names]),
            onsets=np.array([self._references[n].onsets_per_second for n in names]),
        )
        partial.replace(self.cache)


def nearest(
    embedding: np.ndarray, pitch_hz: float, onsets: float, references: dict[str, Reference]
) -> tuple[Speaker, dict[str, Any]]:
    """The packaged voice nearest to `embedding`, blended with the runner-up by how close it comes, with the
    recording's pitch and rate relative to the chosen voice's."""
    similarity = {name: float(np.dot(embedding, ref.embedding)) for name, ref in references.items()}
    ranked = sorted(similarity, key=similarity.__getitem__, reverse=True)
    best = ranked[0]
    styles = [name for name in ranked if name != _PIPER]
    first, second = styles[0], styles[1]
    gap = similarity[first] - similarity[second]
    weight = 1.0 / (1.0 + np.exp(-gap / _BLEND_TEMPERATURE))  # 0.5 when equal, ~1 when far apart
    blend = (
        ((first, round(weight, 3)),) if weight > 0.9 else ((first, round(weight, 3)), (second, round(1 - weight, 3)))
    )
    ref = references[best]
    pitch = float(np.clip(pitch_hz / ref.pitch_hz, 0.8, 1.25)) if pitch_hz > 0 and ref.pitch_hz > 0 else 1.0
    speed = float(np.clip(onsets / ref.onsets_per_second, 0.8, 1.25)) if ref.onsets_per_second > 0 else 1.0
    speaker = Speaker(kokoro=blend, piper=best == _PIPER, pitch=round(pitch, 3), speed=round(speed, 3))
    details = {"nearest": best, "similarity": {name: round(similarity[name], 3) for name in ranked}}
    return speaker, details
