"""The document rules on text, without images: ICAO 9303 check digits and OCR repairs, AAMVA payloads, invoice
and receipt arithmetic, business-card contacts, dates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

import documents
from aigw.documents import aamva, card, invoice, mrz
from aigw.documents.countries import country_name
from aigw.documents.dates import display, find_date

# ICAO Doc 9303 part 4's specimen passport (Utopia) and part 5's specimen TD1 card.
SPECIMEN_TD3 = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
SPECIMEN_TD1 = ["I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<"]
TODAY = date(2026, 12, 2)


def test_the_test_documents_check_digit_agrees_with_icao_specimens() -> None:
    assert documents.check_digit("L898902C3") == "6"
    assert documents.check_digit("740812") == "2"
    assert documents.check_digit("D23145890") == "7"


def test_icao_specimen_passport_parses_with_every_check_passing() -> None:
    zone = mrz.find("\n".join(SPECIMEN_TD3), TODAY)
    assert zone is not None and zone.layout == "TD3" and zone.valid
    assert (zone.surname, zone.given_names, zone.document_number) == ("ERIKSSON", "ANNA MARIA", "L898902C3")
    assert (zone.birth, zone.expiry, zone.sex, zone.nationality) == (date(1974, 8, 12), date(2012, 4, 15), "F", "UTO")
    assert {check.name for check in zone.checks} == {
        "document_number",
        "date_of_birth",
        "date_of_expiry",
        "personal_number",
        "composite",
    }


def test_icao_specimen_id_card_parses_as_td1() -> None:
    zone = mrz.find("Some printed text\n" + "\n".join(SPECIMEN_TD1) + "\n", TODAY)
    assert zone is not None and zone.layout == "TD1" and zone.valid
    assert (zone.document_number, zone.surname, zone.given_names) == ("D23145890", "ERIKSSON", "ANNA MARIA")


def test_ocr_confusions_are_repaired_by_position_and_check_digit() -> None:
    # Fillers read as K, O for 0 in digits, 0 for O in a country code, spaces and a lost final filler.
    line1 = "P<UTOERIKSSON<<ANNA<MARIAKKKKKKKKKKKKKKKKKK"
    line2 = "L8989O2C36 UT0 7408122F12O4159ZE184226B<<<<<1O"
    zone = mrz.find(f"{line1}\n{line2}", TODAY)
    assert zone is not None and zone.valid
    assert zone.lines == SPECIMEN_TD3
    assert zone.given_names == "ANNA MARIA" and zone.document_number == "L898902C3"


def test_a_broken_check_digit_is_reported_not_repaired() -> None:
    broken = SPECIMEN_TD3[1].replace("L898902C36", "L898902C35")
    zone = mrz.find(f"{SPECIMEN_TD3[0]}\n{broken}", TODAY)
    assert zone is not None and not zone.valid
    failed = {check.name for check in zone.checks if not check.passed}
    assert "document_number" in failed and zone.document_number == "L898902C3"


def test_a_name_ending_in_k_keeps_its_k() -> None:
    zone = mrz.find("P<USANOVAK<<JACK<<<<<<<<<<<<<<<<<<<<<<<<<<<<\n" + SPECIMEN_TD3[1], TODAY)
    assert zone is not None and (zone.surname, zone.given_names) == ("NOVAK", "JACK")


def test_text_without_a_zone_has_none() -> None:
    assert mrz.find("INVOICE 2041\nTotal 1,250.00 EUR\n<<<<", TODAY) is None


def test_country_names_for_iso_and_icao_codes() -> None:
    assert country_name("USA") == "United States"
    assert country_name("D<<") == "Germany"
    assert country_name("GBR") == "United Kingdom"
    assert country_name("ZZZ") is None


def test_aamva_payload_parses_into_the_seed_fields() -> None:
    text = documents.aamva_text(
        {
            "DCA": "D",
            "DCB": "NONE",
            "DBA": "03012030",
            "DCS": "SMITH",
            "DAC": "JOHN",
            "DAD": "MICHAEL",
            "DBD": "03012020",
            "DBB": "01151990",
            "DBC": "1",
            "DAU": "070 IN",
            "DAG": "12 OAK ST",
            "DAI": "ALBANY",
            "DAJ": "NY",
            "DAK": "122070000",
            "DAQ": "123456789",
            "DCG": "USA",
        }
    )
    assert aamva.is_aamva(text)
    licence = aamva.parse(text)
    assert licence.version == 9 and licence.issuer == "636001"
    assert licence.fields["full_name"] == "John Michael Smith"
    assert licence.fields["address"] == "12 OAK ST, ALBANY, NY 12207"
    assert (licence.fields["license_number"], licence.fields["class"], licence.fields["sex"]) == ("123456789", "D", "M")
    assert licence.fields["height"] == "5'10\"" and licence.fields["restrictions"] == "NONE"
    assert licence.dates == {
        "date_of_birth": date(1990, 1, 15),
        "issue_date": date(2020, 3, 1),
        "expiry_date": date(2030, 3, 1),
    }


def test_canadian_aamva_dates_are_year_first() -> None:
    licence = aamva.parse(documents.aamva_text({"DBB": "19900115", "DCG": "CAN", "DAQ": "X1"}, iin="636012"))
    assert licence.dates["date_of_birth"] == date(1990, 1, 15)


INVOICE_TEXT = """Acme Software Ltd
12 Harbour Road
INVOICE
Invoice No: INV-2024-0042
Invoice Date: 2024-03-15
Due Date: 2024-04-14
Description Qty Unit Price Amount
Consulting services 2 125.00 250.00
Website hosting 1 1,240.00 1,240.00
Subtotal 1,490.00
Tax (10%) 149.00
Total USD 1,639.00
"""


def test_invoice_fields_and_arithmetic_checks() -> None:
    bill = invoice.parse(INVOICE_TEXT, "invoice")
    assert bill.fields["vendor_name"] == "Acme Software Ltd"
    assert bill.fields["invoice_number"] == "INV-2024-0042"
    assert (bill.fields["subtotal"], bill.fields["tax"], bill.fields["total_amount"]) == (1490.0, 149.0, 1639.0)
    assert bill.fields["currency"] == "USD"
    assert bill.dates == {"invoice_date": date(2024, 3, 15), "due_date": date(2024, 4, 14)}
    assert [item.as_dict() for item in bill.items] == [
        {"description": "Consulting services", "quantity": 2, "unit_price": 125.0, "amount": 250.0},
        {"description": "Website hosting", "quantity": 1, "unit_price": 1240.0, "amount": 1240.0},
    ]
    assert all(check.passed for check in bill.checks) and len(bill.checks) == 2
    assert {"subtotal", "tax", "total_amount"} <= bill.validated


def test_a_total_that_does_not_add_up_fails_its_check() -> None:
    bill = invoice.parse(INVOICE_TEXT.replace("Total USD 1,639.00", "Total USD 1,693.00"), "invoice")
    failed = [check for check in bill.checks if not check.passed]
    assert [check.name for check in failed] == ["subtotal_plus_tax_is_total"]
    assert "total_amount" not in bill.validated


@pytest.mark.parametrize(
    ("text", "value"),
    [("1,234.56", "1234.56"), ("1.234,56", "1234.56"), ("$ 12.00", "12.00"), ("12,00", "12.00"), ("7", "7")],
)
def test_amounts_in_either_decimal_convention(text: str, value: str) -> None:
    assert invoice.parse_amount(text) == Decimal(value)


def test_business_card_contacts_are_found_and_normalised() -> None:
    text = (
        "Jane Doe\nHead of Engineering\nBrightwave Labs Inc\nTel: +1 (617) 555-0142\nEmail: jane.doe@brightwave.com\n"
    )
    text += "www.brightwave.com\n100 Main Street, Boston, MA 02110"
    fields = card.parse(text)
    assert fields["full_name"] == "Jane Doe" and fields["title"] == "Head of Engineering"
    assert fields["company"] == "Brightwave Labs Inc"
    assert fields["emails"] == ["jane.doe@brightwave.com"] and fields["phones"] == ["+1 617-555-0142"]
    assert fields["websites"] == ["www.brightwave.com"] and fields["address"] == "100 Main Street, Boston, MA 02110"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15", date(2024, 1, 15)),
        ("15/01/2024", date(2024, 1, 15)),
        ("Jan 15, 2024", date(2024, 1, 15)),
        ("15. Januar 2024", date(2024, 1, 15)),
        ("le 3 juillet 2024", date(2024, 7, 3)),
        ("12 de enero de 2024", date(2024, 1, 12)),
    ],
)
def test_dates_as_documents_print_them(text: str, expected: date) -> None:
    assert find_date(text) == expected
    assert display(date(1990, 1, 15)) == "15 Jan 1990"


def test_an_unreadable_tax_amount_is_derived_and_reported() -> None:
    bill = invoice.parse(INVOICE_TEXT.replace("Tax (10%) 149.00", "Tax (10%) M9.O0"), "invoice")
    assert bill.fields["tax"] == 149.0 and "tax" in bill.derived and "tax" not in bill.validated
    assert [check.name for check in bill.checks if not check.passed] == ["tax_read"]
