"""Knowledge-base ingestion, reading half: typing uploads, extracting sections (OCR included) and chunking.

Every test document is generated here: PDFs with fpdf2, scans as Pillow images of text drawn in Pillow's own font.
"""

from __future__ import annotations

import codecs
import io
import itertools
import random
import re
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from aigw.engines.ocr import tesseract
from aigw.errors import EngineUnavailable, InvalidField, UnsupportedMediaType
from aigw.knowledge.chunk import chunk_document, split_text
from aigw.knowledge.extract import Extracted, Section, extract, sniff, tesseract_language


def render_text(lines: list[str], *, mode: str = "RGB") -> Image.Image:
    """Black text, 40 px, on white (or on clear, for RGBA): large enough for Tesseract to read reliably."""
    font = ImageFont.load_default(size=40)  # Pillow's bundled TrueType font: no system fonts needed
    background = (0, 0, 0, 0) if mode == "RGBA" else "white"
    image = Image.new(mode, (1200, 100 + 80 * len(lines)), background)
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((40, 40 + 80 * index), line, font=font, fill="black")
    return image


def read(path: Path, filename: str | None = None, declared_type: str | None = None) -> Extracted:
    """What ingestion does: sniff the head, then extract as that kind."""
    kind, _ = sniff(path.read_bytes()[:8192], filename or path.name, declared_type)
    return extract(path, kind)


def all_text(doc: Extracted) -> str:
    return "\n".join(section.text for section in doc.sections)


def assert_words(text: str, *words: str) -> None:
    lowered = text.lower()
    missing = [word for word in words if word.lower() not in lowered]
    assert not missing, f"OCR missed {missing} in {text!r}"


# PDFs


def test_pdf_text_layer_gives_one_section_per_page_with_its_number(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_title("Quarterly Handbook")
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Welcome to the handbook. This page explains how the office works. " * 5)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Security. The vault code is 7319 and the courier is Ingrid.")
    path = tmp_path / "handbook.pdf"
    pdf.output(str(path))

    assert sniff(path.read_bytes()[:8192], "handbook.pdf") == ("pdf", "application/pdf")
    doc = extract(path, "pdf")

    assert doc.title == "Quarterly Handbook"
    assert doc.ocr_pages == 0
    assert [section.page for section in doc.sections] == [1, 2]
    assert "vault code is 7319" in doc.sections[1].text
    assert "7319" not in doc.sections[0].text


def test_pdf_page_that_is_only_a_scan_is_ocred(tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    render_text(["Invoice total seventy dollars", "Delivery to Marseille harbour"]).save(scan)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(scan), x=10, y=10, w=190)
    path = tmp_path / "scanned.pdf"
    pdf.output(str(path))

    doc = read(path)

    assert doc.kind == "pdf"
    assert doc.ocr_pages == 1
    assert [section.page for section in doc.sections] == [1]
    assert_words(doc.sections[0].text, "invoice", "seventy", "dollars", "Marseille", "harbour")


def test_pdf_extraction_reports_each_page_and_each_ocr(tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    render_text(["Second page, scanned"]).save(scan)
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "The first page has a text layer and needs no OCR at all.")
    pdf.add_page()
    pdf.image(str(scan), x=10, y=10, w=190)
    path = tmp_path / "mixed.pdf"
    pdf.output(str(path))
    reports: list[tuple[str, int, int]] = []

    doc = extract(path, "pdf", progress=lambda stage, done, total: reports.append((stage, done, total)))

    assert doc.ocr_pages == 1
    assert reports == [("extracting", 0, 2), ("extracting", 1, 2), ("ocr", 1, 2), ("extracting", 2, 2)]


