"""Tesseract 5, run as its command-line program (the Debian `tesseract-ocr` package).

The binary is called directly rather than through a wrapper library so that its environment can be set for
that one process: Tesseract's OpenMP threads fight over a small machine's cores with everything else (measured
on 2 cores under load: 9.6 s a page with its default threads, 2.3 s with OMP_THREAD_LIMIT=1), and setting the
limit process-wide would also cap torch's threads in the gateway.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

from PIL import Image

from aigw.engines.ocr.base import Layout
from aigw.engines.worker import InferenceWorker
from aigw.errors import EngineUnavailable, InvalidField

TESSERACT_COMMAND = "tesseract"
# The seed's twelve OCR languages (ISO 639-1) and their Tesseract data (Debian tesseract-ocr-<code>).
ISO_TO_TESSERACT = {
    "en": "eng",
    "bn": "ben",
    "fr": "fra",
    "es": "spa",
    "de": "deu",
    "ar": "ara",
    "hi": "hin",
    "ja": "jpn",
    "ko": "kor",
    "zh": "chi_sim",
    "pt": "por",
    "ru": "rus",
}
_TESSERACT_TO_ISO = {tesseract: iso for iso, tesseract in ISO_TO_TESSERACT.items()}
# Languages read with English data too, where that measured better (bench/vision.py): their documents carry Latin
# words, codes and currencies. Not Arabic: with English added, Tesseract read an Arabic word as "pus".
_WITH_ENGLISH = frozenset({"ru", "hi"})
# Page segmentation per layout: automatic for pages, sparse text for cards and receipts, one line.
_PSM: dict[Layout, int] = {"page": 3, "sparse": 11, "table": 6, "line": 7, "mrz": 6}
_MRZ_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<"
# What Tesseract may see of the gateway's environment: where to find programs and its language data, the locale
# and the temp dir. Never the rest (AIGW_SECRET_KEY, database and Redis passwords, engine API keys).
_PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TESSDATA_PREFIX", "TMPDIR", "HOME")


def tesseract_environment() -> dict[str, str]:
    passed = {name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ}
    return {**passed, "OMP_THREAD_LIMIT": "1"}


def iso_languages(code: str | None) -> list[str]:
    """ISO 639-1 codes from what a client sends: `zh`, `pt-BR`, `en+fr`, or Tesseract's own `chi_sim`, `eng+fra`
    ("en" when nothing is sent).

    Raises:
        InvalidField: A language we have no OCR data for (422, `unsupported_language`).
    """
    if code is None or not code.strip():
        return ["en"]
    resolved: list[str] = []
    for part in code.split("+"):
        name = part.strip().lower()
        # Region subtags (pt-BR, zh_CN) do not change which data is used.
        iso = _TESSERACT_TO_ISO.get(name) or (name if name in ISO_TO_TESSERACT else None)
        iso = iso or re.split(r"[-_]", name)[0]
        if iso not in ISO_TO_TESSERACT:
            supported = ", ".join(sorted(ISO_TO_TESSERACT))
            raise InvalidField(
                f"Unsupported OCR language {part.strip()!r}; supported: {supported}", code="unsupported_language"
            )
        if iso not in resolved:
            resolved.append(iso)
    return resolved


def tesseract_language(code: str | None) -> str:
    """Tesseract's `-l` value ("eng+fra") for what a client sends; see `iso_languages`."""
    return "+".join(ISO_TO_TESSERACT[iso] for iso in iso_languages(code))


def image_to_text(
    image: Image.Image, language: str, *, timeout: float = 300.0, psm: int | None = None, characters: str | None = None
) -> str:
    """The text of one image, in Tesseract's `language` (e.g. "eng", "eng+fra"), optionally only `characters`.
    Blocking: call from a thread."""
    png = io.BytesIO()
    image.save(png, format="PNG", compress_level=1)
    layout = ["--psm", str(psm)] if psm is not None else []
    if characters:
        layout += ["-c", f"tessedit_char_whitelist={characters}"]
    try:
        done = subprocess.run(
            [TESSERACT_COMMAND, "stdin", "stdout", "-l", language, *layout],
            input=png.getvalue(),
            capture_output=True,
            timeout=timeout,
            env=tesseract_environment(),
            check=False,
        )
    except FileNotFoundError as exc:
        raise EngineUnavailable("OCR is not available: Tesseract is not installed", code="ocr_unavailable") from exc
    except subprocess.TimeoutExpired as exc:
        raise InvalidField("OCR took too long on this document", code="unreadable_document") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        if any("Failed loading language" in line for line in message):
            raise EngineUnavailable(
                f"OCR is not available for {language!r}: its Tesseract language data is not installed",
                code="ocr_unavailable",
            )
        reason = message[-1] if message else f"exit status {done.returncode}"
        raise InvalidField(f"OCR failed: {reason}", code="unreadable_document")
    return done.stdout.decode("utf-8", errors="replace")


class TesseractEngine:
    """Tesseract as an OCR engine: one image at a time per process (one thread each, see above), at most
    `max_queue` waiting before 503."""

    modality = "ocr"
    name = "ocr/tesseract"

    def __init__(self, max_queue: int = 8, timeout: float = 120.0) -> None:
        self._worker = InferenceWorker("ocr", "The OCR engine", max_queue, 3)
        self._timeout = timeout

    def languages(self) -> frozenset[str]:
        return frozenset(ISO_TO_TESSERACT)

    async def ready(self) -> bool:
        return shutil.which(TESSERACT_COMMAND) is not None

    async def read(self, image: Image.Image, languages: list[str], layout: Layout = "page") -> str:
        if "en" not in languages and set(languages) & _WITH_ENGLISH:
            # "EUR" was read as Cyrillic with Russian data alone: Russian 3.3% -> 0% character errors, Hindi 4.3%
            # -> 3.2%.
            languages = [*languages, "en"]
        language = "+".join(ISO_TO_TESSERACT[code] for code in languages)
        if layout == "mrz":
            language = "eng"  # the zone is Latin capitals and digits whatever the document's language
        return await self._worker.run(self._read, image, language, layout)

    def _read(self, image: Image.Image, language: str, layout: Layout) -> str:
        characters = _MRZ_CHARACTERS if layout == "mrz" else None
        return image_to_text(image, language, timeout=self._timeout, psm=_PSM[layout], characters=characters)

    async def close(self) -> None:
        await self._worker.close()
