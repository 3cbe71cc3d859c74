"""Document scanning: classify by evidence, extract by rules that validate themselves, let the chat model fill only
what rules left empty (and only with what the text contains). Knows nothing of HTTP.

Evidence decides the type under `auto`: a machine-readable zone is a passport (TD3) or an ID card (TD1, TD2); an
AAMVA PDF417 barcode is a driver's licence; totals and invoice words an invoice, receipt words a receipt; contact
details a business card.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from PIL import Image

from aigw.chat.service import ChatService
from aigw.documents import aamva, mrz
from aigw.documents.extraction import (
    FIELDS,
    MODEL,
    Extraction,
    from_barcode,
    from_bill,
    from_card,
    from_licence_text,
    from_mrz,
)
from aigw.engines.llm.base import ChatMessage, ChatOptions, ChatRequest, TextDelta
from aigw.engines.ocr.base import Layout
from aigw.engines.ocr.tesseract import iso_languages
from aigw.engines.worker import InferenceWorker
from aigw.errors import AigwError, InvalidField
from aigw.vision.barcodes import Barcode, read_barcodes
from aigw.vision.image import jpeg_base64
from aigw.vision.ocr import OcrService
from aigw.vision.preprocess import deskewed

log = logging.getLogger("aigw.documents")

DOCUMENT_TYPES = ("auto", *FIELDS)
# How each kind is read: with the robust engine (RapidOCR where it covers the language) or Tesseract, and in which
# layout. Measured on rendered documents, clean and photographed (bench/vision.py): RapidOCR reads zones and
# invoice tables in photos better; Tesseract reads receipts (as a table) and cards (sparse) as well, faster.
_READ: dict[str, tuple[bool, Layout]] = {
    "auto": (True, "page"),
    "passport": (True, "page"),
    "id_card": (True, "page"),
    "invoice": (True, "table"),
    "receipt": (False, "table"),
    "business_card": (False, "sparse"),
    "drivers_license": (False, "sparse"),
}
_INVOICE_WORDS = re.compile(r"\b(invoice|bill\s+to|due\s+date|payment\s+terms|rechnung|facture|factura)\b", re.I)
_RECEIPT_WORDS = re.compile(r"\b(receipt|cashier|change|cash|thank\s+you|subtotal|total|quittung|ticket|visa)\b", re.I)
_CONTACT = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\+?\d[\d\s().-]{7,}\d|www\.", re.I)
_MODEL_TEXT_LIMIT = 3000


@dataclass
class ScanResult:
    document_type: str
    raw_text: str
    ai_analysis: str
    extracted: dict[str, Any]
    confidence: dict[str, float]
    checks: list[dict[str, Any]]
    evidence: str
    filled_by_model: list[str] = field(default_factory=list)


class ScanService:
    def __init__(
        self, ocr: OcrService, chat: ChatService | None, vision_model: str | None = None, max_queue: int = 8
    ) -> None:
        self.ocr = ocr
        self.chat = chat
        self.vision_model = vision_model
        self._barcodes = InferenceWorker("barcodes", "The barcode reader", max_queue, 3)

    async def scan(self, data: bytes, document_type: str | None, language: str | None, user_id: int) -> ScanResult:
        """Scan one document image.

        Raises:
            InvalidField: an unknown `document_type` (`unsupported_document_type`) or language.
        """
        wanted = (document_type or "auto").strip().lower()
        if wanted not in DOCUMENT_TYPES:
            raise InvalidField(
                f"Unknown document type {document_type!r}; one of: {', '.join(DOCUMENT_TYPES)}",
                code="unsupported_document_type",
            )
        languages = iso_languages(language)
        image = await self.ocr.decode(data)
        image = (await asyncio.to_thread(deskewed, image))[0]
        licence = None
        if wanted in ("auto", "drivers_license"):
            codes: list[Barcode] = await self._barcodes.run(read_barcodes, image, True)
            licence = next((aamva.parse(code.text) for code in codes if aamva.is_aamva(code.text)), None)
        if licence is not None:
            text = (await self.ocr.engine.read(image, languages, "sparse")).strip()
            extraction = from_barcode(licence, text)
        else:
            text, extraction = await self._extract(image, languages, wanted)
        filled = await self._fill(extraction, text, user_id, image)
        return ScanResult(
            document_type=extraction.document_type,
            raw_text=text,
            ai_analysis=_analysis(extraction, filled),
            extracted=extraction.fields,
            confidence=extraction.confidence,
            checks=[{"name": c.name, "passed": c.passed, "detail": c.detail} for c in extraction.checks],
            evidence=extraction.evidence,
            filled_by_model=filled,
        )

    async def _extract(self, image: Image.Image, languages: list[str], wanted: str) -> tuple[str, Extraction]:
        robust, layout = _READ[wanted]
        engine = self.ocr.choose(languages, robust=robust)
        text = (await engine.read(image, languages, layout)).strip()
        identity = wanted in ("auto", "passport", "id_card")
        zone = mrz.find(text) if identity else None
        if identity and (zone is None or not _certain(zone)) and (zone is not None or wanted != "auto"):
            # Tesseract, reading only the zone's alphabet, may read the zone where the first engine did not.
            other_zone = mrz.find(await self.ocr.engine.read(image, languages, "mrz"))
            if other_zone is not None and (zone is None or mrz.score(other_zone) > mrz.score(zone)):
                zone = other_zone  # the text stays the first read's: the second is only the zone's alphabet
        kind = wanted if wanted != "auto" else _classify(text, zone)
        if zone is not None and kind in ("passport", "id_card"):
            if wanted == "auto":
                kind = "passport" if zone.document_code.startswith("P") else "id_card"
            return text, from_mrz(zone, text, kind)
        if kind in _READ and _READ[kind] != (robust, layout):
            text = await self.ocr.choose(languages, robust=_READ[kind][0]).read(image, languages, _READ[kind][1])
            text = text.strip()
        month_first = languages[0] == "en"  # 04/05/2025 is April 5 in American English
        if kind in ("invoice", "receipt"):
            extraction = from_bill(text, kind, month_first)
        elif kind == "business_card":
            extraction = from_card(text, _region(languages))
        elif kind == "drivers_license":
            extraction = from_licence_text(text)
        else:
            extraction = Extraction(kind)
        if wanted == "auto":
            extraction.evidence = _evidence(text, kind)
        elif not extraction.evidence:
            extraction.evidence = "document type given by the caller"
        return text, extraction

    async def _fill(self, extraction: Extraction, text: str, user_id: int, image: Image.Image) -> list[str]:
        """Ask for the fields rules left empty: the vision model, with the image, when one is configured
        (`AIGW_VISION_MODEL`); else the chat model, keeping only values the OCR text itself contains."""
        missing = [name for name in extraction.missing() if name != "line_items" and not name.startswith("mrz_")]
        if self.chat is None or not missing or len(text) < 20 or extraction.document_type == "unknown":
            return []
        kind = extraction.document_type.replace("_", " ")
        source = "image and the OCR text" if self.vision_model else "OCR text"
        prompt = (
            f"Below is the {source} of a {kind}. Answer with one JSON object with exactly these keys: "
            f"{', '.join(missing)}. Copy each value exactly as it is printed; use null when the document does not say."
        )
        images = [jpeg_base64(image)] if self.vision_model else None
        request = ChatRequest(
            messages=[
                ChatMessage(role="system", content="You extract fields from documents and answer only in JSON."),
                ChatMessage(role="user", content=f"{prompt}\n\n{text[:_MODEL_TEXT_LIMIT]}", images=images),
            ],
            options=ChatOptions(temperature=0, num_predict=200),
        )
        try:
            session = await self.chat.start(user_id, self.vision_model, request, inject=False)
            answer = "".join([event.text async for event in session.events() if isinstance(event, TextDelta)])
        except AigwError as exc:  # the model is busy or down: the rules' result stands
            log.warning("scan could not ask the chat model", extra={"error": exc.message})
            return []
        filled = []
        for name, value in _json_object(answer).items():
            readable = self.vision_model is not None or _in_text(str(value), text)  # a vision model reads the image
            if name in missing and isinstance(value, str | int | float) and readable:
                extraction.put(name, str(value).strip(), MODEL)
                filled.append(name)
        return filled

    async def close(self) -> None:
        await self._barcodes.close()


def _certain(zone: mrz.Mrz) -> bool:
    """Every check passed without undoing an OCR confusion."""
    return zone.valid and all(check.detail != mrz.REPAIRED for check in zone.checks)


def _classify(text: str, zone: mrz.Mrz | None) -> str:
    if zone is not None:
        return "passport" if zone.document_code.startswith("P") else "id_card"
    if _INVOICE_WORDS.search(text):
        return "invoice"
    if len(_RECEIPT_WORDS.findall(text)) >= 2:
        return "receipt"
    if len(_CONTACT.findall(text)) >= 2:
        return "business_card"
    if re.search(r"\b(driver'?s?\s+licen[cs]e|DL\s+No|class\s+[A-D]\b)", text, re.I):
        return "drivers_license"
    return "unknown"


def _evidence(text: str, kind: str) -> str:
    if kind == "invoice":
        return "invoice words: " + ", ".join(sorted({m.lower() for m in _INVOICE_WORDS.findall(text)}))
    if kind == "receipt":
        return "receipt words: " + ", ".join(sorted({m.lower() for m in _RECEIPT_WORDS.findall(text)}))
    if kind == "business_card":
        return f"{len(_CONTACT.findall(text))} contact details (emails, phones, websites)"
    if kind == "drivers_license":
        return "driver's licence words in the printed text (no barcode found)"
    return "no machine-readable zone, barcode, totals or contact details found"


def _region(languages: list[str]) -> str:
    return {
        "en": "US",
        "fr": "FR",
        "es": "ES",
        "de": "DE",
        "pt": "BR",
        "ru": "RU",
        "ja": "JP",
        "zh": "CN",
        "ko": "KR",
        "hi": "IN",
        "bn": "BD",
        "ar": "SA",
    }.get(languages[0], "US")


def _json_object(answer: str) -> dict[str, Any]:
    match = re.search(r"\{.*\}", answer, re.DOTALL)
    if not match:
        return {}
    try:
        value = orjson.loads(match.group())
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _in_text(value: str, text: str) -> bool:
    """Whether the text contains the value (letters and digits compared, case and spacing ignored)."""
    wanted = re.sub(r"\W", "", value).lower()
    return len(wanted) >= 2 and wanted in re.sub(r"\W", "", text).lower()


def _analysis(extraction: Extraction, filled: list[str]) -> str:
    """What was found and how far it can be trusted, in words."""
    kind = extraction.document_type.replace("_", " ")
    if extraction.document_type == "unknown":
        return "The document type could not be recognised: " + extraction.evidence + "."
    fields = [name for name in FIELDS[extraction.document_type] if name in extraction.fields]
    parts = [f"A {kind} ({extraction.evidence})."]
    name = extraction.fields.get("full_name") or extraction.fields.get("vendor_name")
    if name:
        parts.append(f"It names {name}.")
    total = extraction.fields.get("total_amount")
    if total is not None:
        parts.append(f"Total {total} {extraction.fields.get('currency', '')}".rstrip() + ".")
    failed = [check.name for check in extraction.checks if not check.passed]
    if extraction.checks and not failed:
        parts.append(f"All {len(extraction.checks)} checks pass.")
    elif failed:
        parts.append(
            f"{len(failed)} of {len(extraction.checks)} checks failed ({', '.join(failed)}): treat those "
            "values with care."
        )
    parts.append(f"{len(fields)} of {len(FIELDS[extraction.document_type])} fields found.")
    if filled:
        parts.append(f"The chat model read {', '.join(filled)} from the text; verify those.")
    return " ".join(parts)
