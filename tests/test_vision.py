"""POST /api/vision/analyze and /analyze/stream through real HTTP: the embedded composite (what OpenCV, zxing-cpp and
OCR really found, written up by the chat model and labelled "composite"), and a configured vision model on Ollama's
wire protocol (a test double, as no vision model runs here) that receives the image itself."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

import documents
from conftest import Gateway, start_gateway
from doubles.ollama import OllamaProtocolDouble

MENU_URL = "https://example.com/menu"


def poster() -> bytes:
    """A shop sign: two lines of text and a QR code on a red and white background."""
    import zxingcpp

    image = Image.new("RGB", (1000, 700), (200, 30, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, 960, 660), fill="white")
    draw.text((80, 90), "OPEN 24 HOURS", fill="black", font=documents.font(documents.SANS_BOLD, 64))
    draw.text((80, 190), "Fresh coffee and bagels", fill="black", font=documents.font(documents.SANS, 40))
    qr = zxingcpp.create_barcode(MENU_URL, zxingcpp.BarcodeFormat.QRCode)
    image.paste(Image.fromarray(np.asarray(qr.to_image(scale=8))).convert("RGB"), (620, 300))
    return documents.encoded(image, "JPEG", quality=92)


def sse_events(resp: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in resp.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-vision"), AIGW_MODELS_DIR=str(models_dir))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def double_gateway(tmp_path_factory: pytest.TempPathFactory, ollama_double: OllamaProtocolDouble) -> Iterator[Gateway]:
    """Chat on the Ollama double (so the test sees what the composite tells the model), and a vision model on it."""
    backend = {"engine": "ollama", "base_url": ollama_double.url, "model": "double-model"}
    models = [{"name": "writer", "backends": [backend]}, {"name": "llava", "backends": [backend]}]
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-vision-double"),
        AIGW_CHAT_MODELS=json.dumps(models),
        AIGW_DEFAULT_CHAT_MODEL="writer",
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def vision_model_gateway(
    tmp_path_factory: pytest.TempPathFactory, ollama_double: OllamaProtocolDouble
) -> Iterator[Gateway]:
    backend = {"engine": "ollama", "base_url": ollama_double.url, "model": "llava:7b"}
    models = [{"name": "llava", "backends": [backend]}]
    gw = start_gateway(
        tmp_path_factory.mktemp("gw-vision-model"),
        AIGW_CHAT_MODELS=json.dumps(models),
        AIGW_DEFAULT_CHAT_MODEL="llava",
        AIGW_VISION_MODEL="llava",
    )
    yield gw
    gw.stop()


def test_composite_tells_the_model_only_what_the_detectors_found(
    double_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    ollama_double.reply_text(["Automatic detectors found a sign."])
    client = double_gateway.client(double_gateway.new_user().key, timeout=120)
    resp = client.post(
        "/api/vision/analyze", files={"file": ("sign.jpg", poster())}, data={"prompt": "What does it say?"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "analysis": "From automatic detectors (no vision model is configured): Automatic detectors found a sign.",
        "method": "composite",
    }
    messages = ollama_double.last_request["messages"]
    assert [m["role"] for m in messages] == ["system", "user"] and messages[1]["content"] == "What does it say?"
    findings = messages[0]["content"]
    assert "cannot see" in findings
    assert "OPEN 24 HOURS" in findings and "Fresh coffee and bagels" in findings
    assert f"A QR Code encodes: {MENU_URL!r}" in findings
    assert "No face was detected." in findings and "No standing person was detected." in findings
    assert "1000 x 700 pixels (landscape)" in findings
    assert "red" in findings and "white" in findings
    assert "images" not in messages[1]  # the composite never pretends the chat model saw the picture


def test_composite_with_the_embedded_model_answers_and_streams(gateway: Gateway) -> None:
    client = gateway.client(gateway.new_user().key, timeout=180)
    resp = client.post("/api/vision/analyze", files={"file": ("sign.jpg", poster())})  # the seed's default prompt
    assert resp.status_code == 200, resp.text
    analysis = resp.json()["analysis"]
    assert resp.json()["method"] == "composite"
    assert analysis.startswith("From automatic detectors") and len(analysis) > 80
    resp = client.post(
        "/api/vision/analyze/stream", files={"file": ("sign.jpg", poster())}, data={"prompt": "Read the sign."}
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and kinds.count("token") >= 2 and "error" not in kinds
    assert events[0][1]["content"].startswith("From automatic detectors")
    assert events[-1][1]["method"] == "composite" and events[-1][1]["done"] is True


def test_a_configured_vision_model_receives_the_image(
    vision_model_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    client = vision_model_gateway.client(vision_model_gateway.new_user().key, timeout=60)
    ollama_double.reply_text(["A red ", "sign."])
    resp = client.post("/api/vision/analyze", files={"file": ("sign.jpg", poster())})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"analysis": "A red sign.", "method": "llava"}
    sent = ollama_double.last_request
    assert sent["model"] == "llava:7b"
    message = sent["messages"][-1]
    assert message["content"] == "Describe this image in detail."
    image = Image.open(io.BytesIO(base64.b64decode(message["images"][0])))
    assert image.format == "JPEG" and image.size == (1000, 700)

    ollama_double.reply_text(["Sign", " text"])
    resp = client.post("/api/vision/analyze/stream", files={"file": ("sign.jpg", poster())}, data={"prompt": "Read"})
    events = sse_events(resp)
    assert [kind for kind, _ in events] == ["token", "token", "done"]
    assert events[-1][1]["method"] == "llava" and events[-1][1]["model"] == "llava"


def test_images_sent_to_a_model_that_reads_none_are_refused(gateway: Gateway) -> None:
    key = gateway.new_user().key
    body = {"messages": [{"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}]}
    resp = httpx.post(f"{gateway.url}/api/chat", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert resp.status_code == 400 and resp.json()["code"] == "images_not_supported"


def test_bad_images_get_clear_errors(gateway: Gateway) -> None:
    client = gateway.client(gateway.new_user().key, timeout=60)
    resp = client.post("/api/vision/analyze", files={"file": ("notes.txt", b"not an image")})
    assert resp.status_code == 415 and resp.json()["code"] == "unsupported_image"
    resp = client.post("/api/vision/analyze/stream", files={"file": ("empty.png", b"")})
    assert resp.status_code == 422 and resp.json()["code"] == "empty_image"


def test_a_configured_vision_model_fills_what_the_scan_rules_left_empty(
    vision_model_gateway: Gateway, ollama_double: OllamaProtocolDouble
) -> None:
    doc = documents.receipt(3)  # it prints no receipt number, which rules cannot find
    ollama_double.reply_text(['{"receipt_number": "R-2041", "total_amount": "999.99"}'])
    client = vision_model_gateway.client(vision_model_gateway.new_user().key, timeout=120)
    files = {"file": ("r.png", documents.encoded(doc.image))}
    resp = client.post("/api/vision/scan", files=files, data={"type": "receipt"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["extracted"]["receipt_number"] == "R-2041" and body["filled_by_model"] == ["receipt_number"]
    assert body["confidence"]["receipt_number"] == 0.4
    assert body["extracted"]["total_amount"] == doc.truth["total_amount"]  # checked by the sums: never overridden
    sent = ollama_double.last_request
    assert sent["model"] == "llava:7b" and sent["messages"][-1]["images"]
    assert "receipt_number" in sent["messages"][-1]["content"]
