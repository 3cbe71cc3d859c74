"""Remote speech engines: an OpenAI-compatible speech server (here another aigw, a real one) and a Chatterbox
TTS API server (a double of its wire protocol, named as such), which clones with the recording itself."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import Iterator

import pytest

from conftest import Gateway, start_gateway
from doubles.chatterbox import ChatterboxDouble
from speech_files import spoken


def seconds_of(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-tts-upstream"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def chatterbox() -> Iterator[ChatterboxDouble]:
    double = ChatterboxDouble().start()
    yield double
    double.stop()


def test_an_openai_compatible_server_speaks_for_the_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Gateway
) -> None:
    key = upstream.new_user(rate_limit=1_000_000).key
    config = {"engine": "openai", "base_url": f"{upstream.url}/v1", "api_key": key, "voices": {"preset_aria": "nova"}}
    gw = start_gateway(tmp_path_factory.mktemp("gw-tts-openai"), AIGW_TTS=json.dumps(config))
    try:
        client = gw.client(gw.admin_key, timeout=300)
        assert client.get("/health").json()["services"][f"tts/openai@127.0.0.1:{upstream.url.rsplit(':', 1)[1]}"]
        resp = client.post("/api/tts", json={"text": "Hello from upstream.", "voice_id": "preset_aria"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "audio/wav" and seconds_of(resp.content) > 0.8
        usage = upstream.client(upstream.admin_key).get("/api/admin/usage").json()
        assert any(row["endpoint"] == "/v1/audio/speech" for row in usage)
    finally:
        gw.stop()


def test_chatterbox_gets_the_seed_parameters_and_a_clones_recording(
    tmp_path_factory: pytest.TempPathFactory, chatterbox: ChatterboxDouble
) -> None:
    config = {"engine": "chatterbox", "base_url": f"{chatterbox.url}/v1"}
    gw = start_gateway(tmp_path_factory.mktemp("gw-tts-chatterbox"), AIGW_TTS=json.dumps(config))
    try:
        client = gw.client(gw.admin_key, timeout=300)
        resp = client.post(
            "/api/tts",
            json={
                "text": "Preset speech.",
                "voice_id": "preset_nova",
                "exaggeration": 1.2,
                "temperature": 0.3,
                "cfg_weight": 0.7,
            },
        )
        assert resp.status_code == 200, resp.text
        sent = chatterbox.requests[-1]
        assert sent["path"] == "/v1/audio/speech" and sent["voice"] == "nova" and sent["input"] == "Preset speech."
        assert (sent["exaggeration"], sent["temperature"], sent["cfg_weight"]) == (1.2, 0.3, 0.7)

        recording = spoken(
            "This recording is the reference audio. Chatterbox speaks every sentence of this clone in the voice "
            "it hears here, for as long as the clone exists."
        )
        made = client.post("/api/voices/clone", data={"name": "Reference"}, files={"file": ("r.wav", recording)})
        assert made.status_code == 200, made.text
        assert made.json()["cloning"] == "reference"
        resp = client.post("/api/tts", json={"text": "Cloned speech.", "voice_id": made.json()["voice_id"]})
        assert resp.status_code == 200, resp.text
        sent = chatterbox.requests[-1]
        assert sent["path"] == "/v1/audio/speech/upload" and sent["input"] == "Cloned speech."
        reference = sent["voice_file"]
        assert reference[:4] == b"RIFF" and 5 <= seconds_of(reference) <= 30
        assert float(sent["exaggeration"]) == 0.5 and float(sent["cfg_weight"]) == 0.5
    finally:
        gw.stop()
