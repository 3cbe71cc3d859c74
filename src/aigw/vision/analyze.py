"""Image analysis: a prompt about an image answered as a chat stream. Knows nothing of HTTP.

With a vision model configured (`AIGW_VISION_MODEL`, a chat model served by Ollama or an OpenAI-compatible server
that reads images), the image goes to it with the prompt. Otherwise the embedded composite answers: the detectors'
findings (engines/vision/detectors.py) and the OCR text, written up by the chat model, which is told it cannot
see the image and must not claim more than the findings say.
"""

from __future__ import annotations

from dataclasses import dataclass

from aigw.chat.service import ChatService, ChatSession
from aigw.engines.llm.base import ChatMessage, ChatOptions, ChatRequest
from aigw.engines.ocr.tesseract import iso_languages
from aigw.engines.vision.detectors import Detectors
from aigw.vision.image import jpeg_base64
from aigw.vision.ocr import OcrService

DEFAULT_PROMPT = "Describe this image in detail."
_COMPOSITE_SYSTEM = (
    "You cannot see the image. Automatic detectors examined it and reported the facts below; they are everything "
    "you know about it. The detectors can only find printed text, barcodes, faces, standing people, colours, "
    "size and camera data: they cannot tell what objects, places, food, animals or activities are in the image. "
    "Answer the user's request with these facts only, in a few sentences. Never name an object, place or activity "
    "that is not in the printed text. If the request asks for something the detectors cannot tell, say that "
    "no vision model is configured to tell it."
)
LABEL = "From automatic detectors (no vision model is configured): "


@dataclass
class Analysis:
    session: ChatSession
    method: str  # "composite" or the vision model's name
    preamble: str = ""  # text that comes before the model's: the composite says what its answer rests on


class VisionService:
    def __init__(self, ocr: OcrService, detectors: Detectors, chat: ChatService, vision_model: str | None) -> None:
        self.ocr = ocr
        self.detectors = detectors
        self.chat = chat
        self.vision_model = vision_model

    async def analyze(self, data: bytes, prompt: str | None, user_id: int, language: str | None = None) -> Analysis:
        """Start answering `prompt` about the image in `data`; the caller streams `Analysis.session.events()`."""
        prompt = (prompt or "").strip() or DEFAULT_PROMPT
        image = await self.ocr.decode(data)
        if self.vision_model is not None:
            message = ChatMessage(role="user", content=prompt, images=[jpeg_base64(image)])
            request = ChatRequest(messages=[message])
            return Analysis(await self.chat.start(user_id, self.vision_model, request, inject=False), self.vision_model)
        findings = await self.detectors.detect(image, data)
        languages = iso_languages(language)
        findings.text = (await self.ocr.choose(languages).read(image, languages, "sparse")).strip()
        request = ChatRequest(
            messages=[
                ChatMessage(role="system", content=f"{_COMPOSITE_SYSTEM}\n\nFacts:\n{findings.described()}"),
                ChatMessage(role="user", content=prompt),
            ],
            options=ChatOptions(temperature=0, num_predict=300),
        )
        return Analysis(await self.chat.start(user_id, None, request, inject=False), "composite", LABEL)
