"""Fields per document family, each with a confidence and the checks that validated it.

Confidence says where a value came from: a check digit or the arithmetic confirmed it (0.99/0.95), a barcode
carried it (0.99), a rule read it from the printed text (0.7), the arithmetic gave an unreadable amount (0.6), or
the chat model proposed it and the text contains it (0.4). Fields a check confirmed are `validated`: nothing later
may overwrite them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aigw.documents import aamva, card, invoice, mrz
from aigw.documents.countries import country_name
from aigw.documents.dates import display, find_date
from aigw.documents.mrz import Check

FIELDS: dict[str, tuple[str, ...]] = {
    "passport": (
        "full_name",
        "surname",
        "given_names",
        "nationality",
        "date_of_birth",
        "sex",
        "place_of_birth",
        "date_of_issue",
        "date_of_expiry",
        "passport_number",
        "issuing_authority",
        "mrz_line_1",
        "mrz_line_2",
    ),
    "id_card": (
        "full_name",
        "surname",
        "given_names",
        "nationality",
        "date_of_birth",
        "sex",
        "date_of_issue",
        "date_of_expiry",
        "document_number",
        "issuing_country",
        "place_of_birth",
        "address",
        "mrz_line_1",
        "mrz_line_2",
        "mrz_line_3",
    ),
    "drivers_license": (
        "full_name",
        "date_of_birth",
        "address",
        "license_number",
        "class",
        "issue_date",
        "expiry_date",
        "sex",
        "height",
        "restrictions",
    ),
    "invoice": (
        "vendor_name",
        "invoice_number",
        "invoice_date",
        "due_date",
        "line_items",
        "subtotal",
        "tax",
        "total_amount",
        "currency",
    ),
    "receipt": (
        "vendor_name",
        "receipt_number",
        "date",
        "line_items",
        "subtotal",
        "tax",
        "total_amount",
        "currency",
        "payment_method",
    ),
    "business_card": ("full_name", "title", "company", "emails", "phones", "websites", "address"),
}
CHECKED, BARCODE, ARITHMETIC, PRINTED, DERIVED, MODEL = 0.99, 0.99, 0.95, 0.7, 0.6, 0.4

# Labels of the printed zone of passports and ID cards (English, French, Spanish, German, Portuguese).
_PRINTED_LABELS = {
    "place_of_birth": r"place\s+of\s+birth|lieu\s+de\s+naissance|lugar\s+de\s+nacimiento|geburtsort|"
    r"local\s+de\s+nascimento",
    "date_of_issue": r"date\s+of\s+issue|date\s+de\s+d[ée]livrance|fecha\s+de\s+expedici[óo]n|ausstellungsdatum|"
    r"data\s+de\s+emiss[ãa]o|issued",
    "issuing_authority": r"issuing\s+authority|authority|autorit[ée]|autoridad|beh[öo]rde|autoridade",
    "address": r"address|adresse|domicilio|anschrift|endere[çc]o",
}
_ANY_LABEL = "|".join(f"(?:{label})" for label in _PRINTED_LABELS.values())
_LICENCE_LABELS = {
    "license_number": r"(?:dl|lic(?:ense)?|licence)\s*(?:no|number|#)?",
    "class": r"class",
    "date_of_birth": r"dob|date\s+of\s+birth",
    "issue_date": r"iss(?:ued)?",
    "expiry_date": r"exp(?:ires)?",
    "sex": r"sex",
    "height": r"hgt|height",
    "restrictions": r"restr?(?:ictions)?",
}
_PAYMENT_METHODS = {
    "american express": "American Express",
    "amex": "American Express",
    "visa": "Visa",
    "mastercard": "Mastercard",
    "maestro": "Maestro",
    "paypal": "PayPal",
    "apple pay": "Apple Pay",
    "google pay": "Google Pay",
    "debit": "Debit card",
    "credit": "Credit card",
    "cash": "Cash",
    "card": "Card",
}
_DATE_FIELDS = {
    "date_of_birth",
    "date_of_issue",
    "date_of_expiry",
    "issue_date",
    "expiry_date",
    "invoice_date",
    "due_date",
    "date",
}


@dataclass
class Extraction:
    document_type: str
    fields: dict[str, Any] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    validated: set[str] = field(default_factory=set)
    evidence: str = ""

    def put(self, name: str, value: Any, confidence: float) -> None:
        """Set a field unless it is empty or a check already validated it."""
        if value in (None, "", [], {}) or name in self.validated:
            return
        self.fields[name] = value
        self.confidence[name] = confidence

    def put_date(self, name: str, value: date | None, confidence: float) -> None:
        if value is not None and name not in self.validated:
            self.put(name, display(value), confidence)
            self.fields[f"{name}_iso"] = value.isoformat()

    def missing(self) -> list[str]:
        return [name for name in FIELDS.get(self.document_type, ()) if name not in self.fields]


def from_mrz(zone: mrz.Mrz, text: str, document_type: str) -> Extraction:
    """A passport or ID card from its machine-readable zone, the printed zone filling what the zone lacks."""
    out = Extraction(document_type, evidence=f"machine-readable zone ({zone.layout})")
    out.checks = list(zone.checks)
    passed = {check.name for check in zone.checks if check.passed}
    structural = CHECKED if zone.valid else PRINTED  # fields no digit covers are as good as the zone they sit in
    given, surname = zone.given_names.title(), zone.surname.title()
    out.put("full_name", " ".join(part for part in (given, surname) if part), structural)
    out.put("surname", surname, structural)
    out.put("given_names", given, structural)
    out.put("nationality", country_name(zone.nationality) or zone.nationality.replace("<", ""), structural)
    out.put("nationality_code", zone.nationality.replace("<", ""), structural)
    out.put("sex", zone.sex, structural)
    out.put_date("date_of_birth", zone.birth, CHECKED if "date_of_birth" in passed else PRINTED)
    out.put_date("date_of_expiry", zone.expiry, CHECKED if "date_of_expiry" in passed else PRINTED)
    number_field = "passport_number" if document_type == "passport" else "document_number"
    out.put(number_field, zone.document_number.replace("<", ""), CHECKED if "document_number" in passed else PRINTED)
    if document_type != "passport":
        out.put("issuing_country", country_name(zone.issuing_state) or zone.issuing_state.replace("<", ""), structural)
    for i, line in enumerate(zone.lines, start=1):
        out.put(f"mrz_line_{i}", line, structural)
    out.validated |= {name for name in out.fields if out.confidence.get(name) == CHECKED}
    _printed_zone(out, text)
    return out


def from_barcode(licence: aamva.Licence, text: str) -> Extraction:
    """A driver's licence from its AAMVA barcode; the OCR text of the card fills what the barcode lacks."""
    out = Extraction("drivers_license", evidence="AAMVA PDF417 barcode")
    for name, value in licence.fields.items():
        out.put(name, value, BARCODE)
    for name, when in licence.dates.items():
        out.put_date(name, when, BARCODE)
    out.checks.append(Check("aamva_header", licence.version is not None, f"AAMVA version {licence.version}"))
    out.validated |= set(out.fields)
    _licence_front(out, text)
    return out


