"""Audio in: any container and codec FFmpeg reads (WAV, MP3, WebM/Opus, OGG, FLAC, M4A...), decoded with PyAV
and resampled to 16 kHz mono float32, the form speech models take. Runs in a worker thread (it is CPU work).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

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
