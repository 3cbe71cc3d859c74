"""Invoices and receipts from their OCR text: vendor, number, dates, line items and totals, cross-checked.

The arithmetic is the validation: each line's quantity times unit price is its amount, the amounts sum to the
subtotal, and subtotal plus tax is the total. A total that agrees with both is trusted over any other reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from aigw.documents.dates import find_date
from aigw.documents.mrz import Check

_CENT = Decimal("0.01")
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₽": "RUB", "₩": "KRW", "CHF": "CHF"}
_CODES = (
    "USD",
    "EUR",
    "GBP",
    "JPY",
    "INR",
    "RUB",
    "KRW",
    "CHF",
    "CAD",
    "AUD",
    "CNY",
    "BRL",
    "MXN",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "CZK",
    "HUF",
    "BDT",
)
_AMOUNT = r"-?[$€£¥₹₽₩]?\s?\d{1,3}(?:[,.]\d{3})*(?:[.,]\d{2})|-?[$€£¥₹₽₩]?\s?\d+(?:[.,]\d{2})"
_AMOUNT_AT_END = re.compile(rf"({_AMOUNT})\s*(?:[A-Z]{{3}})?\s*$")
_LABELS = {
    "subtotal": r"sub[\s-]?total|net\s+(?:total|amount)|zwischensumme|sous[\s-]total|subtotal",
    "tax": r"(?:sales\s+)?tax|vat|gst|hst|mwst|tva|iva|ust",
    "total": r"(?:grand\s+)?total(?:\s+(?:due|amount|eur|usd))?|amount\s+due|balance\s+due|gesamt(?:betrag)?|"
    r"montant\s+total|importe\s+total|total\s+a\s+pagar",
}
_NUMBER = re.compile(
    r"(?:invoice|inv|rechnung|facture|factura|receipt|bill|order)\s*(?:no\.?|nr\.?|number|num|n°|#)\s*[:#.]?\s*"
    r"([A-Z0-9][A-Z0-9/-]{2,})",
    re.IGNORECASE,
)
_ITEM = re.compile(
    rf"^(?P<description>.*?[A-Za-z].*?)\s+(?:(?P<quantity>\d+(?:[.,]\d+)?)\s*(?:x|@|pcs|units?)?\s+"
    rf"(?:(?P<unit>{_AMOUNT})\s+)?)?(?P<amount>{_AMOUNT})\s*$"
)


@dataclass
class LineItem:
    description: str
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "quantity": _number(self.quantity) if self.quantity is not None else None,
            "unit_price": float(self.unit_price) if self.unit_price is not None else None,
            "amount": float(self.amount),
        }


@dataclass
class Bill:
    fields: dict[str, Any] = field(default_factory=dict)
    dates: dict[str, date] = field(default_factory=dict)
    items: list[LineItem] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    validated: set[str] = field(default_factory=set)  # fields the arithmetic confirmed
    derived: set[str] = field(default_factory=set)  # fields computed from others because they were unreadable


def parse_amount(text: str) -> Decimal | None:
    """`1,234.56`, `1.234,56`, `$ 12.00`, `12,00` as a Decimal; None when it is no amount."""
    text = re.sub(r"[^\d.,-]", "", text)
    if not re.search(r"\d", text):
        return None
    negative = text.startswith("-")
    text = text.lstrip("-")
    decimal_mark = max(text.rfind("."), text.rfind(","))
    if decimal_mark >= 0 and len(text) - decimal_mark - 1 == 2:
        whole, cents = text[:decimal_mark], text[decimal_mark + 1 :]
    else:
        whole, cents = text, "00"
    try:
        value = Decimal(re.sub(r"[.,]", "", whole) or "0") + Decimal(cents) / 100
    except InvalidOperation:
        return None
    return -value if negative else value


def parse(text: str, kind: str, month_first: bool = False) -> Bill:
    """Fields of an invoice or a receipt (`kind`) from its OCR text; `month_first` reads 04/05/2025 as April 5."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    bill = Bill()
    bill.fields["vendor_name"] = _vendor(lines)
    number = _NUMBER.search(text)
    if number:
        bill.fields["invoice_number" if kind == "invoice" else "receipt_number"] = number.group(1)
    totals = _totals(lines)
    bill.items = _items(lines)
    _dates(lines, bill, kind, month_first)
    bill.fields["currency"] = _currency(text)
    tax_printed = any(_label(line) == "tax" for line in lines)
    _reconcile(bill, totals, tax_printed)
    if bill.items:
        bill.fields["line_items"] = [item.as_dict() for item in bill.items]
    return bill


