"""Speech-to-text engines: the protocol in `base`, embedded faster-whisper in `whisper`, OpenAI-compatible servers
in `remote`."""

from __future__ import annotations

from pathlib import Path

from aigw.engines.stt.base import SttConfig, SttEngine


def build_stt_engine(config: SttConfig, models_dir: Path) -> SttEngine:
    """The configured speech-to-text engine: embedded faster-whisper, or an OpenAI-compatible server."""
    if config.engine == "openai":
        from aigw.engines.stt.remote import RemoteSttEngine

        return RemoteSttEngine(config)
    from aigw.engines.stt.whisper import WhisperEngine

    return WhisperEngine(config, models_dir)
