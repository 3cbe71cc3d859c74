"""Barcodes and QR codes with zxing-cpp; PDF417 (the back of North American licences) retried upright when the
photo is tilted, which zxing-cpp does not read past ~3 degrees. Blocking: callers run these in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aigw.vision.preprocess import deskewed


@dataclass(frozen=True)
class Barcode:
    format: str  # "PDF417", "QR Code", "EAN-13", ...
    text: str


def read_barcodes(image: Image.Image, pdf417_only: bool = False) -> list[Barcode]:
    """Every barcode in `image`, text kept as encoded (AAMVA's control characters included)."""
    import zxingcpp

    formats = zxingcpp.BarcodeFormats(
        zxingcpp.BarcodeFormat.PDF417 if pdf417_only else zxingcpp.BarcodeFormat.AllReadable
    )
    found = zxingcpp.read_barcodes(image, formats=formats, text_mode=zxingcpp.TextMode.Plain)
    if not found:
        upright, angle = deskewed(image)
        if angle:
            found = zxingcpp.read_barcodes(upright, formats=formats, text_mode=zxingcpp.TextMode.Plain)
    return [Barcode(str(code.format), code.text) for code in found if code.valid]
