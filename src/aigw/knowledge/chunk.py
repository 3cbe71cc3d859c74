"""Cutting extracted sections into overlapping, self-describing chunks for embedding and full-text search.

A chunk never crosses a section, so each keeps its page, row and heading. Inside a section the cut goes at
the strongest boundary that still leaves the chunk reasonably full (paragraph, then line, then sentence,
then word; in PDFs and OCR text, where lines are layout, sentence before line), and the next chunk starts
about `overlap` characters earlier, at a sentence or word start. Linear in the text apart from a bisect
per chunk: boundaries are found once with regular expressions and chunks are slices of the text.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from aigw.knowledge.extract import Extracted, Section

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"\n\s*")
# Also the Arabic question mark, the Devanagari danda and the CJK full stops, which take no space after them.
_SENTENCE = re.compile(r"[.!?\u061f\u0964][\"'\u201d\u2019\u00bb)\]]*\s+|[\u3002\uff01\uff1f]\s*")
_WORD = re.compile(r"\s+")
_SENTENCE_ENDS = frozenset(".!?\u061f\u0964\u3002\uff01\uff1f")

# How full a chunk must be before a boundary of each strength is taken: a paragraph break at 55% beats a
# sentence end at 95%, but a paragraph break at 10% would leave a uselessly small chunk.
_PARAGRAPH_FILL = 0.5
_LINE_FILL = 0.5
_SENTENCE_FILL = 0.25

_CSV_SEPARATOR = "\n\n"

# Below this a restated CSV header would leave no room for the rows.
MIN_CHUNK_CHARS = 20


@dataclass
class Chunk:
    content: str  # the text shown to users and indexed
    context: str  # title/heading context prepended for embedding and full text, e.g. "pricing.pdf > Plans"
    position: int  # 0-based order in the document
    page: int | None = None
    row: int | None = None  # first data row of the chunk (CSV)


@dataclass
class _Boundaries:
    """Offsets where a chunk may end and the next begin (always the first character after whitespace)."""

    by_strength: list[tuple[list[int], float]]  # strongest first, with the fill each needs
    sentence_starts: list[int]  # where an overlap may begin
    word_starts: list[int]


def chunk_document(doc: Extracted, *, source: str, max_chars: int = 1000, overlap: int = 150) -> list[Chunk]:
    """Cut a document into chunks of at most `max_chars` characters, in document order.

    Args:
        doc: From `extract`.
        source: The file name or page title, the start of every chunk's context.
        max_chars: Longest chunk content.
        overlap: About how many characters adjacent chunks of one section share; at most half a chunk is used.

    Raises:
        ValueError: `max_chars` is below `MIN_CHUNK_CHARS`.
    """
    if max_chars < MIN_CHUNK_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_CHUNK_CHARS}, got {max_chars}")
    pieces = _csv_pieces(doc, max_chars, overlap) if doc.kind == "csv" else _text_pieces(doc, max_chars, overlap)
    return [
        Chunk(content, _context(source, section), position, page=section.page, row=row)
        for position, (content, section, row) in enumerate(pieces)
    ]


def split_text(text: str, max_chars: int, overlap: int, *, layout_lines: bool = False) -> list[str]:
    """Split one section's text into overlapping pieces of at most `max_chars`, at the best boundaries.

    `layout_lines` says line breaks are where the page ran out of width (PDFs, OCR), weaker than sentence ends.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    # Settings allow an overlap as large as a chunk; past half a chunk every chunk would mostly repeat the last.
    overlap = max(0, min(overlap, max_chars // 2))
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    boundaries = _find_boundaries(text, layout_lines)
    pieces: list[str] = []
    start = 0
    last_cut = 0
    while len(text) - start > max_chars:
        cut = _best_cut(boundaries, start, last_cut, max_chars)
        if cut is None and start < last_cut:
            # The overlap left no room to reach the next word end: restart this chunk without overlap.
            start = last_cut
            continue
        if cut is None:
            # One word longer than a chunk: the only place left to cut is inside it, and there is no
            # sensible place inside it for an overlap to start.
            pieces.append(text[start : start + max_chars])
            start = last_cut = start + max_chars
            continue
        piece = text[start:cut].strip()
        if piece:
            pieces.append(piece)
        start = _overlap_start(boundaries, start, cut, overlap)
        last_cut = cut
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _text_pieces(doc: Extracted, max_chars: int, overlap: int) -> Iterator[tuple[str, Section, int | None]]:
    layout_lines = doc.kind in ("pdf", "image")
    for section in doc.sections:
        for piece in split_text(section.text, max_chars, overlap, layout_lines=layout_lines):
            yield piece, section, section.row


def _csv_pieces(doc: Extracted, max_chars: int, overlap: int) -> Iterator[tuple[str, Section, int | None]]:
    """Consecutive rows packed under a restated header, so every chunk says what its values mean."""
    header = _shorten(f"Columns: {', '.join(doc.columns)}", max_chars // 2) if doc.columns else ""
    prefix = header + _CSV_SEPARATOR if header else ""
    budget = max_chars - len(prefix)
    group: list[Section] = []
    size = 0
    for section in doc.sections:
        text = section.text.strip()
        added = len(text) + (len(_CSV_SEPARATOR) if group else 0)
        if group and size + added > budget:
            yield prefix + _CSV_SEPARATOR.join(s.text.strip() for s in group), group[0], group[0].row
            group, size, added = [], 0, len(text)
        if len(text) > budget:
            # A row too long to share a chunk is cut like prose, each piece still under the header.
            for piece in split_text(text, budget, overlap):
                yield prefix + piece, section, section.row
            continue
        if text:
            group.append(section)
            size += added
    if group:
        yield prefix + _CSV_SEPARATOR.join(s.text.strip() for s in group), group[0], group[0].row


def _context(source: str, section: Section) -> str:
    context = " > ".join(part for part in (source.strip(), section.heading) if part)
    if section.page is not None:
        context = f"{context} (page {section.page})".strip()
    return context


def _shorten(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    cut = line.rfind(", ", 0, limit - 1)
    return line[: cut if cut > 0 else limit - 1] + "…"


def _find_boundaries(text: str, layout_lines: bool) -> _Boundaries:
    paragraphs = [m.end() for m in _PARAGRAPH.finditer(text)]
    sentence_lines: list[int] = []
    lines: list[int] = []
    for m in _LINE.finditer(text):
        lines.append(m.end())
        # In PDFs and hard-wrapped text every line ends with a newline; one that also ends a sentence is better.
        if m.start() > 0 and text[m.start() - 1] in _SENTENCE_ENDS:
            sentence_lines.append(m.end())
    sentences = [m.end() for m in _SENTENCE.finditer(text)]
    words = [m.end() for m in _WORD.finditer(text)]
    # A PDF page or a scan breaks lines where the layout ran out of width, not where the author chose to.
    line_strength = [(sentences, _SENTENCE_FILL), (lines, _LINE_FILL)]
    return _Boundaries(
        by_strength=[
            (paragraphs, _PARAGRAPH_FILL),
            (sentence_lines, _LINE_FILL),
            *(line_strength if layout_lines else reversed(line_strength)),
            # CJK sentence ends are followed by no space, so they are word starts the word pattern misses.
            (sorted({*words, *sentences}), 0.0),
        ],
        sentence_starts=sorted({*lines, *sentences}),
        word_starts=words,
    )


def _best_cut(boundaries: _Boundaries, start: int, last_cut: int, max_chars: int) -> int | None:
    """The latest boundary of the strongest kind that fills the window enough and gets past the last cut."""
    limit = start + max_chars
    for positions, fill in boundaries.by_strength:
        lowest = max(start + int(max_chars * fill), last_cut + 1)
        index = bisect_right(positions, limit) - 1
        if index >= 0 and positions[index] >= lowest:
            return positions[index]
    return None


def _overlap_start(boundaries: _Boundaries, start: int, cut: int, overlap: int) -> int:
    """Where the next chunk begins: a sentence start within the overlap if one gives a fair share, else a word."""
    if overlap == 0:
        return cut
    earliest = max(cut - overlap, start + 1)
    sentences = boundaries.sentence_starts
    index = bisect_left(sentences, earliest)
    if index < len(sentences) and sentences[index] <= cut - overlap // 3:
        return sentences[index]
    words = boundaries.word_starts
    index = bisect_left(words, earliest)
    return words[index] if index < len(words) and words[index] < cut else cut
