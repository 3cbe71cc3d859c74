"""Speech routes: POST /api/stt (the seed's fields) and the OpenAI-compatible POST /v1/audio/transcriptions."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Form, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel

from aigw.deps import CurrentPrincipal, RuntimeDep
from aigw.engines.stt.base import Transcript, whisper_languages

router = APIRouter(tags=["speech"])


class SegmentOut(BaseModel):
    start: float
    end: float
    text: str


class SttOut(BaseModel):
    text: str
    language: str
    language_probability: float
    duration: float
    segments: list[SegmentOut]


@router.post(
    "/api/stt", summary="Transcribe audio (WAV, MP3, WebM, FLAC, OGG, M4A); the language is detected if not given"
)
async def stt(
    file: UploadFile,
    principal: CurrentPrincipal,  # noqa: ARG001 - authentication only
    runtime: RuntimeDep,
    language: Annotated[str | None, Form(max_length=20)] = None,
) -> SttOut:
    transcript = await runtime.speech.transcribe(await file.read(), language)
    return SttOut(
        text=transcript.text,
        language=transcript.language,
        language_probability=transcript.language_probability,
        duration=transcript.duration,
        segments=[SegmentOut(start=s.start, end=s.end, text=s.text) for s in transcript.segments],
    )


ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


@router.post("/v1/audio/transcriptions", summary="OpenAI-compatible transcription", tags=["openai"])
async def transcriptions(
    file: UploadFile,
    principal: CurrentPrincipal,  # noqa: ARG001 - authentication only
    runtime: RuntimeDep,
    model: Annotated[str, Form(max_length=200)] = "whisper-1",  # noqa: ARG001 - one STT model is configured
    language: Annotated[str | None, Form(max_length=20)] = None,
    prompt: Annotated[str | None, Form(max_length=2000)] = None,  # noqa: ARG001 - not used by the local engine
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float, Form(ge=0, le=1)] = 0,  # noqa: ARG001 - decoding is greedy
    timestamp_granularities: Annotated[
        list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
    ] = None,
) -> Response:
    words = bool(timestamp_granularities and "word" in timestamp_granularities)
    transcript = await runtime.speech.transcribe(await file.read(), language, words=words)
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(_subtitles(transcript, response_format), media_type="text/plain; charset=utf-8")
    if response_format == "json":
        return _json({"text": transcript.text})
    body: dict[str, object] = {
        "task": "transcribe",
        # OpenAI's verbose_json names the language in English ("english"), not by its code.
        "language": whisper_languages().get(transcript.language, transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
        "segments": [
            {"id": i, "seek": 0, "start": s.start, "end": s.end, "text": " " + s.text, "temperature": 0.0}
            for i, s in enumerate(transcript.segments)
        ],
    }
    if words:
        body["words"] = [{"word": w.word, "start": w.start, "end": w.end} for s in transcript.segments for w in s.words]
    return _json(body)


def _json(body: dict[str, object]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _subtitles(transcript: Transcript, kind: Literal["srt", "vtt"]) -> str:
    separator = "," if kind == "srt" else "."
    blocks = []
    for i, s in enumerate(transcript.segments, 1):
        timing = f"{_timestamp(s.start, separator)} --> {_timestamp(s.end, separator)}"
        blocks.append(f"{i}\n{timing}\n{s.text}\n" if kind == "srt" else f"{timing}\n{s.text}\n")
    return ("WEBVTT\n\n" if kind == "vtt" else "") + "\n".join(blocks)