def from_licence_text(text: str) -> Extraction:
    """A driver's licence from the printed front alone (no barcode was readable)."""
    out = Extraction("drivers_license", evidence="licence labels in the printed text (no barcode found)")
    _licence_front(out, text)
    return out


def from_bill(text: str, document_type: str, month_first: bool = False) -> Extraction:
    bill = invoice.parse(text, document_type, month_first)
    out = Extraction(document_type)
    for name, value in bill.fields.items():
        out.put(name, value, ARITHMETIC if name in bill.validated else DERIVED if name in bill.derived else PRINTED)
    for name, value in bill.dates.items():
        out.put_date(name, value, PRINTED)
    if document_type == "receipt":
        method = re.search(rf"\b({'|'.join(_PAYMENT_METHODS)})\b", text, re.IGNORECASE)
        if method:
            out.put("payment_method", _PAYMENT_METHODS[method.group(1).lower()], PRINTED)
    out.checks = bill.checks
    out.validated |= bill.validated
    return out


def from_card(text: str, region: str) -> Extraction:
    out = Extraction("business_card")
    for name, value in card.parse(text, region).items():
        out.put(name, value, PRINTED)
    return out


def _printed_zone(out: Extraction, text: str) -> None:
    for name, label in _PRINTED_LABELS.items():
        if name not in FIELDS[out.document_type]:
            continue
        value = _labelled(text, label)
        if not value:
            continue
        if name == "date_of_issue":
            out.put_date(name, find_date(value), PRINTED)
        else:
            out.put(name, value.title() if value.isupper() else value, PRINTED)


def _licence_front(out: Extraction, text: str) -> None:
    for name, label in _LICENCE_LABELS.items():
        value = _labelled(text, label, same_line_only=True)
        if not value:
            continue
        if name in _DATE_FIELDS:
            out.put_date(name, find_date(value, month_first=True), PRINTED)
        else:
            out.put(name, value.split("  ")[0], PRINTED)


def _labelled(text: str, label: str, *, same_line_only: bool = False) -> str:
    """The value after a label: on the same line (`Place of birth: Lyon`, `4d DL 123`), or below it, as passports
    print it. Columns of a form (three or more spaces apart) are kept apart: the value below a label is the one in
    the same column. A bilingual label (`Place of birth / Lieu de naissance`) is one label."""
    lines = [re.split(r"\s{3,}", line.strip()) for line in text.splitlines()]
    pattern = re.compile(rf"(?:^|\b\d?[a-z]?\s*)(?:{label})\b", re.IGNORECASE)
    for i, columns in enumerate(lines):
        for column, cell in enumerate(columns):
            match = pattern.search(cell)
            if not match:
                continue
            value = cell[match.end() :]
            while True:  # the same label in the other languages of a bilingual document
                value = value.lstrip(" /:.")
                more = re.match(rf"(?:{label}|{_ANY_LABEL})\b", value, re.IGNORECASE)
                if not more or not more.group():
                    break
                value = value[more.end() :]
            value = value.strip(" :/")
            if value:
                return value
            if not same_line_only and i + 1 < len(lines):
                below = lines[i + 1]
                return below[column] if column < len(below) and len(below) == len(columns) else " ".join(below)
    return ""