def test_password_protected_pdf_is_unreadable(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.set_font("helvetica")
    pdf.cell(0, 10, "Hidden text")
    path = tmp_path / "locked.pdf"
    pdf.output(str(path))

    with pytest.raises(InvalidField) as caught:
        extract(path, "pdf")
    assert (caught.value.status, caught.value.code) == (422, "unreadable_document")


def test_damaged_pdf_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage, no xref, no trailer")

    assert sniff(path.read_bytes(), "broken.pdf")[0] == "pdf"
    with pytest.raises(InvalidField) as caught:
        extract(path, "pdf")
    assert caught.value.code == "unreadable_document"


# Images


@pytest.mark.parametrize(("suffix", "media_type"), [("png", "image/png"), ("jpg", "image/jpeg")])
def test_image_text_is_ocred(tmp_path: Path, suffix: str, media_type: str) -> None:
    path = tmp_path / f"note.{suffix}"
    render_text(["Meeting moved to Thursday", "Bring the blue folder"]).save(path, quality=95)

    assert sniff(path.read_bytes()[:8192], path.name) == ("image", media_type)
    doc = extract(path, "image")

    assert doc.ocr_pages == 1
    assert [section.page for section in doc.sections] == [None]
    assert_words(doc.sections[0].text, "meeting", "Thursday", "blue", "folder")


def test_every_page_of_a_multipage_tiff_is_ocred(tmp_path: Path) -> None:
    path = tmp_path / "fax.tiff"
    first = render_text(["Purchase order for lanterns"])
    second = render_text(["Shipping by rail to Vienna"])
    first.save(path, save_all=True, append_images=[second])

    reports: list[tuple[str, int, int]] = []
    assert sniff(path.read_bytes()[:8192], path.name) == ("image", "image/tiff")
    doc = extract(path, "image", progress=lambda stage, done, total: reports.append((stage, done, total)))

    assert doc.kind == "image"
    assert doc.ocr_pages == 2
    assert reports == [("ocr", 0, 2), ("ocr", 1, 2), ("ocr", 2, 2)]
    assert [section.page for section in doc.sections] == [1, 2]
    assert_words(doc.sections[0].text, "purchase", "lanterns")
    assert_words(doc.sections[1].text, "shipping", "Vienna")


def test_transparent_and_16_bit_images_are_readable(tmp_path: Path) -> None:
    clear = tmp_path / "clear.png"
    render_text(["Transparent background works"], mode="RGBA").save(clear)
    deep = tmp_path / "deep.tiff"
    grey = np.asarray(render_text(["Sixteen bit scanner output"]).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(deep)
    with Image.open(deep) as saved:
        assert saved.mode.startswith("I;16")

    assert_words(all_text(read(clear)), "transparent", "background", "works")
    assert_words(all_text(read(deep)), "sixteen", "scanner", "output")


def test_missing_tesseract_or_language_data_is_503_ocr_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "note.png"
    render_text(["Hello"]).save(path)

    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))  # no traineddata here
    with pytest.raises(EngineUnavailable) as caught:
        extract(path, "image", language="en")
    assert (caught.value.status, caught.value.code) == (503, "ocr_unavailable")

    monkeypatch.setattr(tesseract, "TESSERACT_COMMAND", str(tmp_path / "no-tesseract"))
    with pytest.raises(EngineUnavailable) as caught:
        extract(path, "image")
    assert caught.value.code == "ocr_unavailable"


def test_undecodable_image_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    png = io.BytesIO()
    render_text(["Hello"]).save(png, format="PNG")
    path.write_bytes(png.getvalue()[:200])

    assert sniff(path.read_bytes(), "cut.png")[0] == "image"
    with pytest.raises(InvalidField) as caught:
        extract(path, "image")
    assert caught.value.code == "unreadable_document"


# Text kinds


def test_csv_rows_become_sections_and_chunks_restate_the_header(tmp_path: Path) -> None:
    rows = [f'widget-{n},{n * 10},"Aisle {n}, shelf {n % 3}"' for n in range(1, 31)]
    rows.insert(4, ",,")  # a blank row still counts, so row numbers match the spreadsheet
    path = tmp_path / "stock.csv"
    path.write_text("product,price,location\n" + "\n".join(rows) + "\n")

    assert sniff(path.read_bytes(), "stock.csv") == ("csv", "text/csv")
    doc = extract(path, "csv")

    assert doc.columns == ["product", "price", "location"]
    assert doc.sections[0] == Section("product: widget-1\nprice: 10\nlocation: Aisle 1, shelf 1", row=1)
    assert [section.row for section in doc.sections[3:6]] == [4, 6, 7]
    chunks = chunk_document(doc, source="stock.csv", max_chars=300)
    assert len(chunks) > 3
    assert all(chunk.content.startswith("Columns: product, price, location\n\n") for chunk in chunks)
    assert all(len(chunk.content) <= 300 for chunk in chunks)
    assert all(chunk.context == "stock.csv" for chunk in chunks)
    for chunk in chunks:
        first = chunk.content.split("\n\n")[1]
        assert chunk.row == next(s.row for s in doc.sections if s.text == first)
    # Every row lands in exactly one chunk, in order.
    packed = [part for chunk in chunks for part in chunk.content.split("\n\n")[1:]]
    assert packed == [section.text for section in doc.sections]


