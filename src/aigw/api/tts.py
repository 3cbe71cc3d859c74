"""Text-to-speech routes: POST /api/tts, languages, voices (list, clone, delete, preview), and the
OpenAI-compatible POST /v1/audio/speech."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Path, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from aigw.deps import CurrentPrincipal, RuntimeDep
from aigw.engines.tts.base import Prosody
from aigw.errors import PayloadTooLarge
from aigw.runtime import Runtime
from aigw.speech.audio import encode_audio, wav_bytes
from aigw.speech.voices import DEFAULT_VOICE, VoiceInfo

router = APIRouter(tags=["speech"])

VoiceId = Annotated[str, Path(max_length=80, pattern=r"^[A-Za-z0-9_-]+$")]


class TtsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="Text to speak; long texts are spoken sentence by sentence")
    voice_id: str = Field(default=DEFAULT_VOICE, max_length=80)
    language: str = Field(default="en", max_length=20, description="ISO code; GET /api/tts/languages lists them")
    exaggeration: float = Field(default=0.5, ge=0.25, le=2.0, description="Expressiveness")
    temperature: float = Field(default=0.8, ge=0.05, le=2.0, description="Variation")
    cfg_weight: float = Field(default=0.5, ge=0.0, le=1.0, description="Stability / pace")


class VoiceOut(BaseModel):
    voice_id: str
    name: str
    type: Literal["preset", "clone"]
    preview_url: str
    description: str | None = None
    cloning: Literal["approximate", "reference"] | None = None
    approximation: dict[str, Any] | None = None

    @classmethod
    def of(cls, voice: VoiceInfo) -> VoiceOut:
        details = dict(voice.details)
        cloning = details.pop("cloning", None)
        return cls(
            voice_id=voice.voice_id,
            name=voice.name,
            type="preset" if voice.type == "preset" else "clone",
            preview_url=f"/api/voices/{voice.voice_id}/preview",
            description=voice.description or None,
            cloning=cloning,
            approximation=details or None,
        )


class VoicesOut(BaseModel):
    voices: list[VoiceOut]


class CloneOut(BaseModel):
    voice_id: str
    name: str
    type: Literal["clone"] = "clone"
    cloning: Literal["approximate", "reference"] | None = None


def _check_length(text: str, runtime: Runtime) -> None:
    if len(text) > runtime.settings.tts_max_chars:
        raise PayloadTooLarge(
            f"The text has {len(text)} characters; at most {runtime.settings.tts_max_chars} are spoken at once",
            code="text_too_long",
        )


@router.post(
    "/api/tts",
    summary="Speak a text (WAV); GET /api/voices and /api/tts/languages list the voices and languages",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}},
)
async def tts(body: TtsBody, principal: CurrentPrincipal, runtime: RuntimeDep, request: Request) -> Response:
    _check_length(body.text, runtime)
    language = runtime.tts.language(body.language)
    voice = await runtime.voices.get(principal.user_id, body.voice_id)
    prosody = Prosody.from_seed(body.exaggeration, body.temperature, body.cfg_weight)
    speech = await runtime.tts.speak(body.text, language, voice.speaker, prosody)
    request.state.usage.audio_seconds = round(speech.seconds, 3)
    data = await asyncio.to_thread(wav_bytes, speech.samples, speech.rate)
    return Response(data, media_type="audio/wav", headers={"Content-Language": language})


@router.get("/api/tts/languages", summary="The languages text-to-speech speaks")
async def languages(principal: CurrentPrincipal, runtime: RuntimeDep) -> dict[str, dict[str, str]]:  # noqa: ARG001
    return {"languages": runtime.tts.languages()}


@router.get("/api/voices", summary="The six preset voices and your cloned voices")
async def voices(principal: CurrentPrincipal, runtime: RuntimeDep) -> VoicesOut:
    return VoicesOut(voices=[VoiceOut.of(v) for v in await runtime.voices.list(principal.user_id)])


@router.post("/api/voices/clone", summary="Clone a voice from 5-30 s of speech (WAV, MP3, WebM, OGG, FLAC, M4A)")
async def clone(
    file: UploadFile,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    name: Annotated[str, Form(min_length=1, max_length=200)],
) -> CloneOut:
    voice = await runtime.voices.clone(principal.user_id, name, await file.read())
    return CloneOut(voice_id=voice.voice_id, name=voice.name, cloning=voice.details.get("cloning"))


@router.delete("/api/voices/{voice_id}", summary="Delete one of your cloned voices (presets cannot be deleted)")
async def delete_voice(voice_id: VoiceId, principal: CurrentPrincipal, runtime: RuntimeDep) -> dict[str, bool]:
    await runtime.voices.delete(principal.user_id, voice_id)
    return {"success": True}


@router.get(
    "/api/voices/{voice_id}/preview",
    summary="A short WAV of the voice",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}},
)
async def preview(voice_id: VoiceId, principal: CurrentPrincipal, runtime: RuntimeDep) -> Response:
    data = await runtime.voices.preview(principal.user_id, voice_id)
    return Response(data, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})


# OpenAI's voice names, each spoken by the preset nearest in character; aigw's own voice ids work as well.
OPENAI_VOICES = {
    "alloy": "preset_aria",
    "ash": "preset_aria",
    "echo": "preset_atlas",
    "onyx": "preset_atlas",
    "fable": "preset_sage",
    "ballad": "preset_sage",
    "nova": "preset_nova",
    "coral": "preset_ember",
    "shimmer": "preset_luna",
    "verse": "preset_luna",
    "sage": "preset_sage",
}


class SpeechBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(default="tts-1", max_length=200)
    input: str = Field(min_length=1)
    voice: str | dict[str, str] = Field(default="alloy")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(default=None, max_length=4096)
    language: str = Field(default="en", max_length=20, description="aigw's addition: the language of `input`")


@router.post(
    "/v1/audio/speech",
    summary="OpenAI-compatible speech (mp3, opus, aac, flac, wav, pcm)",
    tags=["openai"],
    response_class=Response,
)
async def speech(body: SpeechBody, principal: CurrentPrincipal, runtime: RuntimeDep, request: Request) -> Response:
    _check_length(body.input, runtime)
    voice_name = body.voice if isinstance(body.voice, str) else body.voice.get("id", "")
    voice = await runtime.voices.get(principal.user_id, OPENAI_VOICES.get(voice_name, voice_name))
    language = runtime.tts.language(body.language)
    prosody = Prosody(pace=min(max(body.speed, 0.5), 2.0))
    speech = await runtime.tts.speak(body.input, language, voice.speaker, prosody)
    request.state.usage.audio_seconds = round(speech.seconds, 3)
    data, media_type = await asyncio.to_thread(encode_audio, speech.samples, speech.rate, body.response_format)
    return Response(data, media_type=media_type)
