"""Reading uploaded documents into plain-text sections: typing by content, decoding, OCR.

Pure and blocking (PDF parsing and OCR take seconds): callers run these in a worker thread.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Literal

import charset_normalizer
import filetype  # type: ignore[import-untyped]
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import trafilatura
from markdown_it import MarkdownIt
from markdown_it.token import Token
from PIL import Image, UnidentifiedImageError
from w3lib.encoding import html_to_unicode

from aigw.engines.ocr.tesseract import image_to_text, tesseract_language
from aigw.errors import InvalidField, UnsupportedMediaType
from aigw.vision.image import flattened

DocumentKind = Literal["text", "markdown", "csv", "pdf", "image", "html"]
# Told (stage, pages done, pages in the document) before each page or image frame, before each OCR, and at the
# end: how ingestion reports "OCR page n of m". Called from the extracting thread.
PageProgress = Callable[[Literal["extracting", "ocr"], int, int], None]

SNIFF_BYTES = 8192  # the least `sniff` needs to see
_CSV_SAMPLE_CHARS = 8192

_IMAGE_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/tiff", "image/bmp", "image/webp", "image/gif"})
_PDF_MAGIC = b"%PDF-"
# A PDF header may follow some junk, but only binary junk: a text file *mentioning* %PDF- stays text.
_PDF_MAGIC_WINDOW = 1024
_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# UTF-32 before UTF-16: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DETECT_BYTES = 256 * 1024  # detection reads this much of a document
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

_HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_CSV_MEDIA_TYPES = frozenset({"text/csv", "application/csv", "text/tab-separated-values"})
_MARKDOWN_MEDIA_TYPES = frozenset({"text/markdown", "text/x-markdown"})
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
_CSV_SUFFIXES = frozenset({".csv", ".tsv"})
_MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdown", ".mkd"})
# Code and config files are full of `# comment` lines that look like ATX headings.
_HASH_COMMENT_SUFFIXES = frozenset(
    {".py", ".sh", ".bash", ".zsh", ".rb", ".pl", ".r", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".env"}
)
_HTML_START = re.compile(r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
_ATX_HEADING = re.compile(r" {0,3}#{1,6}[ \t]+\S")
_CSV_DELIMITERS = ",;\t|"


# Below this many visible characters a PDF page's text layer is a page number or nothing: the page is a scan.
_OCR_MIN_CHARS = 20
_OCR_DPI = 300
# 300 dpi on a poster-sized page would be gigabytes of pixels; A4 at 300 dpi is 8.7 megapixels.
_MAX_RENDER_PIXELS = 40_000_000
_OCR_TIMEOUT_S = 300
_TITLE_MAX_CHARS = 100
_HEADING_MAX_CHARS = 60
_UNDERLINE = re.compile(r"([=\-~^*#+])\1+")

# pdfium is not thread-safe, not even across documents, and callers extract in a thread pool.
PDFIUM_LOCK = threading.Lock()

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u200b\u00ad\ufeff]")
_SPACE_RUN = re.compile(r"(?<=\S)[ \u00a0]{2,}")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+$", re.M)
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass
class Section:
    text: str
    page: int | None = None  # 1-based, PDFs and multi-frame images
    row: int | None = None  # 1-based data row, CSV
    heading: str | None = None  # heading path, e.g. "Install > On Debian"


@dataclass
class Extracted:
    kind: DocumentKind
    title: str | None
    sections: list[Section]  # in document order
    ocr_pages: int = 0  # pages or image frames that went through OCR
    columns: list[str] = field(default_factory=list)  # CSV header, restated at the top of every chunk


@dataclass(frozen=True)
class _CsvFormat:
    delimiter: str
    quotechar: str = '"'
    skipinitialspace: bool = False


def sniff(head: bytes, filename: str | None, declared_type: str | None = None) -> tuple[DocumentKind, str]:
    """Type a document by its content, with the name and declared type only choosing among text kinds.

    Args:
        head: The first bytes of the document, at least `SNIFF_BYTES` unless the document is shorter.
        filename: The uploaded name, a hint for CSV, Markdown and HTML.
        declared_type: The Content-Type the client sent, the same kind of hint.

    Returns:
        The kind and its media type.

    Raises:
        UnsupportedMediaType: Binary formats other than PDF and images, and bytes that are not text.
    """
    if head.startswith(_PDF_MAGIC):
        return "pdf", "application/pdf"
    guess = filetype.guess(head) if head else None
    mime: str | None = guess.mime if guess is not None else None
    if mime in _IMAGE_MEDIA_TYPES and (mime != "image/bmp" or _plausible_bmp(head)):
        return "image", mime
    text = _decode_head(head)
    if text is None:
        if _PDF_MAGIC in head[:_PDF_MAGIC_WINDOW]:
            return "pdf", "application/pdf"
        raise UnsupportedMediaType(
            f"Unsupported document type ({mime or 'binary data'}); "
            "upload text, Markdown, CSV, HTML, PDF or an image (PNG, JPEG, TIFF, BMP, WebP, GIF)",
            code="unsupported_document_type",
        )
    return _text_kind(text, filename, declared_type)


@dataclass(frozen=True)
class Limits:
    """How much of one document is read: one user's huge scan must not hold the worker for hours."""

    pages: int = 2000  # PDF pages or TIFF frames
    ocr_seconds: float = 900.0  # all of the document's OCR together


