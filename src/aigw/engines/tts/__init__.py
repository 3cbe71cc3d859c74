"""Text-to-speech engines: the protocol in `base`; embedded Piper (English), Kokoro (16 languages) and espeak-ng
(the rest) in `piper`, `kokoro` and `espeak`; OpenAI-compatible and Chatterbox servers in `remote`; the speaker
encoder that approximates clones in `speaker`."""

from __future__ import annotations

from pathlib import Path

from aigw.engines.tts.base import TtsConfig, TtsEngine


def build_tts_engines(config: TtsConfig, models_dir: Path) -> tuple[dict[str, TtsEngine], TtsEngine | None]:
    """The embedded engines by name ("piper", "kokoro", "espeak"), and the remote engine if one is configured.

    The embedded engines are built in both cases (they load nothing until used): a clone's approximation needs
    Kokoro and Piper even when a remote engine speaks."""
    from aigw.engines.tts.espeak import EspeakEngine
    from aigw.engines.tts.kokoro import KokoroEngine
    from aigw.engines.tts.piper import PiperEngine
    from aigw.speech.languages import espeak_voices

    embedded: dict[str, TtsEngine] = {
        "piper": PiperEngine(config.max_queue),
        "kokoro": KokoroEngine(models_dir, threads=config.threads, max_queue=config.max_queue),
        "espeak": EspeakEngine(espeak_voices(), config.max_queue),
    }
    if config.engine == "local":
        return embedded, None
    from aigw.engines.tts.remote import RemoteTtsEngine

    return embedded, RemoteTtsEngine(config)
