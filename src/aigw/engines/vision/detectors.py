"""What this machine can really detect in an image, with models that ship in packages: OpenCV 4's Haar cascade for
frontal faces and its HOG people detector, zxing-cpp for barcodes and QR codes, OCR for text, Pillow for size,
dominant colours, brightness and EXIF. No vision-language model ships in a package (README: Vision), so these
findings are all the embedded composite engine knows about a picture.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import ExifTags, Image

from aigw.engines.worker import InferenceWorker
from aigw.vision.barcodes import read_barcodes
from aigw.vision.preprocess import limited

_DETECT_SIDE = 1024  # detectors run on a copy at most this long: faces of 30+ px at that size are found
# Colour names and their sRGB values; each dominant colour takes the nearest name.
_COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "light grey": (200, 200, 200),
    "dark grey": (64, 64, 64),
    "red": (200, 30, 30),
    "dark red": (120, 10, 10),
    "orange": (240, 140, 20),
    "yellow": (240, 220, 40),
    "olive": (128, 128, 0),
    "green": (40, 160, 60),
    "dark green": (10, 80, 30),
    "teal": (0, 128, 128),
    "cyan": (60, 200, 220),
    "light blue": (150, 190, 240),
    "blue": (30, 80, 200),
    "navy": (10, 20, 90),
    "purple": (120, 50, 160),
    "pink": (240, 150, 190),
    "magenta": (220, 40, 180),
    "brown": (120, 70, 30),
    "beige": (225, 205, 170),
    "tan": (200, 160, 110),
}


@dataclass
class Findings:
    width: int
    height: int
    faces: list[tuple[int, int, int, int]] = field(default_factory=list)
    people: list[tuple[int, int, int, int]] = field(default_factory=list)
    colours: list[tuple[str, float]] = field(default_factory=list)  # name, share of the image
    brightness: float = 0.0  # mean luminance, 0-1
    barcodes: list[tuple[str, str]] = field(default_factory=list)  # format, text
    text: str = ""
    exif: dict[str, str] = field(default_factory=dict)

    def described(self) -> str:
        """The findings as plain sentences for the chat model, absences stated as plainly as presences (a small
        model reads "faces: 0" as "faces")."""
        orientation = "landscape" if self.width > self.height else "portrait" if self.height > self.width else "square"
        lines = [
            f"- The image is {self.width} x {self.height} pixels ({orientation}), {_brightness_word(self.brightness)}."
        ]
        if self.colours:
            lines.append(
                "- Its main colours: " + ", ".join(f"{name} ({share:.0%})" for name, share in self.colours) + "."
            )
        lines.append(_counted(len(self.faces), "face") + " " + _counted(len(self.people), "standing person", "people"))
        if self.barcodes:
            for kind, text in self.barcodes:
                lines.append(f"- A {kind} encodes: {text[:300]!r}.")
        else:
            lines.append("- No barcode or QR code was found.")
        if self.text:
            lines.append(f"- Printed text, as OCR read it (it may contain misreadings):\n{self.text[:1500]}")
        else:
            lines.append("- No printed text was found.")
        for name, value in self.exif.items():
            lines.append(f"- Camera data, {name}: {value}.")
        return "\n".join(lines)


def _counted(count: int, thing: str, things: str | None = None) -> str:
    plural = things or thing + "s"
    if count == 0:
        return f"- No {thing} was detected."
    return f"- {count} {thing if count == 1 else plural} {'was' if count == 1 else 'were'} detected."


class Detectors:
    """The detectors, each loaded once per process; one image at a time, `max_queue` waiting before 503."""

    modality = "vision"
    name = "vision/detectors"

    def __init__(self, max_queue: int = 8) -> None:
        self._worker = InferenceWorker("vision", "The image detectors", max_queue, 2)
        self._faces: Any = None
        self._people: Any = None

    async def ready(self) -> bool:
        return True

    async def detect(self, image: Image.Image, data: bytes) -> Findings:
        return await self._worker.run(self._detect, image, data)

    def _detect(self, image: Image.Image, data: bytes) -> Findings:
        import cv2

        if self._faces is None:
            cascades = cv2.data.haarcascades  # type: ignore[attr-defined]  # not in OpenCV's stubs
            self._faces = cv2.CascadeClassifier(cascades + "haarcascade_frontalface_default.xml")
            self._people = cv2.HOGDescriptor()
            self._people.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())
        findings = Findings(image.width, image.height, exif=_exif(data))
        small = limited(image, _DETECT_SIDE)
        scale = image.width / small.width
        grey = np.asarray(small.convert("L"))
        faces = self._faces.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=6, minSize=(30, 30))
        findings.faces = [tuple(int(v * scale) for v in face) for face in faces]  # type: ignore[misc]
        people, weights = self._people.detectMultiScale(
            np.asarray(limited(small, 640).convert("RGB")), winStride=(8, 8), scale=1.05
        )
        findings.people = [tuple(int(v) for v in box) for box, w in zip(people, weights, strict=False) if w > 0.6]  # type: ignore[misc]
        findings.colours = _dominant_colours(small)
        findings.brightness = float(grey.mean()) / 255
        findings.barcodes = [(code.format, code.text) for code in read_barcodes(image)]
        return findings

    async def close(self) -> None:
        await self._worker.close()


def _dominant_colours(image: Image.Image, count: int = 5) -> list[tuple[str, float]]:
    """Colour names covering at least 5% of the image, largest first (median-cut on a 128 px copy)."""
    thumb = limited(image.convert("RGB"), 128)
    quantized = thumb.quantize(colors=count, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    shares: dict[str, float] = {}
    total = thumb.width * thumb.height
    for pixels, index in quantized.getcolors() or []:
        start = int(index) * 3  # type: ignore[arg-type]  # a palette image's colours are indices
        rgb = np.array(palette[start : start + 3], dtype=np.float64)
        name = min(_COLOURS, key=lambda n: float(np.sum((np.array(_COLOURS[n]) - rgb) ** 2)))
        shares[name] = shares.get(name, 0.0) + pixels / total
    return sorted(((n, s) for n, s in shares.items() if s >= 0.05), key=lambda item: -item[1])


def _exif(data: bytes) -> dict[str, str]:
    try:
        exif = Image.open(io.BytesIO(data)).getexif()
    except Exception:  # a PDF or an image without EXIF: nothing to report
        return {}
    wanted = {"Make": "make", "Model": "model", "DateTime": "taken", "Software": "software"}
    found = {}
    for tag, value in exif.items():
        name = ExifTags.TAGS.get(tag)
        if name in wanted and str(value).strip():
            found[wanted[name]] = str(value).strip("\x00 ")[:100]
    if ExifTags.IFD.GPSInfo in exif:
        found["location"] = "GPS position recorded"
    return found


def _brightness_word(value: float) -> str:
    return "very dark" if value < 0.2 else "dark" if value < 0.4 else "medium" if value < 0.65 else "bright"
