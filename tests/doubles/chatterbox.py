"""A test double of a Chatterbox TTS API server (travisvn/chatterbox-tts-api), which cannot run here (its model
downloads at run time and wants a GPU). It speaks that server's wire protocol: `POST /v1/audio/speech` (JSON:
input, voice, exaggeration, cfg_weight, temperature), `POST /v1/audio/speech/upload` (multipart: the same
fields and `voice_file`, the reference recording to clone) and `GET /health`; it answers with a WAV (a tone as
long as the text would take to say) and records what it was sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aigw.speech.audio import wav_bytes
from doubles.ollama import ServerThread

RATE = 24_000


def tone_wav(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return wav_bytes((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE)


@dataclass
class ChatterboxDouble:
    requests: list[dict[str, Any]] = field(default_factory=list)  # each request's fields, "path" and "voice_file"

    def start(self) -> ChatterboxDouble:
        app = Starlette(
            routes=[
                Route("/v1/audio/speech", self._speech, methods=["POST"]),
                Route("/v1/audio/speech/upload", self._upload, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )
        self._server = ServerThread(app)
        self._server.start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()

    async def _health(self, _: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    async def _speech(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append({"path": "/v1/audio/speech", **body})
        return self._spoken(str(body.get("input", "")))

    async def _upload(self, request: Request) -> Response:
        record: dict[str, Any] = {"path": "/v1/audio/speech/upload"}
        async with request.form() as form:
            for key, value in form.multi_items():
                record[key] = await value.read() if hasattr(value, "read") else value
        self.requests.append(record)
        if "voice_file" not in record or "input" not in record:
            return JSONResponse({"error": {"message": "input and voice_file are required"}}, status_code=422)
        return self._spoken(str(record["input"]))

    def _spoken(self, text: str) -> Response:
        if not text.strip():
            return JSONResponse({"error": {"message": "input is empty"}}, status_code=400)
        return Response(tone_wav(0.4 + 0.06 * len(text)), media_type="audio/wav")