def test_csv_row_longer_than_a_chunk_is_split_under_the_header() -> None:
    doc = Extracted("csv", None, [Section("note: " + "lorem ipsum " * 200, row=1)], columns=["note"])

    chunks = chunk_document(doc, source="notes.csv", max_chars=500, overlap=50)

    assert len(chunks) > 2
    assert all(chunk.content.startswith("Columns: note\n\n") and len(chunk.content) <= 500 for chunk in chunks)
    assert {chunk.row for chunk in chunks} == {1}


MARKDOWN = """\
# Guide

Intro paragraph.

## Install

Download the archive.

### On Debian

```bash
# not a heading
apt install thing
```

### On Fedora

Use dnf.

## Usage **today**

Run it.

# Appendix
Notes.
"""


def test_markdown_sections_follow_the_heading_path_and_skip_code_fences(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN)

    doc = read(path)

    assert doc.kind == "markdown"
    assert doc.title == "Guide"
    assert [(section.heading, section.text.splitlines()[0]) for section in doc.sections] == [
        ("Guide", "Intro paragraph."),
        ("Guide > Install", "Download the archive."),
        ("Guide > Install > On Debian", "```bash"),
        ("Guide > Install > On Fedora", "Use dnf."),
        ("Guide > Usage today", "Run it."),
        ("Appendix", "Notes."),
    ]
    assert "# not a heading" in doc.sections[2].text
    chunks = chunk_document(doc, source="guide.md")
    assert chunks[2].context == "guide.md > Guide > Install > On Debian"


ARTICLE_PAGE = """<!DOCTYPE html>
<html><head><title>Gardening Weekly - Tomatoes</title></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li><li><a href="/shop">Shop</a></li></ul></nav>
<article><h1>Growing tomatoes on a balcony</h1>
<p>Tomatoes need at least six hours of direct sunlight every day. Choose a south-facing balcony when you can,
and use pots of at least twenty litres so that the roots have room.</p>
<h2>Watering</h2>
<p>Water deeply twice a week rather than a little every day; the roots grow down and the plant copes better
with hot spells. Mulch keeps the soil from drying out in July.</p>
<h3>Drip systems</h3>
<p>A cheap drip system keeps the soil evenly moist while you are away on holiday, which prevents blossom
end rot, the most common problem on balconies.</p>
</article>
<footer><p>Copyright 2024 Gardening Weekly. All rights reserved. Privacy policy. Cookie settings.</p></footer>
</body></html>
"""


def test_html_keeps_the_article_and_drops_the_boilerplate(tmp_path: Path) -> None:
    path = tmp_path / "page"
    path.write_text(ARTICLE_PAGE)

    doc = read(path, filename=None)

    assert doc.kind == "html"
    assert doc.title == "Growing tomatoes on a balcony"
    text = all_text(doc)
    assert "six hours of direct sunlight" in text
    assert "blossom end rot" in text
    for boilerplate in ("About us", "Copyright", "Cookie settings"):
        assert boilerplate not in text
    headings = {section.heading for section in doc.sections}
    assert "Growing tomatoes on a balcony > Watering > Drip systems" in headings


def test_html_fragment_falls_back_to_its_visible_text(tmp_path: Path) -> None:
    path = tmp_path / "snippet.html"
    path.write_text("<p>Opening hours: nine to five.</p>")

    assert "nine to five" in all_text(read(path))


