"""Speech to text through real HTTP with the packaged Whisper base model: speech spoken by the packaged Piper voice
comes back as its words from every container a client sends, with the seed's fields; the OpenAI SDK's
`audio.transcriptions.create` works; what is not audio, or is empty, is a clear 4xx."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import Gateway, start_gateway
from speech_files import CONTAINERS, spoken

SENTENCE = "The lighthouse keeper writes down the height of the tides every morning."


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def mostly_right(heard: str, said: str = SENTENCE) -> bool:
    """At least 80% of the spoken words were heard (Whisper base on this voice gets nearly all)."""
    expected = words(said)
    got = set(words(heard))
    return sum(word in got for word in expected) >= 0.8 * len(expected)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-stt"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.new_user(rate_limit=1_000_000).key, timeout=120)


def stt(client: httpx.Client, data: bytes, name: str = "speech.wav", **form: str) -> httpx.Response:
    return client.post("/api/stt", files={"file": (name, data)}, data=form)


@pytest.mark.parametrize("kind", list(CONTAINERS))
def test_speech_in_any_container_comes_back_as_its_words(client: httpx.Client, kind: str) -> None:
    resp = stt(client, spoken(SENTENCE, kind), f"speech.{kind}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"text", "language", "language_probability", "duration", "segments"}
    assert mostly_right(body["text"]), body["text"]
    assert body["language"] == "en" and 0.5 < body["language_probability"] <= 1
    assert 3.0 < body["duration"] < 6.0  # the sentence is ~4.3 s; containers pad a little
    assert body["segments"] and all(set(s) == {"start", "end", "text"} for s in body["segments"])
    assert all(0 <= s["start"] < s["end"] <= body["duration"] + 0.5 for s in body["segments"])
    assert mostly_right(" ".join(s["text"] for s in body["segments"]))


def test_a_given_language_skips_detection_and_must_be_known(client: httpx.Client) -> None:
    audio = spoken(SENTENCE)
    given = stt(client, audio, language="EN-us").json()
    assert given["language"] == "en" and given["language_probability"] == 1
    assert mostly_right(given["text"])
    resp = stt(client, audio, language="xx")
    assert resp.status_code == 422 and resp.json()["code"] == "unsupported_language"


def test_what_is_not_audio_is_refused_clearly(client: httpx.Client) -> None:
    for data, name, status, code in [
        (b"%PDF-1.7 not audio at all", "doc.pdf", 415, "unsupported_audio"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "broken.wav", 415, "unsupported_audio"),
        (b"", "empty.wav", 422, "empty_audio"),
    ]:
        resp = stt(client, data, name)
        assert resp.status_code == status, (name, resp.text)
        assert resp.json()["code"] == code
    missing = client.post("/api/stt", data={"language": "en"})
    assert missing.status_code == 422


def test_silence_is_an_empty_transcript(client: httpx.Client) -> None:
    import numpy as np

    from speech_files import encode

    resp = stt(client, encode(np.zeros(16000 * 2, np.float32), 16000, "wav"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == "" and resp.json()["segments"] == []


def test_transcription_needs_a_key(gateway: Gateway) -> None:
    resp = gateway.client().post("/api/stt", files={"file": ("a.wav", spoken(SENTENCE))})
    assert resp.status_code == 401


def test_the_openai_sdk_transcribes(gateway: Gateway, client: httpx.Client, tmp_path: Path) -> None:
    key = client.headers["Authorization"].split()[1]
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, timeout=120)
    path = tmp_path / "question.mp3"
    path.write_bytes(spoken(SENTENCE, "mp3"))
    with path.open("rb") as f:
        plain = sdk.audio.transcriptions.create(model="whisper-1", file=f)
    assert mostly_right(plain.text)
    with path.open("rb") as f:
        verbose: Any = sdk.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
        )
    assert verbose.language == "english" and verbose.duration > 3 and verbose.segments
    assert mostly_right(" ".join(w.word for w in verbose.words))
    with path.open("rb") as f:
        srt = sdk.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt")
    assert str(srt).startswith("1\n00:00:00,") and "-->" in str(srt)


async def test_a_short_clip_is_encoded_once_even_when_its_language_is_detected(
    shared_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faster-whisper encodes a clip's 30 s window once to detect its language and again to decode it; the engine
    takes the second pass from the first (half the work for a short question), with the same transcript."""
    import faster_whisper

    from aigw.engines.stt.base import SttConfig
    from aigw.engines.stt.whisper import WhisperEngine
    from aigw.speech.audio import decode_audio

    passes: list[int] = []
    original = faster_whisper.WhisperModel.encode

    def counted(self: Any, features: Any) -> Any:
        passes.append(1)
        return original(self, features)

    monkeypatch.setattr(faster_whisper.WhisperModel, "encode", counted)
    engine = WhisperEngine(SttConfig(), shared_models_dir)
    try:
        samples = decode_audio(spoken(SENTENCE), 600).samples
        detected = await engine.transcribe(samples)
        assert len(passes) == 1 and detected.language == "en" and mostly_right(detected.text)
        given = await engine.transcribe(samples, language="en")
        assert given.text == detected.text
    finally:
        await engine.close()


def test_a_remote_openai_compatible_engine_transcribes(gateway: Gateway, client: httpx.Client, tmp_path: Path) -> None:
    """With `AIGW_STT` naming an OpenAI-compatible server, /api/stt sends the audio there. The server here is
    another aigw (its /v1/audio/transcriptions is the real OpenAI protocol), with its own key."""
    import json

    upstream_key = client.headers["Authorization"].split()[1]
    stt_config = {"engine": "openai", "base_url": f"{gateway.url}/v1", "api_key": upstream_key}
    front = start_gateway(tmp_path / "front", AIGW_STT=json.dumps(stt_config))
    try:
        health = front.client().get("/health").json()
        assert any(name.startswith("stt/") and up for name, up in health["services"].items()), health
        user = front.client(front.new_user(rate_limit=1_000_000).key, timeout=120)
        resp = stt(user, spoken(SENTENCE, "webm"), "question.webm")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert set(body) == {"text", "language", "language_probability", "duration", "segments"}
        assert mostly_right(body["text"]) and body["language"] == "en"
        assert body["language_probability"] == 0  # the OpenAI protocol does not carry it
        assert body["segments"] and 3.0 < body["duration"] < 6.0
        given = stt(user, spoken(SENTENCE), language="en").json()
        assert given["language"] == "en" and given["language_probability"] == 1
    finally:
        front.stop()


async def test_tiny_en_is_a_packaged_english_only_choice() -> None:
    """`AIGW_STT={"model": "tiny.en"}` runs the English-only tiny model that ships whole in a package: it hears
    English, and knows no other language (a request for French is refused, not silently run as English)."""
    from aigw.engines.stt.base import SttConfig
    from aigw.engines.stt.whisper import WhisperEngine
    from aigw.errors import InvalidField
    from aigw.speech.service import SpeechService

    engine = WhisperEngine(SttConfig(model="tiny.en"), Path("unused: nothing is assembled for tiny.en"))
    try:
        assert await engine.ready() and engine.languages() == frozenset({"en"})
        service = SpeechService(engine, max_seconds=60)
        heard = await service.transcribe(spoken(SENTENCE, "mp3"))
        assert heard.language == "en" and mostly_right(heard.text), heard.text
        with pytest.raises(InvalidField):
            await service.transcribe(spoken(SENTENCE), "fr")
    finally:
        await engine.close()
