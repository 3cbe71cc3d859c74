"""Vision: images in (`image`) and OCR (`ocr`). Nothing here knows HTTP; the routes are in `aigw.api.vision`."""