def test_plain_text_is_one_cleaned_section_titled_by_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"Release notes\r\n\r\n\r\n\r\nFixed   the login bug.\x07\r\n  Indented   line\t\r\n")

    doc = read(path)

    assert (doc.kind, doc.title) == ("text", "Release notes")
    assert doc.sections == [Section("Release notes\n\nFixed the login bug.\n  Indented line")]


def test_nul_bytes_past_the_sniffed_head_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_bytes(b"start " * 2000 + b"\x00\x00end\n")

    assert sniff(path.read_bytes()[:8192], "log.txt")[0] == "text"
    assert all_text(extract(path, "text")).endswith("start end")


# Sniffing


def test_content_decides_over_the_file_name() -> None:
    png = io.BytesIO()
    render_text(["x"]).save(png, format="PNG")

    assert sniff(png.getvalue(), "readme.txt") == ("image", "image/png")
    assert sniff(b"Just some words, saved with the wrong name.\n", "report.pdf") == ("text", "text/plain")
    # "BM" is also the bitmap magic number.
    assert sniff(b"BMW and Audi sales rose in March.\n", None) == ("text", "text/plain")
    assert sniff(b"Every PDF file starts with %PDF-1.7 or similar.\n", "notes.txt")[0] == "text"


def _docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("head", "filename"),
    [
        (_docx(), "letter.docx"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4, "archive.zip"),
        (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56 + bytes(range(256)), "notes.txt"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8, "song.mp3"),
        (bytes(range(1, 256)) * 32, "mystery.bin"),  # binary without a single NUL
    ],
)
def test_binary_formats_we_do_not_read_are_415(head: bytes, filename: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        sniff(head, filename)
    assert (caught.value.status, caught.value.code) == (415, "unsupported_document_type")


def test_legacy_8_bit_text_is_read_as_windows_1252(tmp_path: Path) -> None:
    path = tmp_path / "menu.txt"
    path.write_bytes("Café crème \u2013 3 €\nThé glacé\n".encode("cp1252"))

    assert sniff(path.read_bytes(), "menu.txt") == ("text", "text/plain")
    assert all_text(extract(path, "text")) == "Café crème \u2013 3 €\nThé glacé"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8"])
def test_text_with_a_byte_order_mark_is_decoded(tmp_path: Path, encoding: str) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-8": codecs.BOM_UTF8}[encoding]
    path = tmp_path / "unicode.txt"
    path.write_bytes(bom + "Grüße aus Köln, 東京 too.\n".encode(encoding))

    assert sniff(path.read_bytes()[:8191], "unicode.txt") == ("text", "text/plain")  # odd length: cut mid-unit
    assert all_text(extract(path, "text")) == "Grüße aus Köln, 東京 too."


def test_a_utf8_head_cut_inside_a_character_is_still_text() -> None:
    head = ("é" * 5000).encode()[:8191]

    assert sniff(head, None) == ("text", "text/plain")


@pytest.mark.parametrize(
    ("content", "filename", "declared", "kind"),
    [
        ("a,b\n1,2\n", "data.csv", None, "csv"),
        ("a;b\n1;2\n", None, "text/csv; charset=utf-8", "csv"),
        ("no delimiters here\njust lines\n", "data.csv", None, "text"),
        ("plain words", "notes.md", None, "markdown"),
        ("plain words", None, "text/markdown", "markdown"),
        ("Intro\n\n## Setup\n\nSteps.\n", "readme.txt", None, "markdown"),
        ("# Settings for the cache\nsize = 10\n\n# and the pool\nworkers = 4\n", "app.toml", None, "text"),
        ("# comment\n# another\n# third\nx=1\n", None, None, "text"),
        ("  <!-- saved page -->\n<!DOCTYPE html><html><body>x</body></html>", "page.txt", None, "html"),
        ("<p>fragment</p>", None, "text/html", "html"),
        ("Use the <html> tag first.", "notes.txt", None, "text"),
    ],
)
def test_text_kinds_use_name_and_declared_type_as_hints(
    content: str, filename: str | None, declared: str | None, kind: str
) -> None:
    assert sniff(content.encode(), filename, declared)[0] == kind


# OCR languages


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (None, "eng"),
        ("en", "eng"),
        ("zh", "chi_sim"),
        ("chi_sim", "chi_sim"),
        ("bn", "ben"),
        ("pt-BR", "por"),
        ("eng+fra", "eng+fra"),
        ("en+fr+en", "eng+fra"),
        ("JA", "jpn"),
    ],
)
def test_languages_map_to_tesseract_codes(code: str | None, expected: str) -> None:
    assert tesseract_language(code) == expected


