"""OCR through real HTTP: text rendered in eleven of the seed's twelve languages comes back (character error under
2%; Chinese and Japanese through RapidOCR, the rest through Tesseract; Korean is measured in bench/vision.py),
from every image format the seed names and from a PDF page; a phone photo's EXIF orientation is applied; what is
not an image, a decompression bomb and an unknown language get clear 4xx errors."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator

import httpx
import jiwer
import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import Gateway, start_gateway

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # Debian fonts-dejavu-core (make test installs it)
CJK_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # Debian fonts-wqy-microhei
FONTS = {  # shaped by Pillow's raqm layout; Arabic is in DejaVu Sans
    "zh": CJK_FONT,
    "ja": CJK_FONT,
    "hi": "/usr/share/fonts/truetype/lohit-devanagari/Lohit-Devanagari.ttf",  # Debian fonts-lohit-deva
    "bn": "/usr/share/fonts/truetype/lohit-bengali/Lohit-Bengali.ttf",  # Debian fonts-lohit-beng-bengali
}
TEXTS = {
    "hi": "चालान का भुगतान पंद्रह मार्च तक करना है।",
    "bn": "চালানটি পনেরো মার্চের মধ্যে পরিশোধ করতে হবে।",
    "ar": "يجب دفع الفاتورة قبل الخامس عشر من مارس.",
    "zh": "发票应于三月十五日前付款。",
    "ja": "請求書は三月十五日までにお支払いください。",
    "en": "The invoice is due on the fifteenth of March.",
    "fr": "La facture est payable le quinze mars à Paris.",
    "es": "La factura vence el quince de marzo en Madrid.",
    "de": "Die Rechnung ist am fünfzehnten März fällig.",
    "pt": "A fatura vence no dia quinze de março em Lisboa.",
    "ru": "Счёт нужно оплатить до пятнадцатого марта.",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gw-ocr"))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.new_user(rate_limit=1_000_000).key, timeout=120)


def rendered(text: str, *, size: int = 36, language: str = "en") -> Image.Image:
    font = ImageFont.truetype(FONTS.get(language, FONT), size, layout_engine=ImageFont.Layout.RAQM)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 80, bottom - top + 80), "white")
    ImageDraw.Draw(image).text((40 - left, 40 - top), text, fill="black", font=font)
    return image


def encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def ocr(client: httpx.Client, data: bytes, name: str, **form: str) -> httpx.Response:
    return client.post("/api/ocr", files={"file": (name, data)}, data=form)


def error_rate(heard: str, said: str) -> float:
    if any(ord(char) > 0x3000 for char in said):  # Chinese and Japanese put no spaces between words
        return float(jiwer.cer("".join(said.split()), "".join(heard.split())))
    return float(jiwer.cer(" ".join(said.split()), " ".join(heard.split())))


@pytest.mark.parametrize("language", list(TEXTS))
def test_rendered_text_in_eleven_languages_comes_back(client: httpx.Client, language: str) -> None:
    image = rendered(TEXTS[language], language=language)
    resp = ocr(client, encoded(image, "PNG"), "line.png", language=language)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) >= {"text", "language", "filename"}
    assert body["language"] == language and body["filename"] == "line.png"
    assert error_rate(body["text"], TEXTS[language]) < 0.02, body["text"]


@pytest.mark.parametrize(
    ("kind", "name"), [("JPEG", "a.jpg"), ("TIFF", "a.tiff"), ("BMP", "a.bmp"), ("WEBP", "a.webp"), ("PDF", "a.pdf")]
)
def test_every_format_the_seed_names_and_a_pdf_page(client: httpx.Client, kind: str, name: str) -> None:
    text = TEXTS["en"]
    options = {"quality": 92} if kind in ("JPEG", "WEBP") else {"resolution": 150} if kind == "PDF" else {}
    resp = ocr(client, encoded(rendered(text), kind, **options), name)
    assert resp.status_code == 200, resp.text
    assert resp.json()["language"] == "en"  # the seed's default
    assert error_rate(resp.json()["text"], text) < 0.02, resp.json()["text"]


def test_a_photo_is_read_upright_by_its_exif_orientation(client: httpx.Client) -> None:
    text = TEXTS["en"]
    sideways = rendered(text).rotate(90, expand=True)  # as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    resp = ocr(client, encoded(sideways, "JPEG", quality=92, exif=exif), "photo.jpg")
    assert resp.status_code == 200, resp.text
    assert error_rate(resp.json()["text"], text) < 0.02, resp.json()["text"]


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 4096)  # the first rows; the rest would inflate from nothing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_bad_input_gets_clear_errors_fast(client: httpx.Client) -> None:
    image = encoded(rendered("Hello"), "PNG")
    started = time.monotonic()
    bomb = ocr(client, png_claiming(100_000, 100_000), "bomb.png")
    assert time.monotonic() - started < 5
    assert bomb.status_code == 413 and bomb.json()["code"] == "image_too_large"
    big = ocr(client, png_claiming(10_000, 8_000), "big.png")  # within Pillow's own bound, past aigw's 50 Mpx
    assert big.status_code == 413 and big.json()["code"] == "image_too_large"
    for resp, status, code in [
        (ocr(client, b"just some text, not an image", "notes.txt"), 415, "unsupported_image"),
        (ocr(client, b"", "empty.png"), 422, "empty_image"),
        (ocr(client, image, "a.png", language="xx"), 422, "unsupported_language"),
        (ocr(client, image[: len(image) // 2], "cut.png"), 422, "unreadable_image"),
    ]:
        assert resp.status_code == status, resp.text
        assert resp.json()["code"] == code


def test_tesseract_language_codes_and_combinations(client: httpx.Client) -> None:
    mixed = rendered("Hello Bonjour Привет")
    for language in ("eng+fra", "en+ru", "EN"):
        resp = ocr(client, encoded(mixed, "PNG"), "mixed.png", language=language)
        assert resp.status_code == 200, (language, resp.text)
    assert "Привет" in ocr(client, encoded(mixed, "PNG"), "m.png", language="en+ru").json()["text"]
