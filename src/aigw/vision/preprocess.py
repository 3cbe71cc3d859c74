"""Image preparation that measures better for OCR and barcodes (bench/vision.py): deskewing. Blocking: callers run
these in a worker thread."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

_MAX_SKEW = 15.0  # degrees; more than this is a rotated photo, not a skewed scan


def skew_angle(image: Image.Image) -> float:
    """The angle (degrees, counter-clockwise positive) by which the text lines of `image` are tilted, from the
    long near-horizontal edges OpenCV's probabilistic Hough transform finds; 0 when there are none."""
    import cv2

    grey = np.asarray(limited(image).convert("L"))
    edges = cv2.Canny(grey, 50, 150, apertureSize=3)
    width = grey.shape[1]
    lines: Any = cv2.HoughLinesP(edges, 1, math.pi / 720, 80, minLineLength=width // 8, maxLineGap=10)
    if lines is None:
        return 0.0
    angles = []
    for x1, y1, x2, y2 in lines[:, 0, :]:
        angle = math.degrees(math.atan2(y1 - y2, x2 - x1))
        if abs(angle) <= _MAX_SKEW:
            angles.append(angle)
    return float(np.median(angles)) if angles else 0.0


def deskewed(image: Image.Image, minimum: float = 0.5) -> tuple[Image.Image, float]:
    """`image` turned upright, and the angle it was turned by (0 when it was within `minimum` degrees)."""
    angle = skew_angle(image)
    if abs(angle) < minimum:
        return image, 0.0
    fill = 255 if image.mode == "L" else (255, 255, 255)
    return image.rotate(-angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill), angle


def limited(image: Image.Image, side: int = 1600) -> Image.Image:
    """A copy at most `side` pixels on its longest side (or `image` itself), for measuring and detecting: angles,
    faces and colours do not need full resolution."""
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)