@pytest.mark.parametrize("code", ["xx", "klingon", "en+zz"])
def test_unknown_language_is_a_422(code: str) -> None:
    with pytest.raises(InvalidField) as caught:
        tesseract_language(code)
    assert (caught.value.status, caught.value.code) == (422, "unsupported_language")


# Chunking


def prose(sentences: int) -> str:
    return " ".join(f"Sentence number {n} talks about topic {n % 7} in some detail." for n in range(sentences))


def text_doc(*sections: Section) -> Extracted:
    return Extracted("text", None, list(sections))


def test_chunks_respect_max_chars_and_overlap() -> None:
    chunks = chunk_document(text_doc(Section(prose(200))), source="notes.txt", max_chars=400, overlap=80)

    assert len(chunks) > 10
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    assert all(0 < len(chunk.content) <= 400 for chunk in chunks)
    for previous, following in itertools.pairwise(chunks):
        shared = following.content[:25]
        assert shared in previous.content, "the next chunk should start inside the previous one"
        overlap = len(previous.content) - previous.content.rindex(shared)
        assert 20 <= overlap <= 80


def test_chunks_end_at_sentences_rather_than_mid_sentence() -> None:
    chunks = chunk_document(text_doc(Section(prose(100))), source="notes.txt", max_chars=300, overlap=0)

    assert all(chunk.content.endswith(".") for chunk in chunks)
    assert all(chunk.content.startswith("Sentence number") for chunk in chunks)
    # With no overlap the chunks put back together are the text.
    assert " ".join(chunk.content for chunk in chunks) == prose(100)


def test_small_paragraphs_are_packed_and_cut_between_paragraphs() -> None:
    paragraphs = [f"Paragraph {n}. " + "Words go here. " * 8 for n in range(12)]
    chunks = chunk_document(
        text_doc(Section("\n\n".join(p.strip() for p in paragraphs))), source="a", max_chars=600, overlap=0
    )

    assert 2 < len(chunks) < 12
    for chunk in chunks:
        assert chunk.content.startswith("Paragraph")
        assert chunk.content.endswith("Words go here.")


def test_chunks_never_split_words() -> None:
    words = [f"w{n}x{'y' * (n % 9)}" for n in range(3000)]
    vocabulary = set(words)

    for overlap in (0, 150):
        for chunk in split_text(" ".join(words), 500, overlap):
            assert set(chunk.split()) <= vocabulary


def test_a_word_longer_than_a_chunk_is_split_inside() -> None:
    word = "x" * 2500
    pieces = split_text(f"before the word {word} after the word", 1000, 150)

    assert all(len(piece) <= 1000 for piece in pieces)
    assert pieces[0] == "before the word"
    # No overlap inside the word: there is no word start to begin one at.
    assert "".join(pieces[1:]) == f"{word} after the word"


def test_cjk_text_is_cut_at_full_stops() -> None:
    text = "".join(f"第{n}章讲述了一个很长的故事。" for n in range(100))

    pieces = split_text(text, 100, 0)

    assert all(len(piece) <= 100 and piece.endswith("。") for piece in pieces)
    assert "".join(pieces) == text


def test_pdf_lines_are_layout_so_chunks_end_at_sentences() -> None:
    page = textwrap.fill(prose(60), 70)  # wrapped like a PDF text layer: a newline every 70 characters

    chunks = chunk_document(Extracted("pdf", None, [Section(page, page=1)]), source="a.pdf", max_chars=300)

    assert all(chunk.content.endswith(".") for chunk in chunks)


