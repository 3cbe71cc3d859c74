"""OCR and document-scan accuracy and speed, in process, on the paths `/api/ocr` and `/api/vision/scan` take.

--part ocr: renders a short paragraph in each of the twelve seed languages (DejaVu Sans: en fr es de pt ru ar;
WenQuanYi Micro Hei: zh ja ko; Lohit: hi bn; shaped by raqm), as a clean scan, as a degraded photo (a 3 degree
tilt, blur, noise, JPEG quality 40) and as that photo deskewed, and reports each engine's character error rate
(jiwer, whitespace collapsed) and seconds per image: Tesseract in every language, RapidOCR where its packaged
models cover the language.

--part scan: renders N documents of each type with random true fields (tests/documents.py), clean and as a phone
photo (5 degree tilt, blur, noise, JPEG), scans each with the rules alone (no chat model: it only fills fields the
rules left empty) and reports the share of fields exactly right, documents entirely right, failed checks and the
seconds per page.

    .venv/bin/python bench/vision.py [--part ocr|scan|all] [--repeat 2] [--documents 10]

Prints tables, the command, the machine and the date; writes JSON to bench/results/.
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

from aigw.documents.scan import ScanService
from aigw.engines.ocr.base import OcrEngine
from aigw.engines.ocr.rapid import RapidOcrEngine
from aigw.engines.ocr.tesseract import TesseractEngine
from aigw.vision.image import load_image
from aigw.vision.ocr import OcrService
from aigw.vision.preprocess import deskewed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import documents  # the test documents, shared with tests/test_scan.py

RESULTS = Path(__file__).resolve().parent / "results"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PARAGRAPHS = {
    "en": ["Invoice 2041 is due on 15 March.", "Please pay the total of 1,250.00 EUR", "to the account named below."],
    "fr": ["La facture 2041 est payable le 15 mars.", "Merci de régler le total de 1 250,00 EUR", "sur le compte."],
    "es": ["La factura 2041 vence el 15 de marzo.", "Por favor, pague el total de 1.250,00 EUR", "a la cuenta."],
    "de": ["Die Rechnung 2041 ist am 15. März fällig.", "Bitte überweisen Sie 1.250,00 EUR", "auf das Konto."],
    "pt": ["A fatura 2041 vence em 15 de março.", "Por favor, pague o total de 1.250,00 EUR", "na conta abaixo."],
    "ru": ["Счёт 2041 нужно оплатить до 15 марта.", "Пожалуйста, переведите 1 250,00 EUR", "на указанный счёт."],
    "zh": ["发票2041应于三月十五日前付款。", "请支付总额1,250.00欧元", "至下列账户。"],
    "ja": ["請求書2041は三月十五日が期限です。", "合計1,250.00ユーロを", "下記の口座にお支払いください。"],
    "ko": ["청구서 2041은 3월 15일까지입니다.", "총액 1,250.00 유로를", "아래 계좌로 송금해 주십시오."],
    "hi": ["चालान 2041 का भुगतान 15 मार्च तक करना है।", "कृपया कुल 1,250.00 यूरो", "नीचे दिए गए खाते में भेजें।"],
    "bn": ["চালান 2041 পরিশোধের শেষ তারিখ 15 মার্চ।", "অনুগ্রহ করে মোট 1,250.00 ইউরো", "নিচের অ্যাকাউন্টে পাঠান।"],
    "ar": ["يجب دفع الفاتورة 2041 قبل 15 مارس.", "يرجى دفع المبلغ الإجمالي 1,250.00 يورو", "إلى الحساب أدناه."],
}
FONTS = {  # shaped by Pillow's raqm layout; Arabic is in DejaVu Sans
    "zh": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian fonts-wqy-microhei, as are ja and ko
    "ja": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "ko": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "hi": "/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf",  # Debian fonts-lohit-deva
    "bn": "/usr/share/fonts/truetype/lohit-bengali/Lohit-Bengali.ttf",  # Debian fonts-lohit-beng-bengali
}


def page(lines: list[str], language: str) -> Image.Image:
    font = ImageFont.truetype(FONTS.get(language, FONT), 32, layout_engine=ImageFont.Layout.RAQM)
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


async def run_ocr(repeat: int) -> dict[str, Any]:
    engines: dict[str, OcrEngine] = {"tesseract": TesseractEngine(), "rapidocr": RapidOcrEngine()}
    result: dict[str, Any] = {}
    for language, lines in PARAGRAPHS.items():
        joined = "" if language in ("zh", "ja") else " "  # no spaces between Chinese or Japanese words
        truth = joined.join(lines)
        for name, engine in engines.items():
            if language not in engine.languages():
                continue
            row: dict[str, Any] = {}
            for condition in ("clean", "degraded", "deskewed"):
                image = page(lines, language)
                image = image if condition == "clean" else degraded(image, seed=len(language))
                data = png(image)
                seconds, errors = [], []
                for _ in range(repeat):
                    started = time.perf_counter()
                    decoded = load_image(data)
                    if condition == "deskewed":
                        decoded = deskewed(decoded)[0]
                    read = await engine.read(decoded, [language])
                    seconds.append(time.perf_counter() - started)
                    errors.append(float(jiwer.cer(truth, joined.join(read.split()))))
                row[condition] = {
                    "cer": round(statistics.mean(errors), 4),
                    "seconds_p50": round(statistics.median(seconds), 3),
                }
            result[f"{language} {name}"] = row
            print(language, name, row, flush=True)
    for engine in engines.values():
        await engine.close()
    return result


def _right(extracted: dict[str, Any], truth: dict[str, Any]) -> tuple[int, list[str]]:
    wrong = [name for name, value in truth.items() if extracted.get(name) != value]
    return len(truth) - len(wrong), wrong


async def run_scan(count: int) -> dict[str, Any]:
    rapid = RapidOcrEngine()
    await rapid.warm()
    service = ScanService(OcrService(TesseractEngine(), 50_000_000, rapid), None)
    result: dict[str, Any] = {}
    for kind, render in documents.RENDERERS.items():
        for condition in ("clean", "photo"):
            fields = right = whole = failed_checks = 0
            seconds, misses = [], []
            for seed in range(1, count + 1):
                doc = render(seed)
                image = documents.photographed(doc.image, seed) if condition == "photo" else doc.image
                data = documents.encoded(image, "JPEG", quality=90) if condition == "photo" else png(image)
                started = time.perf_counter()
                scanned = await service.scan(data, kind, "en", 0)
                seconds.append(time.perf_counter() - started)
                good, wrong = _right(scanned.extracted, doc.truth)
                fields, right = fields + len(doc.truth), right + good
                whole += not wrong
                failed_checks += sum(not check["passed"] for check in scanned.checks)
                misses += [f"{seed}:{name}" for name in wrong]
            row = {
                "field_accuracy": round(right / fields, 4),
                "documents_all_right": f"{whole}/{count}",
                "failed_checks": failed_checks,
                "seconds_p50": round(statistics.median(seconds), 2),
                "seconds_max": round(max(seconds), 2),
                "wrong": misses[:12],
            }
            result[f"{kind} {condition}"] = row
            print(kind, condition, row, flush=True)
    await service.close()
    await rapid.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["ocr", "scan", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--documents", type=int, default=10)
    args = parser.parse_args()
    command = "python bench/vision.py " + " ".join(sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: {command}\nmachine: {machine}\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    result: dict[str, Any] = {}
    if args.part in ("ocr", "all"):
        result["ocr"] = asyncio.run(run_ocr(args.repeat))
        print("\n| language, engine | clean CER | s | degraded CER | s | deskewed CER | s |")
        print("|---|---|---|---|---|---|---|")
        for name, row in result["ocr"].items():
            cells = [f"{row[c]['cer']:.1%} | {row[c]['seconds_p50']}" for c in ("clean", "degraded", "deskewed")]
            print(f"| {name} | {' | '.join(cells)} |")
    if args.part in ("scan", "all"):
        result["scan"] = asyncio.run(run_scan(args.documents))
        print("\n| document | fields right | all right | failed checks | s p50 | s max |\n|---|---|---|---|---|---|")
        for name, row in result["scan"].items():
            print(
                f"| {name} | {row['field_accuracy']:.1%} | {row['documents_all_right']} | {row['failed_checks']} "
                f"| {row['seconds_p50']} | {row['seconds_max']} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"vision-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"command": command, "machine": machine, **result}, indent=2, ensure_ascii=False))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
