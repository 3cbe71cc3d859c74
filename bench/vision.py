"""OCR accuracy and speed, in process, on the path `/api/ocr` takes (image decode, then the Tesseract engine).

Renders a short paragraph in each seed language this machine has a font for (DejaVu Sans: en fr es de pt ru;
Bengali, Devanagari, Arabic shaping and CJK need fonts that are not installed here), as a clean scan and as a
degraded photo (a 3 degree tilt, blur, noise, JPEG quality 40), and reports the character error rate (jiwer,
whitespace collapsed) and the seconds per image.

    .venv/bin/python bench/vision.py [--repeat 2]

Prints a table, the command, the machine and the date; writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from aigw.engines.ocr.tesseract import TesseractEngine
from aigw.vision.ocr import OcrService

RESULTS = Path(__file__).resolve().parent / "results"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PARAGRAPHS = {
    "en": ["Invoice 2041 is due on 15 March.", "Please pay the total of 1,250.00 EUR", "to the account named below."],
    "fr": ["La facture 2041 est payable le 15 mars.", "Merci de régler le total de 1 250,00 EUR", "sur le compte."],
    "es": ["La factura 2041 vence el 15 de marzo.", "Por favor, pague el total de 1.250,00 EUR", "a la cuenta."],
    "de": ["Die Rechnung 2041 ist am 15. März fällig.", "Bitte überweisen Sie 1.250,00 EUR", "auf das Konto."],
    "pt": ["A fatura 2041 vence em 15 de março.", "Por favor, pague o total de 1.250,00 EUR", "na conta abaixo."],
    "ru": ["Счёт 2041 нужно оплатить до 15 марта.", "Пожалуйста, переведите 1 250,00 EUR", "на указанный счёт."],
}


def page(lines: list[str]) -> Image.Image:
    font = ImageFont.truetype(FONT, 32)
    image = Image.new("RGB", (1400, 120 + 56 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((60, 60 + 56 * n), line, fill="black", font=font)
    return image


def degraded(image: Image.Image, seed: int) -> Image.Image:
    """A phone photo of the page: tilted 3 degrees, slightly blurred, noisy, saved as a low-quality JPEG."""
    tilted = image.rotate(3, resample=Image.Resampling.BICUBIC, expand=True, fillcolor="white")
    blurred = tilted.filter(ImageFilter.GaussianBlur(1.0))
    pixels = np.asarray(blurred, np.float32)
    noisy = np.clip(pixels + np.random.default_rng(seed).normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    return Image.open(io.BytesIO(png(Image.fromarray(noisy), "JPEG", quality=40)))


def png(image: Image.Image, kind: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


async def run(repeat: int) -> dict[str, Any]:
    service = OcrService(TesseractEngine(), 50_000_000)
    result: dict[str, Any] = {}
    for language, lines in PARAGRAPHS.items():
        truth = " ".join(lines)
        row: dict[str, Any] = {}
        for condition in ("clean", "degraded"):
            image = page(lines) if condition == "clean" else degraded(page(lines), seed=len(language))
            data = png(image)
            seconds, errors = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                read = await service.read(data, language)
                seconds.append(time.perf_counter() - started)
                errors.append(float(jiwer.cer(truth, " ".join(read.text.split()))))
            row[condition] = {
                "cer": round(statistics.mean(errors), 4),
                "seconds_p50": round(statistics.median(seconds), 3),
            }
        result[language] = row
        print(language, row, flush=True)
    await service.engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    command = "python bench/vision.py " + " ".join(sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: {command}\nmachine: {machine}\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    result = asyncio.run(run(args.repeat))
    print("\n| language | clean CER | clean s | degraded CER | degraded s |\n|---|---|---|---|---|")
    for language, row in result.items():
        clean, bad = row["clean"], row["degraded"]
        print(f"| {language} | {clean['cer']:.1%} | {clean['seconds_p50']} | {bad['cer']:.1%} | {bad['seconds_p50']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"vision-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"command": command, "machine": machine, **result}, indent=2, ensure_ascii=False))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
