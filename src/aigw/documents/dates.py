"""Dates as documents print them (2024-01-15, 15/01/2024, 15 Jan 2024, Jan 15, 2024, 15. Januar 2024), and the
seed's display form ("15 Jan 1990")."""

from __future__ import annotations

import re
from datetime import date

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Month names and abbreviations in the seed's Latin-script OCR languages (en fr es de pt).
_MONTH_NAMES = {
    **{name: i + 1 for i, name in enumerate(_MONTHS)},
    "sept": 9,
    "januar": 1,
    "februar": 2,
    "märz": 3,
    "maerz": 3,
    "mai": 5,
    "juni": 6,
    "juli": 7,
    "okt": 10,
    "dez": 12,
    "janv": 1,
    "févr": 2,
    "fevr": 2,
    "mars": 3,
    "avr": 4,
    "juin": 6,
    "juil": 7,
    "août": 8,
    "aout": 8,
    "déc": 12,
    "ene": 1,
    "abr": 4,
    "ago": 8,
    "dic": 12,
    "fev": 2,
    "set": 9,
    "out": 10,
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
}
_MONTH = r"([A-Za-zÀ-ÿ]{3,10})\.?"
_PATTERNS = (
    (re.compile(r"\b(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})\b"), "ymd"),
    (re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})\b"), "dmy?"),
    (re.compile(rf"\b(\d{{1,2}})\.?\s+(?:de\s+)?{_MONTH},?\s+(?:de\s+)?(\d{{4}})\b"), "dMy"),
    (re.compile(rf"\b{_MONTH}\s+(\d{{1,2}}),?\s+(\d{{4}})\b"), "Mdy"),
)


def find_date(text: str, *, month_first: bool = False) -> date | None:
    """The first date in `text`. A numeric date whose order is ambiguous (03/04/2024) is read day first unless
    `month_first`; one that is only valid one way is read that way."""
    for pattern, order in _PATTERNS:
        for match in pattern.finditer(text):
            found = _date(match.groups(), order, month_first)
            if found is not None:
                return found
    return None


def display(value: date) -> str:
    """The seed's display form: `15 Jan 1990`."""
    return f"{value.day:02d} {_MONTHS[value.month - 1].capitalize()} {value.year}"


def _date(groups: tuple[str, ...], order: str, month_first: bool) -> date | None:
    try:
        if order == "ymd":
            return date(int(groups[0]), int(groups[1]), int(groups[2]))
        if order == "dmy?":
            first, second, year = int(groups[0]), int(groups[1]), _year(groups[2])
            day_first = not month_first if first <= 12 and second <= 12 else first > 12
            return date(year, second, first) if day_first else date(year, first, second)
        if order == "dMy":
            month = _month(groups[1])
            return date(int(groups[2]), month, int(groups[0])) if month else None
        month = _month(groups[0])
        return date(int(groups[2]), month, int(groups[1])) if month else None
    except ValueError:
        return None


def _month(name: str) -> int | None:
    name = name.lower()
    return _MONTH_NAMES.get(name) or _MONTH_NAMES.get(name[:4]) or _MONTH_NAMES.get(name[:3])


def _year(text: str) -> int:
    year = int(text)
    return year + 2000 if year < 100 else year
