"""Vision routes: POST /api/ocr, /api/vision/analyze (and /stream) and /api/vision/scan, with the seed's fields."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from aigw.api.chat import open_stream, stream_chat
from aigw.deps import CurrentPrincipal, RuntimeDep
from aigw.engines.llm.base import ChatEvent, TextDelta

router = APIRouter(tags=["vision"])
LanguageForm = Annotated[
    str | None, Form(max_length=60, description="en bn fr es de ar hi ja ko zh pt ru, or Tesseract's eng+fra")
]
PromptForm = Annotated[str | None, Form(max_length=4000, description='Default: "Describe this image in detail."')]


class OcrOut(BaseModel):
    text: str
    language: str
    filename: str


class AnalysisOut(BaseModel):
    analysis: str
    method: str = Field(description='"composite" (detectors and OCR written up by the chat model) or the vision model')


class ScanCheck(BaseModel):
    name: str
    passed: bool
    detail: str


class ScanOut(BaseModel):
    document_type: str
    raw_text: str
    ai_analysis: str
    extracted: dict[str, Any]
    filename: str
    confidence: dict[str, float] = Field(
        description="Per field: 0.99 checked or from a barcode, 0.95 arithmetic, 0.7 read, 0.6 derived, 0.4 model"
    )
    checks: list[ScanCheck]
    evidence: str = Field(description="What decided the document type")
    filled_by_model: list[str] = Field(description="Fields the chat model read from the text; verify these")


@router.post("/api/ocr", summary="Read the text of an image (PNG, JPEG, TIFF, BMP, WebP, GIF, a PDF's first page)")
async def ocr(
    file: UploadFile,
    principal: CurrentPrincipal,  # noqa: ARG001 - authentication only
    runtime: RuntimeDep,
    language: LanguageForm = "en",
) -> OcrOut:
    result = await runtime.ocr.read(await file.read(), language)
    return OcrOut(text=result.text, language="+".join(result.languages), filename=file.filename or "")


@router.post("/api/vision/analyze", summary="Answer a prompt about an image")
async def analyze(
    file: UploadFile,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    request: Request,
    prompt: PromptForm = None,
    language: LanguageForm = None,
) -> AnalysisOut:
    analysis = await runtime.vision.analyze(await file.read(), prompt, principal.user_id, language)
    first, events = await open_stream(analysis.session)
    parts = [analysis.preamble] + ([first.text] if isinstance(first, TextDelta) else [])
    async with aclosing(events) as rest:
        parts += [event.text async for event in rest if isinstance(event, TextDelta)]
    meter = request.state.usage
    meter.prompt_tokens, meter.completion_tokens = analysis.session.prompt_tokens, analysis.session.eval_count
    return AnalysisOut(analysis="".join(parts).strip(), method=analysis.method)


@router.post("/api/vision/analyze/stream", summary="Answer a prompt about an image, streamed as /api/chat streams")
async def analyze_stream(
    file: UploadFile,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    request: Request,
    prompt: PromptForm = None,
    language: LanguageForm = None,
) -> StreamingResponse:
    analysis = await runtime.vision.analyze(await file.read(), prompt, principal.user_id, language)
    first, events = await open_stream(analysis.session)
    if analysis.preamble:
        first, events = TextDelta(analysis.preamble), _after(first, events)
    return stream_chat(analysis.session, first, events, request, done_extra={"method": analysis.method})


async def _after(first: ChatEvent, rest: AsyncGenerator[ChatEvent]) -> AsyncGenerator[ChatEvent]:
    yield first
    async with aclosing(rest) as events:
        async for event in events:
            yield event


@router.post("/api/vision/scan", summary="Extract validated fields from an identity document, invoice, receipt or card")
async def scan(
    file: UploadFile,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    type: Annotated[
        str | None,
        Form(max_length=40, description="passport, drivers_license, id_card, invoice, receipt, business_card, auto"),
    ] = "auto",
    language: LanguageForm = "en",
) -> ScanOut:
    result = await runtime.scan.scan(await file.read(), type, language, principal.user_id)
    return ScanOut(
        document_type=result.document_type,
        raw_text=result.raw_text,
        ai_analysis=result.ai_analysis,
        extracted=result.extracted,
        filename=file.filename or "",
        confidence=result.confidence,
        checks=[ScanCheck(**check) for check in result.checks],
        evidence=result.evidence,
        filled_by_model=result.filled_by_model,
    )