def extract(
    path: Path,
    kind: DocumentKind,
    *,
    language: str | None = None,
    source_url: str | None = None,
    progress: PageProgress | None = None,
    limits: Limits = Limits(),
) -> Extracted:
    """Read a document that `sniff` typed as `kind` into cleaned sections in document order.

    Args:
        path: The stored upload.
        kind: From `sniff`.
        language: OCR language for scanned PDF pages and images, see `tesseract_language`.
        source_url: Where an HTML page came from; helps boilerplate removal and metadata.
        progress: Told how many pages of a PDF or frames of an image are done (text formats have no pages).

    Raises:
        InvalidField: Unknown language, or a damaged or password-protected PDF or image (`unreadable_document`).
        EngineUnavailable: OCR was needed and Tesseract or its language data is missing (`ocr_unavailable`).
    """
    lang = tesseract_language(language)
    report = progress or _no_progress
    ocr = _OcrBudget(lang, limits.ocr_seconds)
    if kind == "pdf":
        return _extract_pdf(path, ocr, report, limits.pages)
    if kind == "image":
        return _extract_image(path, ocr, report, limits.pages)
    text = _decode_document(path.read_bytes())
    if kind == "html":
        return _extract_html(text, source_url)
    if kind == "csv":
        return _extract_csv(text)
    if kind == "markdown":
        title, sections = _markdown_sections(clean_text(text))
        return Extracted("markdown", title, sections)
    return _extract_text(clean_text(text))


def clean_text(text: str) -> str:
    """Normalise newlines and drop control characters and layout spacing, keeping indentation."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    text = _SPACE_RUN.sub(" ", text)
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


# Typing


def _plausible_bmp(head: bytes) -> bool:
    # filetype calls anything starting with "BM" a bitmap; a real one has a known DIB header size.
    return len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_HEADER_SIZES


def _decode_head(head: bytes) -> str | None:
    """Decode the sniffed bytes, or None when they are not text. The head may end inside a character."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            try:
                text = codecs.getincrementaldecoder(encoding)().decode(head[len(bom) :], final=False)
            except UnicodeDecodeError:
                return None
            return None if "\x00" in text else text
    if b"\x00" in head:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        pass
    text = _decode_legacy(head)
    # Legacy-encoded text has letters and punctuation; binary data decoded this way is full of controls.
    return text if len(_UNPRINTABLE.findall(text)) * 100 <= len(text) else None


