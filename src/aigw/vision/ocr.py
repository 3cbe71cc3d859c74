"""OCR as a service: image bytes and a language in, the text out. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aigw.engines.ocr.base import Layout, OcrEngine
from aigw.engines.ocr.tesseract import iso_languages
from aigw.vision.image import load_image


@dataclass(frozen=True)
class OcrResult:
    text: str
    languages: list[str]  # ISO 639-1 codes read with
    width: int
    height: int


class OcrService:
    def __init__(self, engine: OcrEngine, max_pixels: int) -> None:
        self.engine = engine
        self.max_pixels = max_pixels

    async def read(self, data: bytes, language: str | None = None, layout: Layout = "page") -> OcrResult:
        """Decode (off the event loop), then read; 422 `unsupported_language` for a language without OCR data."""
        languages = iso_languages(language)
        image = await asyncio.to_thread(load_image, data, max_pixels=self.max_pixels)
        text = await self.engine.read(image, languages, layout)
        return OcrResult(text.strip(), languages, image.width, image.height)
