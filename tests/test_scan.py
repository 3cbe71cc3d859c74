"""POST /api/vision/scan through real HTTP on rendered documents: every extracted field is compared with the
truth the renderer used, clean and as a phone photo (tilted 5 degrees, blurred, noisy, JPEG); `auto` says which
evidence decided; a broken check digit is a failed check; bad input gets clear 4xx errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import documents
from conftest import Gateway, start_gateway

SEED_FIELDS = {  # the seed's field lists
    "passport": {
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
    },
    "drivers_license": {
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
    },
    "invoice": {
        "vendor_name",
        "invoice_number",
        "invoice_date",
        "due_date",
        "line_items",
        "subtotal",
        "tax",
        "total_amount",
        "currency",
    },
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-scan"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.new_user(rate_limit=1_000_000).key, timeout=180)


def scan(client: httpx.Client, data: bytes, name: str, **form: str) -> dict[str, Any]:
    resp = client.post("/api/vision/scan", files={"file": (name, data)}, data=form)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {"document_type", "raw_text", "ai_analysis", "extracted", "filename"} <= set(body)
    assert body["filename"] == name and body["ai_analysis"]
    return body


def wrong_fields(body: dict[str, Any], truth: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    extracted = body["extracted"]
    return {name: (extracted.get(name), value) for name, value in truth.items() if extracted.get(name) != value}


def squeezed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Line items with spaces taken out of descriptions (a photo's OCR may lose one before a parenthesis)."""
    return [{**item, "description": item["description"].replace(" ", "")} for item in items]


def document(kind: str, seed: int, photo: bool) -> tuple[documents.Document, bytes, str]:
    doc = documents.RENDERERS[kind](seed)
    if photo:
        return doc, documents.encoded(documents.photographed(doc.image, seed), "JPEG", quality=90), f"{kind}.jpg"
    return doc, documents.encoded(doc.image), f"{kind}.png"


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo"])
@pytest.mark.parametrize("seed", [1, 2])
def test_passport_fields_match_the_truth(client: httpx.Client, seed: int, photo: bool) -> None:
    doc, data, name = document("passport", seed, photo)
    body = scan(client, data, name, type="passport")
    assert body["document_type"] == "passport"
    assert not wrong_fields(body, doc.truth), body
    assert set(body["extracted"]) >= SEED_FIELDS["passport"] - {"issuing_authority"}
    assert body["checks"] and all(check["passed"] for check in body["checks"]), body["checks"]
    assert body["confidence"]["passport_number"] >= 0.99 and body["confidence"]["date_of_birth"] >= 0.99
    assert body["extracted"]["date_of_birth_iso"].count("-") == 2


def test_auto_recognises_a_passport_by_its_machine_readable_zone(client: httpx.Client) -> None:
    doc, data, name = document("passport", 3, False)
    body = scan(client, data, name)  # type defaults to auto
    assert body["document_type"] == "passport" and "TD3" in body["evidence"]
    assert not wrong_fields(body, doc.truth), body


def test_a_broken_check_digit_is_a_failed_check(client: httpx.Client) -> None:
    doc = documents.passport(4, break_check=True)
    body = scan(client, documents.encoded(doc.image), "broken.png", type="passport")
    failed = {check["name"] for check in body["checks"] if not check["passed"]}
    assert "document_number" in failed, body["checks"]
    assert body["confidence"]["passport_number"] < 0.99
    assert "failed" in body["ai_analysis"]


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo"])
def test_id_card_with_a_td1_zone(client: httpx.Client, photo: bool) -> None:
    doc, data, name = document("id_card", 4, photo)
    body = scan(client, data, name, type="auto")
    assert body["document_type"] == "id_card" and "TD1" in body["evidence"]
    assert not wrong_fields(body, doc.truth), body
    assert all(check["passed"] for check in body["checks"]), body["checks"]


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo"])
def test_drivers_licence_from_its_aamva_barcode(client: httpx.Client, photo: bool) -> None:
    doc, data, name = document("drivers_license", 6, photo)
    body = scan(client, data, name)
    assert body["document_type"] == "drivers_license" and "PDF417" in body["evidence"]
    assert not wrong_fields(body, doc.truth), body
    assert set(body["extracted"]) >= SEED_FIELDS["drivers_license"]


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo"])
def test_invoice_totals_and_line_items_add_up(client: httpx.Client, photo: bool) -> None:
    doc, data, name = document("invoice", 7, photo)
    body = scan(client, data, name, type="invoice")
    assert body["document_type"] == "invoice"
    assert not wrong_fields(body, doc.truth), body
    assert squeezed(body["extracted"]["line_items"]) == squeezed(doc.extra["line_items"])
    assert {check["name"] for check in body["checks"] if check["passed"]} >= {
        "line_items_sum_to_subtotal",
        "subtotal_plus_tax_is_total",
    }


def test_auto_recognises_an_invoice_by_its_words(client: httpx.Client) -> None:
    doc, data, name = document("invoice", 8, False)
    body = scan(client, data, name)
    assert body["document_type"] == "invoice" and "invoice" in body["evidence"]
    assert body["extracted"]["total_amount"] == doc.truth["total_amount"]


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo"])
def test_receipt_totals(client: httpx.Client, photo: bool) -> None:
    doc, data, name = document("receipt", 9, photo)
    body = scan(client, data, name, type="receipt")
    assert body["document_type"] == "receipt"
    assert not wrong_fields(body, doc.truth), body


@pytest.mark.parametrize("photo", [False, True], ids=["clean", "photo"])
def test_business_card_contacts(client: httpx.Client, photo: bool) -> None:
    doc, data, name = document("business_card", 10, photo)
    body = scan(client, data, name, type="auto" if not photo else "business_card")
    assert body["document_type"] == "business_card"
    assert not wrong_fields(body, doc.truth), body


def test_unknown_type_and_language_are_422_and_non_images_415(client: httpx.Client) -> None:
    png = documents.encoded(documents.business_card(1).image)
    resp = client.post("/api/vision/scan", files={"file": ("a.png", png)}, data={"type": "boarding_pass"})
    assert resp.status_code == 422 and resp.json()["code"] == "unsupported_document_type"
    resp = client.post("/api/vision/scan", files={"file": ("a.png", png)}, data={"language": "tlh"})
    assert resp.status_code == 422 and resp.json()["code"] == "unsupported_language"
    resp = client.post("/api/vision/scan", files={"file": ("a.txt", b"just text")})
    assert resp.status_code == 415 and resp.json()["code"] == "unsupported_image"
