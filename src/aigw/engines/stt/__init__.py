"""Speech-to-text engines: the protocol in `base`, the embedded faster-whisper engine in `whisper`."""

from __future__ import annotations

from pathlib import Path

from aigw.engines.stt.base import SttConfig, SttEngine


def build_stt_engine(config: SttConfig, models_dir: Path) -> SttEngine:
    """The configured speech-to-text engine (only the embedded one so far)."""
    from aigw.engines.stt.whisper import WhisperEngine

    return WhisperEngine(config, models_dir)
