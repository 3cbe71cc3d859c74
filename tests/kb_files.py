"""Documents the knowledge-base tests upload: every format, each with one planted fact among filler text."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

FILLER = [
    "Our office kitchen is cleaned every Friday afternoon; please label food you keep in the fridge.",
    "The quarterly planning meeting collects goals from every team and turns them into a shared roadmap.",
    "New employees receive a laptop, a security badge and an introduction to the internal tools on day one.",
    "Expense reports are submitted through the finance portal and approved by the team lead within a week.",
    "The design guide explains colours, typography and spacing for every product screen we publish.",
    "Customer support answers tickets in the order they arrive, with urgent outages handled first.",
    "Travel must be booked through the company agency so that insurance and invoices stay in one place.",
    "The library on the third floor lends books and magazines for up to three weeks.",
    "Passwords are rotated by the identity team, and two-factor authentication is required for all staff.",
    "The annual summer party takes place by the lake, with food trucks and a band from the local school.",
]


def filler(paragraphs: int, offset: int = 0) -> list[str]:
    return [" ".join(FILLER[(offset + i + j) % len(FILLER)] for j in range(4)) for i in range(paragraphs)]


@dataclass(frozen=True)
class Planted:
    name: str
    question: str
    answer: str  # a word the top result must contain


FACTS = {
    "txt": Planted("notes.txt", "What is the staging server of Project Bluefin called?", "orca"),
    "md": Planted("handbook.md", "How many vacation days do interns get?", "twelve"),
    "csv": Planted("catalog.csv", "How much does the ZX-900 Turbo blender cost?", "149.99"),
    "pdf": Planted("pricing.pdf", "What does the Enterprise plan cost per seat?", "fourteen"),
    "scan.pdf": Planted("scanned.pdf", "Which port does the Falcon gateway listen on?", "7443"),
    "png": Planted("whiteboard.png", "When is the Marigold launch?", "september"),
    "jpg": Planted("poster.jpg", "Who is the Kestrel project lead?", "ingrid"),
    "tiff": Planted("fax.tiff", "What is the Pelican warehouse door code?", "5521"),
    "url": Planted("faq.html", "What is the refund window for annual subscriptions?", "45"),
}


def text_document() -> bytes:
    paragraphs = filler(6)
    paragraphs.insert(3, "Project Bluefin runs its staging environment on a server named orca-17 in rack B.")
    return "\n\n".join(paragraphs).encode()


def markdown_document() -> bytes:
    return "\n\n".join(
        [
            "# Employee handbook",
            *filler(2),
            "## Time off",
            "### Interns",
            "Interns receive twelve paid vacation days per year, taken in agreement with their mentor.",
            "```\n# not a heading: a shell comment\n```",
            "## Equipment",
            *filler(2, 3),
        ]
    ).encode()


def csv_document() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sku", "product", "price_eur", "stock"])
    products = ["kettle", "toaster", "mixer", "grinder", "juicer", "steamer", "scale", "press"]
    for i in range(60):
        writer.writerow([f"KT-{100 + i}", f"Classic {products[i % len(products)]} {i}", f"{20 + i}.50", 10 + i])
        if i == 41:
            writer.writerow(["ZX-900", "ZX-900 Turbo blender", "149.99", 4])
    return out.getvalue().encode()


def pdf_document() -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Pricing overview\n\n" + "\n\n".join(filler(3)))
    pdf.add_page()
    pdf.multi_cell(
        0, 8, "Enterprise plan\n\nThe Enterprise plan costs fourteen euros per seat and month, billed yearly."
    )
    return bytes(pdf.output())


def text_image(lines: list[str], *, size: tuple[int, int] = (1400, 500)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=44)  # Pillow's bundled font: no system fonts needed
    for n, line in enumerate(lines):
        draw.text((40, 40 + n * 70), line, fill="black", font=font)
    return image


def image_document(fmt: str, lines: list[str]) -> bytes:
    out = io.BytesIO()
    options = {"compression": "tiff_lzw"} if fmt == "TIFF" else {}
    text_image(lines).save(out, format=fmt, **options)
    return out.getvalue()


def scanned_pdf_document() -> bytes:
    png = image_document("PNG", ["Falcon gateway settings", "The Falcon gateway listens", "on port 7443 for TLS."])
    pdf = FPDF()
    pdf.add_page()
    pdf.image(io.BytesIO(png), x=10, y=10, w=190)
    return bytes(pdf.output())


FAQ_HTML = """<!doctype html><html><head><title>Billing FAQ</title></head><body>
<nav><a href="/">Home</a> <a href="/pricing">Pricing</a> <a href="/blog">Blog</a></nav>
<article><h1>Billing FAQ</h1>
<p>{filler}</p>
<h2>Refunds</h2>
<p>Annual subscriptions can be refunded in full within 45 days of purchase; monthly plans are not refunded.</p>
<p>{filler2}</p>
</article>
<footer>Copyright Example Corp. All rights reserved.</footer></body></html>"""


def html_document() -> bytes:
    return FAQ_HTML.format(filler=" ".join(filler(1)), filler2=" ".join(filler(1, 5))).encode()


def document(fmt: str) -> tuple[str, bytes]:
    """(filename, bytes) of the planted document in one format; `url` is served, not uploaded."""
    name = FACTS[fmt].name
    if fmt == "txt":
        return name, text_document()
    if fmt == "md":
        return name, markdown_document()
    if fmt == "csv":
        return name, csv_document()
    if fmt == "pdf":
        return name, pdf_document()
    if fmt == "scan.pdf":
        return name, scanned_pdf_document()
    if fmt == "png":
        return name, image_document("PNG", ["Marigold launch plan", "The Marigold launch is", "on September 30."])
    if fmt == "jpg":
        return name, image_document("JPEG", ["Kestrel project", "Project lead: Ingrid Holm", "Budget owner: Finance"])
    if fmt == "tiff":
        return name, image_document("TIFF", ["Pelican warehouse", "Door code: 5521", "Ask reception for a badge"])
    return name, html_document()