def _decode_document(data: bytes) -> str:
    """Decode a whole document the way `_decode_head` decided, never failing: stray bytes become U+FFFD."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_legacy(data)


def legacy_encoding(data: bytes) -> str:
    """The encoding of text that is not UTF-8 and declares none: what charset-normalizer finds most plausible
    (Shift_JIS, GBK, windows-1251...), else Windows-1252, the usual other encoding in the wild."""
    found = list(charset_normalizer.from_bytes(data[:_DETECT_BYTES]))
    if not found:
        return "cp1252"
    # Short Western text reads about as well in several single-byte encodings (a cp1252 "Café crème, 3 €"
    # scored best as cp775); among near ties, the one most text in the wild is in wins.
    if any(r.encoding == "cp1252" and r.chaos <= found[0].chaos + 0.02 for r in found):
        return "cp1252"
    return str(found[0].encoding)


def _decode_legacy(data: bytes) -> str:
    return data.decode(legacy_encoding(data), errors="replace")


def utf8_body(body: bytes, content_type: str | None) -> bytes:
    """A fetched text document re-encoded as UTF-8, decoded by (in this order) its byte-order mark, the charset
    its Content-Type declares, an HTML <meta> charset, or detection (w3lib's rules, as web crawlers use)."""

    def detect(data: bytes) -> str:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return legacy_encoding(data)
        return "utf-8"

    _, text = html_to_unicode(content_type, body, auto_detect_fun=detect)
    return text.encode("utf-8")


def _text_kind(text: str, filename: str | None, declared_type: str | None) -> tuple[DocumentKind, str]:
    suffix = PurePath(filename).suffix.lower() if filename else ""
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared in _HTML_MEDIA_TYPES or suffix in _HTML_SUFFIXES or _HTML_START.match(text[:4096]):
        return "html", "text/html"
    if (declared in _CSV_MEDIA_TYPES or suffix in _CSV_SUFFIXES) and _csv_format(_csv_sample(text)) is not None:
        return "csv", "text/csv"
    if declared in _MARKDOWN_MEDIA_TYPES or suffix in _MARKDOWN_SUFFIXES:
        return "markdown", "text/markdown"
    if suffix not in _HASH_COMMENT_SUFFIXES and _has_atx_headings(text):
        return "markdown", "text/markdown"
    return "text", "text/plain"


def _has_atx_headings(text: str) -> bool:
    """ATX headings that stand on their own, in a text that is not mostly `#` lines (a commented config)."""
    lines = [line for line in text.split("\n") if line.strip()]
    hashes = sum(1 for line in lines if line.lstrip().startswith("#"))
    if not lines or hashes * 2 > len(lines):
        return False
    previous = ""
    for line in text.split("\n"):
        if not previous.strip() and _ATX_HEADING.match(line):
            return True
        previous = line
    return False


def _csv_sample(text: str) -> str:
    sample = text[:_CSV_SAMPLE_CHARS]
    # A sniffed head ends mid-row; a half row would spoil the delimiter counts.
    if len(text) > _CSV_SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    return sample


def _csv_format(sample: str) -> _CsvFormat | None:
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=_CSV_DELIMITERS)
    except csv.Error:
        pass
    else:
        return _CsvFormat(dialect.delimiter, dialect.quotechar or '"', dialect.skipinitialspace)
    # The sniffer gives up on some well-formed files (one quoted column, few rows); a delimiter found the
    # same number of times on every line is enough.
    lines = [line for line in sample.split("\n")[:50] if line.strip()]
    for delimiter in _CSV_DELIMITERS:
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return _CsvFormat(delimiter)
    return None


# Reading each kind


def _extract_text(text: str) -> Extracted:
    first_line = text.split("\n", 1)[0].strip()
    title = first_line if 0 < len(first_line) <= _TITLE_MAX_CHARS else None
    if not text:
        return Extracted("text", title, [])
    return Extracted("text", title, _text_sections(text))


def _text_sections(text: str) -> list[Section]:
    """Sections of plain text by the headings plain text has: ALL-CAPS lines (manual pages, RFCs, READMEs),
    their indented sub-headings, and underlined titles (reStructuredText, setext). Each chunk then carries its
    heading path, which measurably helps both full-text and vector search (bench/kb_tuning.py)."""
    lines = text.split("\n")
    found: list[tuple[int, int, int, str]] = []  # (heading line, body start, level, title)
    index = 0
    while index < len(lines):
        heading = _plain_heading(lines, index)
        if heading is not None:
            level, title, size = heading
            found.append((index, index + size, level, title))
            index += size
        else:
            index += 1
    if len(found) < 2:
        return [Section(text)]
    sections: list[Section] = []
    head = "\n".join(lines[: found[0][0]]).strip()
    if head:
        sections.append(Section(head))
    path: list[tuple[int, str]] = []
    for n, (_, body_start, level, title) in enumerate(found):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        body_end = found[n + 1][0] if n + 1 < len(found) else len(lines)
        body = "\n".join(lines[body_start:body_end]).strip()
        if body:
            sections.append(Section(body, heading=" > ".join(t for _, t in path)))
    return sections


def _plain_heading(lines: list[str], index: int) -> tuple[int, str, int] | None:
    """(level, title, lines used) when `lines[index]` starts a heading: a short line after a blank one that is
    underlined, written in capitals, or indented a little less than the text that follows it."""
    line = lines[index]
    title = line.strip()
    if not title or len(title) > _HEADING_MAX_CHARS or (index > 0 and lines[index - 1].strip()):
        return None
    following = lines[index + 1] if index + 1 < len(lines) else ""
    underline = following.strip()
    if len(underline) >= 3 and _UNDERLINE.fullmatch(underline) and len(underline) >= 0.6 * len(title):
        return (1 if underline[0] in "=#" else 2), title, 2
    if title[-1] in ".,;:!?" or not following.strip():
        return None
    indent = len(line) - len(line.lstrip(" "))
    body_indent = len(following) - len(following.lstrip(" "))
    letters = [ch for ch in title if ch.isalpha()]
    if len(letters) >= 3 and all(ch.isupper() for ch in letters) and indent <= 4:
        return (1 if indent == 0 else 2), title, 1
    # A manual page's sub-heading: "   Searching files by age" above text indented further.
    if 1 <= indent <= 4 and body_indent > indent and len(title.split()) <= 8:
        return 2, title, 1
    return None


