"""RapidOCR: PaddleOCR's PP-OCR detection and recognition models, shipped inside the `rapidocr` wheel, on ONNX Runtime.

Only the bundled models are ever selected (Chinese, Japanese, English and Latin-script text): RapidOCR downloads
the others (Korean, Arabic, Devanagari, Cyrillic) at run time, which cannot work offline. Measured here, it reads
machine-readable zones, noisy photos and CJK text better than Tesseract. Its detector is limited to a longest side
of 960 pixels (its default, a shortest side of 736, upscales small images to seconds a line; 1280 read no more of
our test documents and took 2.5 s a passport page instead of 2.0) on two ONNX Runtime threads (3.6 s on one).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from typing import Any

import numpy as np
from PIL import Image

from aigw.engines.ocr.base import Layout
from aigw.engines.worker import InferenceWorker

LANGUAGES = frozenset({"en", "zh", "ja", "fr", "es", "de", "pt"})
_DETECTOR_SIDE = 960


class RapidOcrEngine:
    """One image at a time per process, at most `max_queue` waiting before 503."""

    modality = "ocr"
    name = "ocr/rapidocr"

    def __init__(self, max_queue: int = 8, threads: int = 2) -> None:
        self._worker = InferenceWorker("ocr-rapid", "The OCR engine", max_queue, 3)
        self._threads = threads
        self._ocr: Any = None

    def languages(self) -> frozenset[str]:
        return LANGUAGES

    async def ready(self) -> bool:
        return importlib.util.find_spec("rapidocr") is not None

    async def warm(self) -> None:
        await self._worker.run(self._load)

    def _load(self) -> Any:
        if self._ocr is None:
            from rapidocr import RapidOCR

            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            self._ocr = RapidOCR(
                params={
                    "Global.log_level": "warning",
                    # Its text-direction classifier turned whole machine-readable lines upside down (">>>>>222");
                    # pages arrive upright (EXIF, deskew), so it only costs.
                    "Global.use_cls": False,
                    "Det.limit_type": "max",
                    "Det.limit_side_len": _DETECTOR_SIDE,
                    "EngineConfig.onnxruntime.intra_op_num_threads": self._threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
        return self._ocr

    async def read(self, image: Image.Image, languages: list[str], layout: Layout = "page") -> str:  # noqa: ARG002
        return await self._worker.run(self._read, image)

    def _read(self, image: Image.Image) -> str:
        output = self._load()(np.asarray(image.convert("RGB"))[:, :, ::-1])  # RapidOCR takes OpenCV's BGR
        if output.boxes is None or output.txts is None:
            return ""
        return "\n".join(lines_of(list(output.boxes), list(output.txts)))

    async def close(self) -> None:
        await self._worker.close()


def lines_of(boxes: list[Any], texts: list[str]) -> list[str]:
    """Detected boxes put back into lines of text: boxes whose vertical extents mostly overlap share a line, read
    left to right; boxes far apart on a line (columns of a form) are separated by three spaces, as Tesseract
    separates them."""
    spans = []
    for box, text in zip(boxes, texts, strict=True):
        points = np.asarray(box)
        top, bottom = float(points[:, 1].min()), float(points[:, 1].max())
        spans.append((top, bottom, float(points[:, 0].min()), float(points[:, 0].max()), text))
    spans.sort(key=lambda span: (span[0] + span[1]) / 2)
    rows: list[list[tuple[float, float, float, float, str]]] = []
    for span in spans:
        if rows:
            last = rows[-1]
            top, bottom = min(s[0] for s in last), max(s[1] for s in last)
            overlap = min(bottom, span[1]) - max(top, span[0])
            if overlap > 0.5 * min(bottom - top, span[1] - span[0]):
                last.append(span)
                continue
        rows.append([span])
    lines = []
    for row in rows:
        row.sort(key=lambda s: s[2])
        line = row[0][4]
        for before, span in itertools.pairwise(row):
            gap = span[2] - before[3]
            line += ("   " if gap > 2 * (before[1] - before[0]) else " ") + span[4]
        lines.append(line)
    return lines
