"""Audio in and out, with PyAV (FFmpeg). In: any container and codec FFmpeg reads (WAV, MP3, WebM/Opus, OGG, FLAC,
M4A...), resampled to 16 kHz mono float32, the form speech models take. Out: WAV, and the formats OpenAI's speech
API names. Both are CPU work: callers run them in a worker thread.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream

from aigw.engines.stt.base import SAMPLE_RATE, Audio
from aigw.errors import InvalidField, PayloadTooLarge, UnsupportedMediaType


@dataclass(frozen=True)
class Decoded:
    samples: Audio
    format: str  # the container FFmpeg recognised, e.g. "wav", "mp3", "matroska,webm", "ogg"

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def decode_audio(data: bytes, max_seconds: float) -> Decoded:
    """Decode and resample; 415 for what is not audio, 422 for no samples, 413 past `max_seconds`."""
    if not data:
        raise InvalidField("The audio file is empty", code="empty_audio")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as exc:
        raise UnsupportedMediaType(
            "The file is not audio that can be decoded (WAV, MP3, WebM/Opus, OGG, FLAC, M4A)", code="unsupported_audio"
        ) from exc
    with container:
        if not container.streams.audio:
            raise UnsupportedMediaType("The file has no audio stream", code="unsupported_audio")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        limit = int(max_seconds * SAMPLE_RATE)
        parts: list[Audio] = []
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
                    total += parts[-1].shape[0]
                if total > limit:
                    raise PayloadTooLarge(f"The audio is longer than {max_seconds:g} seconds", code="audio_too_long")
            for out in resampler.resample(None):  # what the resampler still holds
                parts.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        except (av.error.FFmpegError, ValueError) as exc:
            if not parts:
                raise UnsupportedMediaType("The audio could not be decoded", code="unsupported_audio") from exc
            # A truncated file: keep what decoded, as players do.
        format_name = container.format.name
    samples = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    if samples.size == 0:
        raise InvalidField("The audio has no samples", code="empty_audio")
    return Decoded(samples[:limit], format_name)


def resample(samples: Audio, rate: int, to_rate: int) -> Audio:
    """Mono float32 samples at another rate (FFmpeg's resampler, filtered against aliasing)."""
    if rate == to_rate or samples.size == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    parts = [out.to_ndarray().reshape(-1) for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def shift_pitch(samples: Audio, rate: int, factor: float) -> Audio:
    """Pitch times `factor` by resampling, which also divides the duration by it (the caller slows the voice to
    make up for that). Formants move with the pitch, as they do between speakers; within 0.8-1.25 it stays
    natural."""
    if abs(factor - 1.0) < 1e-3:
        return samples
    return resample(samples, round(rate * factor), rate)


def wav_bytes(samples: Audio, rate: int) -> bytes:
    """A RIFF WAV, 16-bit PCM mono: what every player and the seed's clients take."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


ENCODINGS = {  # format -> (container, codec, media type); what OpenAI's speech API names and FFmpeg writes
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    "aac": ("adts", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
}


def encode_audio(samples: Audio, rate: int, kind: str) -> tuple[bytes, str]:
    """The samples in `kind` (wav, pcm, mp3, opus, aac, flac), with its media type."""
    if kind == "wav":
        return wav_bytes(samples, rate), "audio/wav"
    if kind == "pcm":  # OpenAI's pcm: raw 24 kHz 16-bit little-endian
        pcm = (np.clip(resample(samples, rate, 24_000), -1.0, 1.0) * 32767.0).astype("<i2")
        return pcm.tobytes(), "audio/pcm"
    container_format, codec, media_type = ENCODINGS[kind]
    return encode_with(samples, rate, container_format, codec, 48_000 if codec == "libopus" else rate), media_type


def encode_with(samples: Audio, rate: int, container_format: str, codec: str, out_rate: int) -> bytes:
    """Mono float32 samples encoded by FFmpeg's `codec` at `out_rate` into a `container_format` file."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = cast(AudioStream, container.add_stream(codec, rate=out_rate))
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = 0
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()
