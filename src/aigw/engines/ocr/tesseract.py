"""Tesseract 5, run as its command-line program (the Debian `tesseract-ocr` package).

The binary is called directly rather than through a wrapper library so that its environment can be set for
that one process: Tesseract's OpenMP threads fight over a small machine's cores with everything else (measured
on 2 cores under load: 9.6 s a page with its default threads, 2.3 s with OMP_THREAD_LIMIT=1), and setting the
limit process-wide would also cap torch's threads in the gateway.
"""

from __future__ import annotations

import io
import os
import subprocess

from PIL import Image

from aigw.errors import EngineUnavailable, InvalidField

TESSERACT_COMMAND = "tesseract"
# What Tesseract may see of the gateway's environment: where to find programs and its language data, the locale
# and the temp dir. Never the rest (AIGW_SECRET_KEY, database and Redis passwords, engine API keys).
_PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TESSDATA_PREFIX", "TMPDIR", "HOME")


def tesseract_environment() -> dict[str, str]:
    passed = {name: os.environ[name] for name in _PASSED_ENVIRONMENT if name in os.environ}
    return {**passed, "OMP_THREAD_LIMIT": "1"}


def image_to_text(image: Image.Image, language: str, *, timeout: float = 300.0) -> str:
    """The text of one image, in Tesseract's `language` (e.g. "eng", "eng+fra"). Blocking: call from a thread."""
    png = io.BytesIO()
    image.save(png, format="PNG", compress_level=1)
    try:
        done = subprocess.run(
            [TESSERACT_COMMAND, "stdin", "stdout", "-l", language],
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