def _markdown_sections(text: str) -> tuple[str | None, list[Section]]:
    """One section per heading block, headed by its heading path; returns the first H1 as the title."""
    # Only block structure is needed (headings, fences); inline parsing of the whole text is most of the cost,
    # so inline markup is parsed for heading lines alone, by a second parser.
    tokens = MarkdownIt("commonmark").disable("inline").parse(text)
    inline_parser = MarkdownIt("commonmark")
    headings: list[tuple[int, int, int, str]] = []  # first line, line after, level, heading text
    for index, token in enumerate(tokens):
        # Headings nested in lists or quotes are content, not document structure.
        if token.type == "heading_open" and token.level == 0 and token.map is not None:
            title = _inline_text(inline_parser, tokens[index + 1].content)
            headings.append((token.map[0], token.map[1], int(token.tag[1]), title))

    lines = text.split("\n")
    sections: list[Section] = []

    def add(start: int, end: int, heading: str | None) -> None:
        body = "\n".join(lines[start:end]).strip()
        if body:
            sections.append(Section(body, heading=heading))

    add(0, headings[0][0] if headings else len(lines), None)
    path: list[tuple[int, str]] = []
    for index, (_, body_start, level, title) in enumerate(headings):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        body_end = headings[index + 1][0] if index + 1 < len(headings) else len(lines)
        add(body_start, body_end, " > ".join(t for _, t in path if t) or None)
    document_title = next((title for _, _, level, title in headings if level == 1 and title), None)
    return document_title, sections


def _inline_text(parser: MarkdownIt, source: str) -> str:
    """Heading text without its inline markup (`**`, links, code ticks)."""
    parts: list[str] = []
    for token in parser.parseInline(source):
        parts.extend(_plain(child) for child in token.children or [])
    return " ".join("".join(parts).split())


def _plain(token: Token) -> str:
    if token.type in ("text", "code_inline", "html_inline"):
        return token.content
    return " " if token.type in ("softbreak", "hardbreak") else ""


def _extract_csv(text: str) -> Extracted:
    # Cleaning once up front, not per cell: a 100k-row file has a million cells.
    text = clean_text(text)
    fmt = _csv_format(_csv_sample(text)) or _CsvFormat(",")
    reader = csv.reader(
        io.StringIO(text), delimiter=fmt.delimiter, quotechar=fmt.quotechar, skipinitialspace=fmt.skipinitialspace
    )
    columns: list[str] = []
    sections: list[Section] = []
    row = 0
    try:
        for record in reader:
            if not columns:
                if any(cell.strip() for cell in record):
                    columns = [cell.strip() or f"column {i + 1}" for i, cell in enumerate(record)]
                continue
            # Rows count every record after the header, blank ones too, so row N is line N + 1 of the sheet.
            row += 1
            pairs = [
                f"{columns[i] if i < len(columns) else f'column {i + 1}'}: {value}"
                for i, cell in enumerate(record)
                if (value := cell.strip())
            ]
            if pairs:
                sections.append(Section("\n".join(pairs), row=row))
    except csv.Error as exc:
        raise InvalidField(f"The CSV file could not be parsed: {exc}", code="unreadable_document") from exc
    return Extracted("csv", None, sections, columns=columns)


def _extract_html(text: str, source_url: str | None) -> Extracted:
    if not _HTML_START.match(text[:4096]):
        # trafilatura takes a lone fragment for something other than HTML and returns nothing.
        text = f"<html><body><div>{text}</div></body></html>"
    markdown = trafilatura.extract(
        text,
        url=source_url,
        output_format="markdown",
        include_formatting=True,
        include_tables=True,
        include_comments=False,
        favor_recall=True,
    )
    metadata = trafilatura.extract_metadata(text, default_url=source_url)
    title = clean_text(metadata.title) if metadata is not None and metadata.title else None
    cleaned = clean_text(markdown or "")
    if cleaned:
        first_heading, sections = _markdown_sections(cleaned)
        return Extracted("html", title or first_heading, sections)
    # Nothing looked like an article (a table-only page, an index page): keep all visible text.
    body = clean_text(trafilatura.html2txt(text))
    return Extracted("html", title, [Section(body)] if body else [])


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    pass