def test_split_text_keeps_its_promises_on_random_text() -> None:
    rng = random.Random(7)
    separators = [" ", " ", "\n", "\n\n", ". ", "! ", "\u3002", "\t", "  \n \n"]
    for _ in range(2000):
        words = [f"w{i}" + "q" * rng.choice([0, 0, 3, 30, 150]) for i in range(rng.randint(0, 60))]
        text = "".join(word + rng.choice(separators) for word in words)
        max_chars, overlap = rng.randint(1, 120), rng.randint(0, 200)

        pieces = split_text(text, max_chars, overlap)

        assert all(0 < len(piece) <= max_chars and piece in text for piece in pieces)
        tokens = {token for piece in pieces for token in re.split(r"[\s.!\u3002]+", piece) if token}
        assert {word for word in words if len(word) <= max_chars} <= tokens, "a word that fits was lost or cut"
        long_words = [word for word in words if len(word) > max_chars]
        assert all(any(token in word for word in long_words) for token in tokens - set(words))


def test_overlap_is_capped_at_half_a_chunk_and_tiny_chunks_are_refused() -> None:
    chunks = chunk_document(text_doc(Section(prose(50))), source="a", max_chars=200, overlap=5000)

    assert all(len(chunk.content) <= 200 for chunk in chunks)
    assert len(chunks) < 2 * len(prose(50)) / 100 + 2
    with pytest.raises(ValueError, match="max_chars"):
        chunk_document(text_doc(Section("x")), source="a", max_chars=5)


def test_chunks_stay_inside_their_section_and_carry_its_place() -> None:
    doc = Extracted(
        "pdf",
        "Manual",
        [Section(prose(40), page=1), Section("   \n\n  ", page=2), Section("Install. " + prose(40), page=3)],
    )

    chunks = chunk_document(doc, source="manual.pdf", max_chars=500)

    assert {chunk.page for chunk in chunks} == {1, 3}
    for chunk in chunks:
        section = next(s for s in doc.sections if s.page == chunk.page)
        assert chunk.content in section.text
        assert chunk.context == f"manual.pdf (page {chunk.page})"
    headed = chunk_document(text_doc(Section("Body text.", heading="Install > On Debian")), source="guide.md")
    assert headed[0].context == "guide.md > Install > On Debian"


def test_chunking_is_deterministic_and_fast_on_500_kb() -> None:
    paragraphs = [prose(4 + n % 5) + ("\n" + prose(2)) * (n % 2) for n in range(1000)]
    text = "\n\n".join(paragraphs)
    while len(text) < 500_000:
        text += "\n\n" + text[:100_000]
    doc = text_doc(Section(text))

    started = time.perf_counter()
    chunks = chunk_document(doc, source="big.txt")
    elapsed = time.perf_counter() - started

    assert elapsed < 2.0
    assert all(len(chunk.content) <= 1000 for chunk in chunks)
    assert len(chunks) >= 500_000 // 1000
    assert chunk_document(doc, source="big.txt") == chunks


def test_plain_text_headings_give_sections_their_path(tmp_path: Path) -> None:
    manual = (
        "FIND(1)        General Commands Manual        FIND(1)\n\n"
        "NAME\n       find - search for files\n\n"
        "EXAMPLES\n       Some examples follow.\n\n"
        "   Searching files by age\n       Use -mtime to find files changed days ago.\n\n"
        "EXIT STATUS\n       find exits with status 0 if all files are processed successfully.\n"
    )
    path = tmp_path / "find.txt"
    path.write_text(manual)
    sections = extract(path, "text").sections
    by_heading = {s.heading: s.text for s in sections}
    assert "Use -mtime" in by_heading["EXAMPLES > Searching files by age"]
    assert "status 0" in by_heading["EXIT STATUS"]
    chunks = chunk_document(extract(path, "text"), source="find.txt")
    assert any(c.context.startswith("find.txt > EXAMPLES > Searching files by age") for c in chunks)

    underlined = "Guide\n=====\n\nIntro text here.\n\nInstall\n-------\n\nRun the installer.\n"
    path.write_text(underlined)
    assert [s.heading for s in extract(path, "text").sections] == ["Guide", "Guide > Install"]

    prose = "Dear team,\n\nthe kitchen is closed on Friday.\nPlease plan ahead.\n"
    path.write_text(prose)
    assert [s.heading for s in extract(path, "text").sections] == [None]
