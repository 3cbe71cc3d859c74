"""A speaker encoder: what a voice sounds like, as a 256-dimension vector (Resemblyzer's GE2E model, 17 MB,
shipped inside its package). Two recordings of one speaker lie close (cosine), in any language.

Cloning with only embedded engines uses it to find the packaged voice nearest to a recording.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import warnings
from typing import Any

import numpy as np

from aigw.engines.stt.base import SAMPLE_RATE, Audio
from aigw.engines.worker import InferenceWorker
from aigw.errors import EngineUnavailable

log = logging.getLogger("aigw.engines.tts")


class SpeakerEncoder:
    modality = "speaker"
    name = "speaker/resemblyzer"
    model_id = "resemblyzer-ge2e"

    def __init__(self, max_queue: int = 4) -> None:
        self._encoder: Any = None
        self._lock = threading.Lock()
        self._worker = InferenceWorker("speaker", "The speaker encoder", max_queue, 1)

    async def ready(self) -> bool:
        return self._encoder is not None or importlib.util.find_spec("resemblyzer") is not None

    async def embed(self, audio: Audio) -> np.ndarray:
        """The unit-length embedding of 16 kHz mono speech."""
        return await self._worker.run(self.embed_now, audio)

    def embed_now(self, audio: Audio) -> np.ndarray:
        """`embed`, on the caller's thread (for work already off the event loop)."""
        encoder = self._load()
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(np.asarray(audio, np.float32), source_sr=SAMPLE_RATE)
        if wav.size < SAMPLE_RATE // 2:  # Resemblyzer's trimming left almost nothing: use the audio as it is
            wav = np.asarray(audio, np.float32)
        return np.asarray(encoder.embed_utterance(wav), np.float32)

    async def close(self) -> None:
        await self._worker.close()

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                try:
                    with warnings.catch_warnings():  # it imports pkg_resources and a SciPy namespace, deprecated
                        warnings.simplefilter("ignore")
                        from resemblyzer import VoiceEncoder

                    self._encoder = VoiceEncoder(device="cpu", verbose=False)
                except (ImportError, OSError, RuntimeError) as exc:
                    raise EngineUnavailable(f"The speaker encoder could not be loaded: {exc}") from exc
                log.info("speaker encoder loaded", extra={"model": self.model_id})
            return self._encoder