def _too_many_pages(count: int, limit: int, what: str) -> InvalidField:
    return InvalidField(
        f"The document has {count} {what}; at most {limit} are read (AIGW_KB_MAX_PAGES)", code="too_many_pages"
    )


def _extract_pdf(path: Path, ocr: _OcrBudget, progress: PageProgress, max_pages: int) -> Extracted:
    unreadable = "The PDF could not be read: it is damaged or password-protected"
    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(path)
        except pdfium.PdfiumError as exc:
            raise InvalidField(unreadable, code="unreadable_document") from exc
    sections: list[Section] = []
    ocr_pages = 0
    try:
        with PDFIUM_LOCK:
            title = _pdf_title(pdf)
            page_count = len(pdf)
        if page_count > max_pages:
            raise _too_many_pages(page_count, max_pages, "pages")
        for index in range(page_count):
            progress("extracting", index, page_count)
            with PDFIUM_LOCK:
                text, scan = _read_pdf_page(pdf, index)
            # OCR runs outside the lock: it is the slow part and does not touch pdfium.
            if scan is not None:
                progress("ocr", index, page_count)
                ocr_pages += 1
                text = clean_text(ocr.read(scan)) or text
            if text:
                sections.append(Section(text, page=index + 1))
        progress("extracting", page_count, page_count)
    except pdfium.PdfiumError as exc:
        raise InvalidField(unreadable, code="unreadable_document") from exc
    finally:
        with PDFIUM_LOCK:
            pdf.close()
    return Extracted("pdf", title, sections, ocr_pages=ocr_pages)


def _pdf_title(pdf: pdfium.PdfDocument) -> str | None:
    title = str(pdf.get_metadata_dict(skip_empty=True).get("Title", ""))
    return clean_text(title) or None


def _read_pdf_page(pdf: pdfium.PdfDocument, index: int) -> tuple[str, Image.Image | None]:
    """The page's text layer, and a rendering of the page when that layer is too thin to be the content."""
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            text = clean_text(textpage.get_text_bounded())
        finally:
            textpage.close()
        if sum(1 for char in text if not char.isspace()) >= _OCR_MIN_CHARS:
            return text, None
        width, height = page.get_size()
        scale = min(_OCR_DPI / 72, math.sqrt(_MAX_RENDER_PIXELS / max(width * height, 1.0)))
        bitmap = page.render(scale=scale, grayscale=True)
        try:
            # A grayscale PIL image shares the bitmap's buffer, which close() frees.
            image: Image.Image = bitmap.to_pil().copy()
        finally:
            bitmap.close()
        return text, image
    finally:
        page.close()


def _extract_image(path: Path, ocr: _OcrBudget, progress: PageProgress, max_pages: int) -> Extracted:
    sections: list[Section] = []
    frames = 0
    for index, count, frame in _image_frames(path):
        frames = count
        if frames > max_pages:
            raise _too_many_pages(frames, max_pages, "frames")
        progress("ocr", index, frames)
        text = clean_text(ocr.read(frame))
        if text:
            sections.append(Section(text, page=index + 1 if frames > 1 else None))
    progress("ocr", frames, frames)
    return Extracted("image", None, sections, ocr_pages=frames)


def _image_frames(path: Path) -> Iterator[tuple[int, int, Image.Image]]:
    """(index, frames, frame) for each frame, ready for OCR; decoding errors become 422s."""
    try:
        with Image.open(path) as image:
            # Only TIFF frames are pages; GIF and WebP frames are animation.
            frames = int(getattr(image, "n_frames", 1)) if image.format == "TIFF" else 1
            for index in range(frames):
                image.seek(index)
                yield index, frames, flattened(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise InvalidField(f"The image could not be read: {exc}", code="unreadable_document") from exc


class _OcrBudget:
    """OCR for one document, within its time: each page gets at most what is left of it."""

    def __init__(self, lang: str, seconds: float) -> None:
        self.lang = lang
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds

    def read(self, image: Image.Image) -> str:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._exhausted()
        try:
            return image_to_text(image, self.lang, timeout=min(_OCR_TIMEOUT_S, left))
        except InvalidField as exc:
            if exc.code == "unreadable_document" and time.monotonic() >= self._deadline:
                raise self._exhausted() from exc
            raise

    def _exhausted(self) -> InvalidField:
        return InvalidField(
            f"OCR of this document took longer than {self.seconds:g} s (AIGW_KB_OCR_SECONDS)", code="ocr_too_long"
        )
