"""Images in: PNG, JPEG, TIFF, BMP, WebP, GIF (and a PDF's first page), decoded with Pillow (pdfium for PDFs),
turned upright by their EXIF orientation, bounded in bytes and pixels, and flattened to 8-bit grey or RGB.

A decompression bomb (a small file that claims billions of pixels) is refused from its header, before any pixel
is decoded. Blocking: callers run these in a worker thread.
"""

from __future__ import annotations

import base64
import io
import warnings
from typing import cast

from PIL import Image, ImageOps, UnidentifiedImageError

from aigw.errors import InvalidField, PayloadTooLarge, UnsupportedMediaType

MODEL_SIDE = 1536  # images sent to a vision model are at most this long: more only costs upload and tokens
MAX_PIXELS = 50_000_000  # a 300 dpi A2 page; phone photos are 12-50 megapixels
_PDF_MAGIC = b"%PDF-"
_PDF_DPI = 200
_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP", "WEBP", "GIF"}


def load_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The first image (or PDF page) of `data`, upright, as an 8-bit grey or RGB image.

    Raises:
        UnsupportedMediaType: not an image we read (415, `unsupported_image`).
        PayloadTooLarge: more than `max_pixels` (413, `image_too_large`).
        InvalidField: empty, or an image whose pixels cannot be decoded (422).
    """
    if not data:
        raise InvalidField("The image file is empty", code="empty_image")
    if data.startswith(_PDF_MAGIC):
        return _pdf_first_page(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise UnsupportedMediaType(
                "The file is not an image that can be read (PNG, JPEG, TIFF, BMP, WebP, GIF or a PDF)",
                code="unsupported_image",
            ) from exc
        raise PayloadTooLarge("The image has too many pixels", code="image_too_large") from exc
    if image.format not in _FORMATS:
        raise UnsupportedMediaType(f"Unsupported image format {image.format}", code="unsupported_image")
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; at most {max_pixels:,} are read", code="image_too_large"
        )
    try:
        upright = ImageOps.exif_transpose(image)
        return flattened(upright if upright is not None else image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidField(f"The image could not be decoded: {exc}", code="unreadable_image") from exc


def flattened(image: Image.Image) -> Image.Image:
    """An 8-bit grey or RGB copy, transparency flattened onto white (black text on clear is common in PNGs),
    16-bit and float images stretched to the 8-bit range."""
    if image.mode in ("RGB", "L"):
        return image.convert(image.mode)
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        grey = image.convert("F")
        low, high = cast("tuple[float, float]", grey.getextrema())  # one band: one (min, max) pair
        scale = 255.0 / (high - low) if high != low else 1.0
        offset = -low * scale
        return grey.point(lambda v: v * scale + offset).convert("L")
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def _pdf_first_page(data: bytes, max_pixels: int) -> Image.Image:
    import pypdfium2  # type: ignore[import-untyped]

    from aigw.knowledge.extract import PDFIUM_LOCK

    with PDFIUM_LOCK:
        try:
            pdf = pypdfium2.PdfDocument(data)
        except pypdfium2.PdfiumError as exc:
            raise InvalidField(f"The PDF could not be read: {exc}", code="unreadable_image") from exc
        try:
            if len(pdf) == 0:
                raise InvalidField("The PDF has no pages", code="unreadable_image")
            page = pdf[0]
            width, height = page.get_size()  # points, 1/72 inch
            scale = min(_PDF_DPI / 72, (max_pixels / max(width * height, 1.0)) ** 0.5)
            return flattened(page.render(scale=scale).to_pil())
        finally:
            pdf.close()


def jpeg_base64(image: Image.Image, side: int = MODEL_SIDE) -> str:
    """The image as base64 JPEG at most `side` pixels long, as vision models take it."""
    if max(image.size) > side:
        scale = side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=90)
    return base64.b64encode(out.getvalue()).decode()
