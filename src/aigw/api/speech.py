"""Speech routes: POST /api/stt (the seed's fields), POST /api/voicechat, and the OpenAI-compatible
POST /v1/audio/transcriptions."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from aigw.deps import CurrentPrincipal, RuntimeDep
from aigw.engines.llm.base import ChatMessage
from aigw.engines.stt.base import Transcript, whisper_languages
from aigw.errors import InvalidField
from aigw.speech.audio import wav_bytes

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
    request: Request,
    language: Annotated[str | None, Form(max_length=20)] = None,
) -> SttOut:
    transcript = await runtime.speech.transcribe(await file.read(), language)
    request.state.usage.audio_seconds = transcript.duration
    return SttOut(
        text=transcript.text,
        language=transcript.language,
        language_probability=transcript.language_probability,
        duration=transcript.duration,
        segments=[SegmentOut(start=s.start, end=s.end, text=s.text) for s in transcript.segments],
    )


_HISTORY = TypeAdapter(list[ChatMessage])


def header_text(text: str) -> str:
    """Any text as a header value: UTF-8, percent-encoded (spaces and common punctuation stay readable)."""
    return quote(text, safe=" !'(),.:;?-_~/")


@router.post(
    "/api/voicechat",
    summary="Speak to the assistant: audio in, its spoken answer out (WAV), with X-Transcription and X-LLM-Response",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}},
)
async def voicechat(
    file: UploadFile,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    request: Request,
    history: Annotated[str, Form(max_length=200_000)] = "[]",
    voice_id: Annotated[str | None, Form(max_length=80)] = None,
    language: Annotated[str | None, Form(max_length=20)] = None,
    model: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    try:
        messages = _HISTORY.validate_json(history or "[]")
    except ValidationError as exc:
        raise InvalidField(
            "history must be a JSON array of messages ({role, content})", code="invalid_history"
        ) from exc
    voice = await runtime.voices.get(principal.user_id, voice_id)
    reply = await runtime.voicechat.reply(
        principal.user_id, await file.read(), messages, voice.speaker, language=language, model=model
    )
    request.state.usage.audio_seconds = reply.transcript.duration
    data = await asyncio.to_thread(wav_bytes, reply.speech.samples, reply.speech.rate)
    headers = {
        "X-Transcription": header_text(reply.transcript.text),
        "X-LLM-Response": header_text(reply.text),
        "X-Language": reply.language,
        "Access-Control-Expose-Headers": "X-Transcription, X-LLM-Response, X-Language",
    }
    return Response(data, media_type="audio/wav", headers=headers)


ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


@router.post("/v1/audio/transcriptions", summary="OpenAI-compatible transcription", tags=["openai"])
async def transcriptions(
    file: UploadFile,
    principal: CurrentPrincipal,  # noqa: ARG001 - authentication only
    runtime: RuntimeDep,
    request: Request,
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
    request.state.usage.audio_seconds = transcript.duration
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
