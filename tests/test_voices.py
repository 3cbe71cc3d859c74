"""Cloned voices and voice chat through real HTTP: a clone from a generated 10 s sample takes the packaged voice
nearest to it (and another sample another voice), samples outside 5-30 s of speech are refused, clones are
per user and deleting one removes its files; voicechat hears the question, answers with the chat model and
speaks the answer, with both headers, in English and in Spanish."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
import pytest

from conftest import Gateway, start_gateway
from speech_files import encode

LONG_TEXT = (
    "Every morning the harbour wakes before the town does. The fishing boats come in with the tide, and the "
    "gulls follow them along the pier. By nine o'clock the market is full of voices."
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Gateway]:
    models = [{"name": "qwen2.5-coder-0.5b", "backends": [{"engine": "llama", "n_ctx": 4096, "max_queue": 2}]}]
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-voices"),
        AIGW_MODELS_DIR=str(models_dir),
        AIGW_CHAT_MODELS=json.dumps(models),
        AIGW_PRELOAD_MODELS="true",
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.new_user(rate_limit=1_000_000).key, timeout=300)


def samples_of(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768, w.getframerate()


def sample(client: httpx.Client, voice_id: str, text: str = LONG_TEXT, language: str = "en", **knobs: float) -> bytes:
    resp = client.post("/api/tts", json={"text": text, "voice_id": voice_id, "language": language, **knobs})
    assert resp.status_code == 200, resp.text
    return resp.content


def clone(client: httpx.Client, name: str, audio: bytes, filename: str = "sample.wav") -> httpx.Response:
    return client.post("/api/voices/clone", data={"name": name}, files={"file": (filename, audio)})


def voices(client: httpx.Client) -> dict[str, dict[str, object]]:
    return {v["voice_id"]: v for v in client.get("/api/voices").json()["voices"]}


def test_a_clone_takes_the_packaged_voice_nearest_to_its_sample(client: httpx.Client) -> None:
    piper_sample = sample(client, "preset_aria")  # Piper's voice in English
    kokoro_sample = sample(client, "preset_nova")  # Kokoro's jf_alpha
    for audio in (piper_sample, kokoro_sample):
        seconds = len(samples_of(audio)[0]) / samples_of(audio)[1]
        assert 8 < seconds < 20, seconds
    first = clone(client, "Harbour Voice", encode(*samples_of(piper_sample), "webm"), "sample.webm")
    assert first.status_code == 200, first.text
    assert first.json() == {
        "voice_id": "clone_harbour_voice",
        "name": "Harbour Voice",
        "type": "clone",
        "cloning": "approximate",
    }
    second = clone(client, "Harbour Voice", kokoro_sample)
    assert second.status_code == 200, second.text
    assert second.json()["voice_id"] == "clone_harbour_voice_2"  # a name already taken gets a suffix
    listed = voices(client)
    a, b = listed["clone_harbour_voice"], listed["clone_harbour_voice_2"]
    assert a["type"] == b["type"] == "clone" and a["cloning"] == b["cloning"] == "approximate"
    assert a["approximation"]["nearest"] == "piper"  # type: ignore[index]
    assert b["approximation"]["nearest"] == "jf_alpha"  # type: ignore[index]
    # The clones speak, differently, and have previews.
    spoken_a = client.post("/api/tts", json={"text": "Hello from the harbour.", "voice_id": "clone_harbour_voice"})
    spoken_b = client.post("/api/tts", json={"text": "Hello from the harbour.", "voice_id": "clone_harbour_voice_2"})
    assert spoken_a.status_code == spoken_b.status_code == 200
    assert spoken_a.content != spoken_b.content
    assert client.get(str(a["preview_url"])).headers["content-type"] == "audio/wav"


def test_samples_outside_5_to_30_seconds_of_speech_are_refused(client: httpx.Client) -> None:
    samples, rate = samples_of(sample(client, "preset_aria"))
    two_seconds = samples[: 2 * rate]
    silence = np.zeros(rate * 20, np.float32)
    forty_seconds = np.concatenate([samples] * 6)[: 40 * rate]
    for audio, code in [
        (encode(two_seconds, rate, "wav"), "sample_too_short"),
        (encode(np.concatenate([two_seconds, silence]), rate, "mp3"), "sample_too_short"),  # silence is not speech
        (encode(forty_seconds, rate, "mp3"), "sample_too_long"),
    ]:
        resp = clone(client, "Too", audio)
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == code
    resp = clone(client, "Not audio", b"%PDF-1.4 no audio here", "doc.pdf")
    assert resp.status_code == 415 and resp.json()["code"] == "unsupported_audio"
    assert not any(v.startswith("clone_too") for v in voices(client))


def test_clones_are_per_user_and_deleting_one_removes_its_files(gateway: Gateway, client: httpx.Client) -> None:
    audio = sample(client, "preset_sage")
    resp = clone(client, "Private", audio)
    assert resp.status_code == 200, resp.text
    voice_id = resp.json()["voice_id"]
    assert client.get(f"/api/voices/{voice_id}/preview").status_code == 200
    files = sorted(p.name for p in (gateway.data_dir / "voices").rglob("*.wav"))
    other = gateway.client(gateway.new_user().key, timeout=120)
    assert voice_id not in voices(other)
    for resp in [
        other.post("/api/tts", json={"text": "Hi.", "voice_id": voice_id}),
        other.get(f"/api/voices/{voice_id}/preview"),
        other.delete(f"/api/voices/{voice_id}"),
    ]:
        assert resp.status_code == 404 and resp.json()["code"] == "voice_not_found"
    preset = client.delete("/api/voices/preset_aria")
    assert preset.status_code == 403 and preset.json()["code"] == "preset_voice"
    assert client.delete(f"/api/voices/{voice_id}").json() == {"success": True}
    assert voice_id not in voices(client)
    left = sorted(p.name for p in (gateway.data_dir / "voices").rglob("*.wav"))
    assert len(left) == len(files) - 2  # the recording and its preview
    assert client.delete(f"/api/voices/{voice_id}").status_code == 404


def voicechat(client: httpx.Client, audio: bytes, **form: str) -> httpx.Response:
    return client.post("/api/voicechat", files={"file": ("question.wav", audio)}, data=form)


def test_voicechat_answers_a_spoken_question_with_speech_and_both_headers(client: httpx.Client) -> None:
    said = "What is the capital city of France?"
    # Piper's noise at its lowest, so that the question sounds the same every run (Whisper once heard "friends").
    question = sample(client, "preset_aria", said, temperature=0.05)
    resp = voicechat(client, question, history="[]")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "audio/wav"
    heard = unquote(resp.headers["X-Transcription"])
    answer = unquote(resp.headers["X-LLM-Response"])
    words = said.lower().strip("?").split()
    assert "capital" in heard.lower() and sum(w in heard.lower() for w in words) >= len(words) - 1, heard
    assert answer.strip()
    samples, rate = samples_of(resp.content)
    assert len(samples) / rate > 0.5
    # The answer's audio is the answer: Whisper hears its words back.
    back = client.post("/api/stt", files={"file": ("a.wav", resp.content)}, data={"language": "en"}).json()["text"]
    said = {w for w in answer.lower().split() if len(w) > 3}
    assert not said or any(w.strip(".,!?") in back.lower() for w in said)


def test_voicechat_in_spanish_keeps_the_language_and_its_characters(client: httpx.Client) -> None:
    question = sample(client, "preset_aria", "Hola. ¿Me puedes decir cuál es la capital de España?", "es")
    history = json.dumps([{"role": "user", "content": "Hola."}, {"role": "assistant", "content": "¡Hola!"}])
    # Told the language: Whisper base may take a short, accented Spanish question for another language.
    resp = voicechat(client, question, history=history, language="es")
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Language"] == "es"
    raw = resp.headers["X-Transcription"]
    assert raw.isascii() and "%" in raw  # percent-encoded UTF-8 survives any HTTP stack
    assert "capital" in unquote(raw).lower()
    assert unquote(resp.headers["X-LLM-Response"]).strip()


def test_voicechat_refuses_bad_history_and_silence(client: httpx.Client) -> None:
    question = sample(client, "preset_aria", "Hello there.")
    for history in ["not json", '{"role": "user"}', '[{"role": "wizard", "content": "x"}]']:
        resp = voicechat(client, question, history=history)
        assert resp.status_code == 422 and resp.json()["code"] == "invalid_history", history
    silence = encode(np.zeros(16_000 * 3, np.float32), 16_000, "wav")
    resp = voicechat(client, silence)
    assert resp.status_code == 422 and resp.json()["code"] == "no_speech"
