"""Test documents rendered with Pillow (and zxing-cpp for the licence barcode), each with the truth it carries:
passports (TD3), ID cards (TD1), AAMVA driver's licences, invoices, receipts and business cards, clean or as a
phone photo (tilted 5 degrees, blurred, noisy, a low-quality JPEG). Shared by tests/test_scan.py and
bench/vision.py.

The machine-readable zones are written with this module's own ICAO 9303 check digit, checked in the tests
against ICAO's published specimen, so a bug in aigw's check digit cannot hide behind the same bug here.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian fonts-dejavu-core
SANS_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
MONO = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
OCR_B = "/usr/share/fonts/opentype/ocr-b/OCRB.otf"  # Debian fonts-ocr-b: the typeface of real zones
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SURNAMES = ("SMITH", "GARCIA", "MUELLER", "DUBOIS", "ROSSI", "NOVAK", "OKAFOR", "LINDQVIST", "O BRIEN", "VAN DAM")
GIVEN = ("JOHN MICHAEL", "MARIA", "ANNA SOPHIE", "PIERRE", "LUCA", "IVANA", "CHIDI", "ERIK", "SEAN PATRICK", "EVA")
COUNTRIES = {
    "USA": "United States",
    "FRA": "France",
    "DEU": "Germany",
    "GBR": "United Kingdom",
    "ESP": "Spain",
    "CAN": "Canada",
    "ITA": "Italy",
    "NLD": "Netherlands",
}
PLACES = ("NEW YORK", "LYON", "HAMBURG", "LEEDS", "SEVILLA", "TORONTO", "TORINO", "UTRECHT")


def check_digit(text: str) -> str:
    values = [int(c) if c.isdigit() else ord(c) - 55 if c.isalpha() else 0 for c in text]
    return str(sum(v * (7, 3, 1)[i % 3] for i, v in enumerate(values)) % 10)


def display(value: date) -> str:
    return f"{value.day:02d} {MONTHS[value.month - 1].capitalize()} {value.year}"


def yymmdd(value: date) -> str:
    return value.strftime("%y%m%d")


def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@dataclass
class Document:
    image: Image.Image
    truth: dict[str, Any]
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Person:
    surname: str
    given: str
    nationality: str
    birth: date
    sex: str
    number: str
    issue: date
    expiry: date
    place: str

    @classmethod
    def random(cls, seed: int) -> Person:
        rng = random.Random(seed)
        birth = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
        issue = date(2018, 1, 1) + timedelta(days=rng.randrange(0, 365 * 6))
        letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
        number = rng.choice(letters) + rng.choice(letters) + "".join(rng.choice("0123456789") for _ in range(7))
        return cls(
            surname=rng.choice(SURNAMES).replace(" ", ""),
            given=rng.choice(GIVEN),
            nationality=rng.choice(list(COUNTRIES)),
            birth=birth,
            sex=rng.choice("MF"),
            number=number,
            issue=issue,
            expiry=issue.replace(year=issue.year + 10) - timedelta(days=1),
            place=rng.choice(PLACES),
        )

    def names_zone(self, length: int) -> str:
        return (self.surname + "<<" + self.given.replace(" ", "<")).ljust(length, "<")[:length]


def td3(person: Person, *, break_check: bool = False) -> list[str]:
    line1 = ("P<" + person.nationality + person.names_zone(39))[:44]
    number = person.number.ljust(9, "<")
    number_check = check_digit(number)
    if break_check:
        number_check = str((int(number_check) + 3) % 10)
    birth, expiry = yymmdd(person.birth), yymmdd(person.expiry)
    optional = "<" * 14
    body = number + number_check + person.nationality + birth + check_digit(birth) + person.sex
    body += expiry + check_digit(expiry) + optional + "<"
    composite_input = number + number_check + birth + check_digit(birth) + expiry + check_digit(expiry) + optional
    composite_input += "<"
    return [line1, body + check_digit(composite_input)]


def td1(person: Person) -> list[str]:
    number = person.number.ljust(9, "<")
    optional_1 = "<" * 15
    line1 = "I<" + person.nationality + number + check_digit(number) + optional_1
    birth, expiry = yymmdd(person.birth), yymmdd(person.expiry)
    optional_2 = "<" * 11
    line2 = birth + check_digit(birth) + person.sex + expiry + check_digit(expiry) + person.nationality + optional_2
    composite = line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29]
    return [line1, line2 + check_digit(composite), person.names_zone(30)]


def passport(seed: int, *, break_check: bool = False) -> Document:
    person = Person.random(seed)
    lines = td3(person, break_check=break_check)
    image = Image.new("RGB", (1400, 960), (236, 240, 246))
    draw = ImageDraw.Draw(image)
    draw.text((60, 40), "PASSPORT / PASSEPORT", fill=(20, 40, 90), font=font(SANS_BOLD, 40))
    draw.text((60, 95), COUNTRIES[person.nationality].upper(), fill=(20, 40, 90), font=font(SANS_BOLD, 30))
    draw.rectangle((60, 160, 360, 560), fill=(190, 196, 206))
    labelled = [
        ("Type / Type", "P"),
        ("Passport No. / No. du passeport", person.number),
        ("Surname / Nom", person.surname),
        ("Given names / Prénoms", person.given),
        ("Nationality / Nationalité", COUNTRIES[person.nationality].upper()),
        ("Date of birth / Date de naissance", display(person.birth).upper()),
        ("Sex / Sexe", person.sex),
        ("Place of birth / Lieu de naissance", person.place),
        ("Date of issue / Date de délivrance", display(person.issue).upper()),
        ("Date of expiry / Date d'expiration", display(person.expiry).upper()),
        ("Authority / Autorité", f"PASSPORT OFFICE {person.place}"),
    ]
    label_font, value_font = font(SANS, 16), font(SANS_BOLD, 24)
    for i, (label, value) in enumerate(labelled):
        x, y = (400 if i % 2 == 0 else 900), 160 + (i // 2) * 66
        draw.text((x, y), label, fill=(70, 70, 90), font=label_font)
        draw.text((x, y + 22), value, fill="black", font=value_font)
    _zone(draw, lines, top=800, size=38)
    given = person.given.title()
    truth = {
        "full_name": f"{given} {person.surname.title()}",
        "surname": person.surname.title(),
        "given_names": given,
        "nationality": COUNTRIES[person.nationality],
        "date_of_birth": display(person.birth),
        "sex": person.sex,
        "date_of_expiry": display(person.expiry),
        "passport_number": person.number,
        "mrz_line_1": lines[0],
        "mrz_line_2": lines[1],
        "place_of_birth": person.place.title(),
        "date_of_issue": display(person.issue),
        "issuing_authority": f"Passport Office {person.place.title()}",
    }
    return Document(image, truth, "passport")


def id_card(seed: int) -> Document:
    person = Person.random(seed)
    lines = td1(person)
    image = Image.new("RGB", (1100, 700), (232, 244, 236))
    draw = ImageDraw.Draw(image)
    draw.text(
        (40, 30), f"{COUNTRIES[person.nationality].upper()} IDENTITY CARD", fill=(10, 70, 40), font=font(SANS_BOLD, 34)
    )
    draw.rectangle((40, 100, 280, 400), fill=(190, 200, 196))
    for i, (label, value) in enumerate(
        [
            ("Surname", person.surname),
            ("Given names", person.given),
            ("Date of birth", display(person.birth)),
            ("Document No.", person.number),
        ]
    ):
        draw.text((320, 100 + i * 70), label, fill=(60, 60, 60), font=font(SANS, 16))
        draw.text((320, 122 + i * 70), value, fill="black", font=font(SANS_BOLD, 24))
    _zone(draw, lines, top=470, size=40)
    given = person.given.title()
    truth = {
        "full_name": f"{given} {person.surname.title()}",
        "surname": person.surname.title(),
        "given_names": given,
        "nationality": COUNTRIES[person.nationality],
        "date_of_birth": display(person.birth),
        "sex": person.sex,
        "date_of_expiry": display(person.expiry),
        "document_number": person.number,
        "issuing_country": COUNTRIES[person.nationality],
        "mrz_line_1": lines[0],
        "mrz_line_2": lines[1],
        "mrz_line_3": lines[2],
    }
    return Document(image, truth, "id_card")


def _zone(draw: ImageDraw.ImageDraw, lines: list[str], *, top: int, size: int) -> None:
    zone_font = font(OCR_B, size)
    for i, line in enumerate(lines):
        draw.text((50, top + i * int(size * 1.45)), line, fill="black", font=zone_font)


def aamva_text(fields: dict[str, str], iin: str = "636001") -> str:
    """An AAMVA 2016 (version 09) barcode payload with one DL subfile, offsets computed as the standard says."""
    body = "DL" + "\n".join(f"{key}{value}" for key, value in fields.items()) + "\r"
    header = f"@\n\x1e\rANSI {iin}090001"
    offset = len(header) + 10
    return f"{header}DL{offset:04d}{len(body):04d}{body}"


def licence(seed: int) -> Document:
    rng = random.Random(seed)
    person = Person.random(seed)
    street = f"{rng.randrange(10, 9999)} {rng.choice(['MAPLE', 'OAK', 'PINE', 'CEDAR'])} ST"
    city, state, postal = rng.choice([("ALBANY", "NY", "12207"), ("BUFFALO", "NY", "14201"), ("ITHACA", "NY", "14850")])
    number = "".join(rng.choice("0123456789") for _ in range(9))
    height = rng.randrange(60, 76)
    klass, restrictions = rng.choice([("D", "NONE"), ("C", "B"), ("DM", "A")])
    given = person.given.split()
    elements = {
        "DCA": klass,
        "DCB": restrictions,
        "DCD": "NONE",
        "DBA": person.expiry.strftime("%m%d%Y"),
        "DCS": person.surname,
        "DAC": given[0],
        "DAD": given[1] if len(given) > 1 else "NONE",
        "DBD": person.issue.strftime("%m%d%Y"),
        "DBB": person.birth.strftime("%m%d%Y"),
        "DBC": "1" if person.sex == "M" else "2",
        "DAY": "BRO",
        "DAU": f"{height:03d} IN",
        "DAG": street,
        "DAI": city,
        "DAJ": state,
        "DAK": postal + "0000",
        "DAQ": number,
        "DCF": f"{seed:010d}",
        "DCG": "USA",
        "DDE": "N",
        "DDF": "N",
        "DDG": "N",
    }
    import zxingcpp

    barcode = zxingcpp.create_barcode(aamva_text(elements), zxingcpp.BarcodeFormat.PDF417)
    code = Image.fromarray(np.asarray(barcode.to_image(scale=3))).convert("RGB")
    image = Image.new("RGB", (max(1300, code.width + 100), code.height + 300), "white")
    draw = ImageDraw.Draw(image)
    draw.text((50, 30), "NEW YORK STATE - DRIVER LICENSE (BACK)", fill="black", font=font(SANS_BOLD, 30))
    image.paste(code, (50, 120))
    full_given = person.given.title()
    truth = {
        "full_name": f"{full_given} {person.surname.title()}",
        "date_of_birth": display(person.birth),
        "address": f"{street}, {city}, {state} {postal}",
        "license_number": number,
        "class": klass,
        "issue_date": display(person.issue),
        "expiry_date": display(person.expiry),
        "sex": person.sex,
        "height": f"{height // 12}'{height % 12:02d}\"",
        "restrictions": restrictions,
    }
    return Document(image, truth, "drivers_license", {"barcode": aamva_text(elements)})


ITEMS = (
    ("Consulting services", 125.00),
    ("Website hosting (annual)", 240.00),
    ("Support hours", 85.50),
    ("Design review", 310.00),
    ("Training workshop", 450.00),
    ("SSL certificate", 59.90),
    ("Domain renewal", 15.00),
    ("Data migration", 720.00),
)
VENDORS = ("Acme Software Ltd", "Northwind Traders Inc", "Blue Harbor Consulting LLC", "Globex Systems GmbH")


def invoice(seed: int) -> Document:
    rng = random.Random(seed)
    items = [(name, rng.randrange(1, 6), price) for name, price in rng.sample(ITEMS, rng.randrange(2, 5))]
    subtotal = round(sum(q * p for _, q, p in items), 2)
    rate = rng.choice([0.05, 0.08, 0.1, 0.2])
    tax = round(subtotal * rate, 2)
    total = round(subtotal + tax, 2)
    vendor = rng.choice(VENDORS)
    number = f"INV-{2024 + seed % 3}-{rng.randrange(1000, 9999)}"
    issued = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 600))
    due = issued + timedelta(days=30)
    image = Image.new("RGB", (1240, 1400), "white")
    draw = ImageDraw.Draw(image)
    regular, bold = font(SANS, 26), font(SANS_BOLD, 26)
    draw.text((80, 70), vendor, fill="black", font=font(SANS_BOLD, 40))
    draw.text((80, 130), "12 Harbour Road, Springfield", fill="black", font=regular)
    draw.text((80, 230), "INVOICE", fill="black", font=font(SANS_BOLD, 48))
    draw.text((80, 320), f"Invoice No: {number}", fill="black", font=regular)
    draw.text((80, 365), f"Invoice Date: {issued.isoformat()}", fill="black", font=regular)
    draw.text((80, 410), f"Due Date: {due.isoformat()}", fill="black", font=regular)
    draw.text((80, 510), "Description", fill="black", font=bold)
    for x, label in ((700, "Qty"), (830, "Unit Price"), (1050, "Amount")):
        draw.text((x, 510), label, fill="black", font=bold)
    draw.line((80, 550, 1170, 550), fill="black", width=2)
    y = 575
    for name, quantity, price in items:
        draw.text((80, y), name, fill="black", font=regular)
        draw.text((700, y), str(quantity), fill="black", font=regular)
        draw.text((830, y), f"{price:,.2f}", fill="black", font=regular)
        draw.text((1050, y), f"{quantity * price:,.2f}", fill="black", font=regular)
        y += 50
    draw.line((80, y + 10, 1170, y + 10), fill="black", width=2)
    y += 40
    for label, value in (("Subtotal", subtotal), (f"Tax ({rate:.0%})", tax), ("Total USD", total)):
        draw.text((700, y), label, fill="black", font=bold if label.startswith("Total") else regular)
        draw.text((1050, y), f"{value:,.2f}", fill="black", font=bold if label.startswith("Total") else regular)
        y += 50
    truth = {
        "vendor_name": vendor,
        "invoice_number": number,
        "invoice_date": display(issued),
        "due_date": display(due),
        "subtotal": subtotal,
        "tax": tax,
        "total_amount": total,
        "currency": "USD",
    }
    line_items = [{"description": n, "quantity": q, "unit_price": p, "amount": round(q * p, 2)} for n, q, p in items]
    return Document(image, truth, "invoice", {"line_items": line_items})


def receipt(seed: int) -> Document:
    rng = random.Random(seed)
    goods = (("Coffee", 3.50), ("Croissant", 2.80), ("Orange juice", 4.20), ("Bagel", 3.10), ("Muffin", 2.95))
    items = [(name, rng.randrange(1, 4), price) for name, price in rng.sample(goods, rng.randrange(2, 5))]
    subtotal = round(sum(q * p for _, q, p in items), 2)
    tax = round(subtotal * 0.08, 2)
    total = round(subtotal + tax, 2)
    store = rng.choice(("Corner Cafe", "Sunrise Bakery", "Daily Grind Coffee"))
    when = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 600))
    image = Image.new("RGB", (700, 240 + 44 * (len(items) + 8)), "white")
    draw = ImageDraw.Draw(image)
    mono = font(MONO, 24)
    lines = [store.upper(), "45 Market Street", f"Date: {when.strftime('%m/%d/%Y')}  14:32", "RECEIPT", ""]
    lines += [f"{name:<14}{q} x {p:>5.2f}{q * p:>9.2f}" for name, q, p in items]
    lines += [
        "",
        f"{'SUBTOTAL':<24}{subtotal:>9.2f}",
        f"{'TAX 8%':<24}{tax:>9.2f}",
        f"{'TOTAL':<24}{total:>9.2f}",
        "",
        "PAID VISA",
        "Thank you!",
    ]
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * 44), line, fill="black", font=mono)
    truth = {
        "vendor_name": store.upper(),
        "date": display(when),
        "subtotal": subtotal,
        "tax": tax,
        "total_amount": total,
        "payment_method": "Visa",
    }
    return Document(image, truth, "receipt")


def business_card(seed: int) -> Document:
    rng = random.Random(seed)
    first, last = rng.choice(("Jane", "Tom", "Priya", "Lars")), rng.choice(("Doe", "Becker", "Sharma", "Holm"))
    title = rng.choice(("Head of Engineering", "Sales Director", "Senior Consultant", "Product Manager"))
    company, domain = rng.choice(
        (
            ("Brightwave Labs Inc", "brightwave.com"),
            ("Nordlicht Systems GmbH", "nordlicht.de"),
            ("Cobalt Partners LLC", "cobaltpartners.com"),
        )
    )
    email = f"{first.lower()}.{last.lower()}@{domain}"
    # A real area code and a number from 555-0100..0199, which the North American plan keeps for fiction.
    phone = f"+1 {rng.choice(('212', '415', '617', '312', '206'))} 555 01{rng.randrange(0, 100):02d}"
    image = Image.new("RGB", (1050, 600), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.text((60, 60), f"{first} {last}", fill="black", font=font(SANS_BOLD, 48))
    draw.text((60, 130), title, fill=(60, 60, 60), font=font(SANS, 30))
    draw.text((60, 200), company, fill=(20, 60, 120), font=font(SANS_BOLD, 34))
    for i, line in enumerate(
        (f"Tel: {phone}", f"Email: {email}", f"www.{domain}", "100 Main Street, Boston, MA 02110")
    ):
        draw.text((60, 320 + i * 55), line, fill="black", font=font(SANS, 28))
    import phonenumbers

    normalised = phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    truth = {
        "full_name": f"{first} {last}",
        "title": title,
        "company": company,
        "emails": [email],
        "phones": [normalised],
        "websites": [f"www.{domain}"],
        "address": "100 Main Street, Boston, MA 02110",
    }
    return Document(image, truth, "business_card")


def photographed(image: Image.Image, seed: int, *, angle: float = 5.0) -> Image.Image:
    """A phone photo of the document: tilted, slightly blurred, noisy, a JPEG at quality 60."""
    tilted = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(210, 205, 200))
    blurred = tilted.filter(ImageFilter.GaussianBlur(0.8))
    pixels = np.asarray(blurred, np.float32)
    noisy = np.clip(pixels + np.random.default_rng(seed).normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    return Image.open(io.BytesIO(encoded(Image.fromarray(noisy), "JPEG", quality=60)))


def encoded(image: Image.Image, kind: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


RENDERERS = {
    "passport": passport,
    "id_card": id_card,
    "drivers_license": licence,
    "invoice": invoice,
    "receipt": receipt,
    "business_card": business_card,
}