def _vendor(lines: list[str]) -> str:
    for line in lines[:6]:
        if re.search(r"invoice|receipt|rechnung|facture|factura|quittung|bill\b|^date|^\d", line, re.IGNORECASE):
            continue
        if sum(char.isalpha() for char in line) >= 3:
            return line
    return ""


def _label(line: str) -> str | None:
    head = _AMOUNT_AT_END.sub("", line).strip(" :.").lower()
    for name in ("subtotal", "tax", "total"):  # subtotal first: it contains "total"
        if re.match(rf"^(?:{_LABELS[name]})\b", head):
            return name
    return None


def _totals(lines: list[str]) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for line in lines:
        name = _label(line)
        amount = _AMOUNT_AT_END.search(line)
        if name is None or amount is None:
            continue
        value = parse_amount(amount.group(1))
        if value is not None and (name not in found or name == "total"):  # the last total is the grand total
            found[name] = value
    return found


def _items(lines: list[str]) -> list[LineItem]:
    items = []
    for line in lines:
        if _label(line) is not None or re.search(r"date|due|page|tel|phone|invoice|change|cash|card", line, re.I):
            continue
        match = _ITEM.match(line)
        if not match:
            continue
        amount = parse_amount(match.group("amount"))
        unit = parse_amount(match.group("unit")) if match.group("unit") else None
        quantity = Decimal(match.group("quantity").replace(",", ".")) if match.group("quantity") else None
        if amount is None:
            continue
        if quantity and unit is None:
            unit = (amount / quantity).quantize(_CENT)
        description = match.group("description").strip(" .:-")
        items.append(LineItem(description, quantity, unit, amount))
    return items


def _dates(lines: list[str], bill: Bill, kind: str, month_first: bool) -> None:
    main = "invoice_date" if kind == "invoice" else "date"
    for line in lines:
        lowered = line.lower()
        found = find_date(line, month_first=month_first)
        if found is None:
            continue
        if re.search(r"due|payable|fällig|échéance|vencimiento", lowered):
            bill.dates.setdefault("due_date", found)
        else:
            bill.dates.setdefault(main, found)


def _currency(text: str) -> str:
    for code in _CODES:
        if re.search(rf"\b{code}\b", text):
            return code
    for symbol, code in _SYMBOLS.items():
        if symbol in text:
            return code
    return ""


def _reconcile(bill: Bill, totals: dict[str, Decimal], tax_printed: bool) -> None:
    subtotal, tax, total = totals.get("subtotal"), totals.get("tax"), totals.get("total")
    if tax is None and tax_printed and subtotal is not None and total is not None and total >= subtotal:
        # The tax line is there but its amount was unreadable: it is what the total adds to the subtotal.
        tax = total - subtotal
        bill.derived.add("tax")
        bill.checks.append(Check("tax_read", False, f"tax amount unreadable; taken as total - subtotal = {tax}"))
    items_sum = sum((item.amount for item in bill.items), Decimal(0))
    for item in bill.items:
        if item.quantity is not None and item.unit_price is not None:
            expected = (item.quantity * item.unit_price).quantize(_CENT)
            if expected != item.amount:
                bill.checks.append(
                    Check(
                        f"line {item.description!r}",
                        False,
                        f"{item.quantity} x {item.unit_price} is {expected}, not {item.amount}",
                    )
                )
    if bill.items and subtotal is None and total is not None and tax is not None and items_sum + tax == total:
        subtotal = items_sum
    if bill.items and subtotal is not None:
        passed = items_sum == subtotal
        bill.checks.append(
            Check("line_items_sum_to_subtotal", passed, f"items sum to {items_sum}, subtotal {subtotal}")
        )
        if passed:
            bill.validated.update({"subtotal", "line_items"})
    if subtotal is not None and tax is not None and total is not None and "tax" not in bill.derived:
        passed = subtotal + tax == total
        bill.checks.append(
            Check("subtotal_plus_tax_is_total", passed, f"{subtotal} + {tax} = {subtotal + tax}, total {total}")
        )
        if passed:
            bill.validated.update({"subtotal", "tax", "total_amount"})
    elif total is not None and subtotal is not None and tax is None and subtotal == total:
        bill.validated.add("total_amount")
    if subtotal is not None:
        bill.fields["subtotal"] = float(subtotal)
    if tax is not None:
        bill.fields["tax"] = float(tax)
    if total is not None:
        bill.fields["total_amount"] = float(total)


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)
