"""The OCR engine protocol: an upright 8-bit image and languages in, its text out."""

from __future__ import annotations

from typing import Literal, Protocol

from PIL import Image

# How the page is laid out, which decides how an engine segments it: a document page (columns, paragraphs), a
# sparse one (labels and values scattered, as on cards), a table (rows of a receipt or an invoice), a single line,
# or a page read for its machine-readable zone (only A-Z, 0-9 and the `<` filler matter).
Layout = Literal["page", "sparse", "table", "line", "mrz"]


class OcrEngine(Protocol):
    name: str
    modality: str  # "ocr"

    def languages(self) -> frozenset[str]:
        """The ISO 639-1 codes it reads."""
        ...

    async def read(self, image: Image.Image, languages: list[str], layout: Layout = "page") -> str: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
