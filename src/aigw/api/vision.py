"""Vision routes: POST /api/ocr (the seed's fields)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, UploadFile
from pydantic import BaseModel

from aigw.deps import CurrentPrincipal, RuntimeDep

router = APIRouter(tags=["vision"])


class OcrOut(BaseModel):
    text: str
    language: str
    filename: str


@router.post("/api/ocr", summary="Read the text of an image (PNG, JPEG, TIFF, BMP, WebP, GIF, a PDF's first page)")
async def ocr(
    file: UploadFile,
    principal: CurrentPrincipal,  # noqa: ARG001 - authentication only
    runtime: RuntimeDep,
    language: Annotated[str, Form(max_length=60, description="en bn fr es de ar hi ja ko zh pt ru, or eng+fra")] = "en",
) -> OcrOut:
    result = await runtime.ocr.read(await file.read(), language)
    return OcrOut(text=result.text, language="+".join(result.languages), filename=file.filename or "")
