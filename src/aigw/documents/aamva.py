"""AAMVA driver's licences and ID cards: the PDF417 barcode on the back, its element ids parsed into fields.

The barcode text is a header (`@`, control characters, `ANSI ` and the issuer's IIN), then subfiles (`DL`, `ID`)
whose elements are a three-letter id and a value, one per line. Dates are MMDDCCYY in the United States and
CCYYMMDD in Canada.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

_ELEMENT = re.compile(r"^(?:DL|ID)?(D[A-Z]{2}|Z[A-Z]{2})(.*)$")
_HEADER = re.compile(r"(?:ANSI |AAMVA)\s?(\d{6})(\d{2})")
# The header up to the first subfile: IIN, AAMVA version, jurisdiction version, entries, then per subfile its
# type, offset and length (`DL00410278`).
_DESIGNATORS = re.compile(r"(?:ANSI |AAMVA)\s?\d{6}\d{2}(?:\d{4})?(?:[A-Z]{2}\d{8})+")
_SEX = {"1": "M", "2": "F", "9": "X", "M": "M", "F": "F"}


@dataclass
class Licence:
    elements: dict[str, str]
    version: int | None
    issuer: str | None  # the issuer's identification number (IIN)
    fields: dict[str, str] = field(default_factory=dict)
    dates: dict[str, date] = field(default_factory=dict)


def is_aamva(text: str) -> bool:
    return bool(_HEADER.search(text[:64])) or "\nDAQ" in text or "DLDAQ" in text


def parse(text: str) -> Licence:
    """Elements and the seed's licence fields from the barcode's text."""
    header = _HEADER.search(text[:64])
    elements: dict[str, str] = {}
    body = _DESIGNATORS.sub("\n", text, count=1)
    for raw in re.split(r"[\n\r\x1e]+", body):
        match = _ELEMENT.match(raw.strip())
        if match and match.group(1) not in elements:
            elements[match.group(1)] = match.group(2).strip()
    licence = Licence(elements, int(header.group(2)) if header else None, header.group(1) if header else None)
    canadian = elements.get("DCG", "").upper() == "CAN"
    for name, element in (("date_of_birth", "DBB"), ("issue_date", "DBD"), ("expiry_date", "DBA")):
        parsed = _date(elements.get(element, ""), canadian)
        if parsed is not None:
            licence.dates[name] = parsed
    licence.fields = {name: value for name, value in _fields(elements).items() if value}
    return licence


def _fields(elements: dict[str, str]) -> dict[str, str]:
    family = elements.get("DCS") or elements.get("DAB", "")
    first = elements.get("DAC") or elements.get("DCT", "").replace(",", " ")
    middle = elements.get("DAD", "")
    given = " ".join(part for part in (first, middle) if part and part.upper() not in ("NONE", "UNAVL"))
    full_name = " ".join(part for part in (given, family) if part) or elements.get("DAA", "").replace(",", " ")
    street = " ".join(part for part in (elements.get("DAG", ""), elements.get("DAH", "")) if part)
    postal = elements.get("DAK", "")
    postal = postal[:5] + ("-" + postal[5:9] if len(postal) >= 9 and postal[5:9] != "0000" else "") if postal else ""
    city_line = " ".join(part for part in (elements.get("DAI", "") + ",", elements.get("DAJ", ""), postal) if part)
    address = ", ".join(part for part in (street, city_line.strip(", ")) if part)
    return {
        "full_name": _titled(full_name),
        "surname": _titled(family),
        "given_names": _titled(given),
        "address": address,
        "license_number": elements.get("DAQ", ""),
        "class": elements.get("DCA", ""),
        "sex": _SEX.get(elements.get("DBC", ""), ""),
        "height": _height(elements.get("DAU", "")),
        "restrictions": elements.get("DCB", ""),
        "endorsements": elements.get("DCD", ""),
        "eye_color": elements.get("DAY", ""),
        "state": elements.get("DAJ", ""),
        "country": elements.get("DCG", ""),
    }


def _titled(name: str) -> str:
    return " ".join(part.capitalize() if part.isupper() else part for part in name.split())


def _height(value: str) -> str:
    """`070 IN` → `5'10"` (70 in); `175 CM` → `175 cm`."""
    match = re.match(r"(\d+)\s*(IN|CM)?", value.upper())
    if not match:
        return value
    number = int(match.group(1))
    if match.group(2) == "CM":
        return f"{number} cm"
    return f"{number // 12}'{number % 12:02d}\""


def _date(value: str, canadian: bool) -> date | None:
    """MMDDCCYY (United States) or CCYYMMDD (Canada; also tried when the first reading is no date)."""
    if not re.fullmatch(r"\d{8}", value):
        return None
    readings = [(value[0:4], value[4:6], value[6:8]), (value[4:8], value[0:2], value[2:4])]
    for year, month, day in readings if canadian else readings[::-1]:
        try:
            return date(int(year), int(month), int(day))
        except ValueError:
            continue
    return None
