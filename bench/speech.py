"""Speech speed and accuracy, in process, on the embedded engines.

`--part stt` (default): synthesises English sentences with Piper (en_US joe) and Kokoro (jf_alpha), then runs
each through the path `/api/stt` takes (PyAV decode of a WAV, then faster-whisper); reports the real-time
factor (transcription seconds / audio seconds, decode included, p50 and overall), the word error rate (jiwer,
lower-cased, punctuation stripped) per voice, and the model's load time.

`--part tts`: real-time factor per engine (synthesis seconds / audio seconds) and the time to the first
sentence's audio of a three-sentence paragraph (what voicechat and the realtime socket wait for).

`--part languages`: every language of `aigw.speech.languages`, its sample sentence synthesised by its engine
(and, for Kokoro's languages, by espeak-ng too), transcribed back by Whisper base told the language: the
character error rate, both texts romanised, that decides the table (listed at most 0.45).

`--part voicechat`: a 3 s spoken question through STT, the embedded chat model and TTS, end to end.

    .venv/bin/python bench/speech.py [--part stt|tts|languages|voicechat] [--model base|tiny.en|PATH] [--repeat 2]

Prints a table, the command, the machine and the date; writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from anyascii import anyascii

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

from aigw.engines.stt import build_stt_engine  # noqa: E402
from aigw.engines.stt.base import SAMPLE_RATE, SttConfig, SttEngine  # noqa: E402
from aigw.engines.tts import build_tts_engines  # noqa: E402
from aigw.engines.tts.base import Prosody, Speaker, TtsConfig  # noqa: E402
from aigw.speech.audio import decode_audio, resample, wav_bytes  # noqa: E402
from aigw.speech.languages import LANGUAGES  # noqa: E402
from aigw.speech.tts import TtsService  # noqa: E402
from aigw.speech.voices import PRESETS  # noqa: E402

SENTENCES = [
    "The lighthouse keeper writes down the height of the tides every morning.",
    "Please send the quarterly report to the finance team before Friday.",
    "Our new office opens next Monday on the third floor of the north building.",
    "Interns get twelve days of paid leave a year, and requests go to their manager.",
    "The backup generator in building C is tested on the first Monday of each month.",
    "Can you book a table for four people at seven thirty tonight?",
    "The train to Edinburgh leaves from platform nine in twenty minutes.",
    "Remember to water the tomatoes twice a week during the summer.",
    "She said the meeting was moved to Thursday afternoon because of the holiday.",
    "Turn left at the bakery, then walk two blocks until you see the museum.",
    "The library will be closed on Sunday for maintenance of the heating system.",
    "Our support line answers calls from eight in the morning to six in the evening.",
]


VOICES = {"piper": PRESETS["preset_aria"].speaker, "kokoro": PRESETS["preset_nova"].speaker}
QUESTIONS = [  # about 3 s each in Piper's voice; a different one each run, so no reply comes from a cache
    "Hello there, could you tell me how you are doing today?",
    "Could you tell me, please, which city is the capital of France?",
    "What is the name of the largest ocean on our planet?",
    "How many days are there in a week, and which one comes first?",
    "Which animal is known as the king of the jungle, and why?",
]
PARAGRAPH = (
    "Thanks for waiting. Your order left the warehouse this morning and should arrive on Thursday. "
    "You will get a text message with the tracking link."
)


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def letters(text: str) -> str:
    """The text's letters and digits, romanised (so that a transcript in another script of the language, or
    Whisper's choice between traditional and simplified characters, is not counted as errors)."""
    return " ".join(ch for ch in anyascii(text).lower() if ch.isalnum())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class Engines:
    """The embedded engines, built as the server builds them, in one models dir."""

    def __init__(self, models_dir: Path, stt_model: str = "base") -> None:
        self.models_dir = models_dir
        self.stt: SttEngine = build_stt_engine(SttConfig(model=stt_model), models_dir)
        embedded, _ = build_tts_engines(TtsConfig(), models_dir)
        self.tts_engines = embedded
        self.tts = TtsService(embedded)

    async def warm(self) -> dict[str, float]:
        loads = {}
        for name, engine in [("stt", self.stt), *self.tts_engines.items()]:
            warm: Callable[[], Awaitable[None]] | None = getattr(engine, "warm", None)
            if warm is not None:
                started = time.perf_counter()
                await warm()
                loads[name] = round(time.perf_counter() - started, 2)
        return loads

    async def say(self, text: str, language: str, speaker: Speaker) -> tuple[np.ndarray, float]:
        """16 kHz samples of the text spoken, and the seconds synthesis took."""
        started = time.perf_counter()
        speech = await self.tts.speak(text, language, speaker, Prosody())
        took = time.perf_counter() - started
        return resample(speech.samples, speech.rate, SAMPLE_RATE), took

    async def hear(self, samples: np.ndarray, language: str | None) -> tuple[str, float]:
        """The transcript of a WAV of the samples (decoded as /api/stt decodes), and the seconds it took."""
        wav = wav_bytes(samples, SAMPLE_RATE)
        started = time.perf_counter()
        decoded = decode_audio(wav, 600)
        transcript = await self.stt.transcribe(decoded.samples, language=language)
        return transcript.text, time.perf_counter() - started


async def stt_part(engines: Engines, repeat: int) -> dict[str, Any]:
    """Per voice: RTF and WER with the language detected, and WER with it given."""
    result: dict[str, Any] = {"model": engines.stt.model_id, "sentences": len(SENTENCES), "repeat": repeat}
    for voice, speaker in VOICES.items():
        clips = [(text, (await engines.say(text, "en", speaker))[0]) for text in SENTENCES]
        factors: list[float] = []
        audio_total = work_total = 0.0
        references, detected, given = [], [], []
        for _ in range(repeat):
            for text, samples in clips:
                seconds = len(samples) / SAMPLE_RATE
                heard, took = await engines.hear(samples, None)
                factors.append(took / seconds)
                audio_total += seconds
                work_total += took
                references.append(normalise(text))
                detected.append(normalise(heard))
                given.append(normalise((await engines.hear(samples, "en"))[0]))
        result[voice] = {
            "audio_s": round(audio_total, 1),
            "rtf_p50": round(statistics.median(factors), 3),
            "rtf_overall": round(work_total / audio_total, 3),
            "wer": round(jiwer.wer(references, detected), 4),
            "wer_language_given": round(jiwer.wer(references, given), 4),
        }
    return result


async def tts_part(engines: Engines, repeat: int) -> dict[str, Any]:
    cases = {
        "piper": [("en", VOICES["piper"], SENTENCES)],
        "kokoro": [
            ("en", VOICES["kokoro"], SENTENCES[:4]),
            *[(code, VOICES["kokoro"], [LANGUAGES[code].sample]) for code in ("es", "fr", "de", "it")],
        ],
        "espeak": [(code, VOICES["piper"], [LANGUAGES[code].sample]) for code in ("pl", "sv", "cs", "fi", "ko", "hi")],
    }
    result: dict[str, Any] = {}
    for engine, runs in cases.items():
        factors, audio_total, work_total = [], 0.0, 0.0
        for _ in range(repeat):
            for language, speaker, texts in runs:
                for text in texts:
                    samples, took = await engines.say(text, language, speaker)
                    seconds = len(samples) / SAMPLE_RATE
                    factors.append(took / seconds)
                    audio_total += seconds
                    work_total += took
        result[engine] = {
            "audio_s": round(audio_total, 1),
            "rtf_p50": round(statistics.median(factors), 3),
            "rtf_overall": round(work_total / audio_total, 3),
        }
    for engine, speaker in VOICES.items():
        firsts = []
        for _ in range(repeat * 2):
            started = time.perf_counter()
            stream = engines.tts.stream(PARAGRAPH, "en", speaker, Prosody())
            await anext(stream)
            firsts.append(time.perf_counter() - started)
            await stream.aclose()
        result[engine]["first_sentence_s_p50"] = round(statistics.median(firsts), 3)
    return result


async def languages_part(engines: Engines, only: list[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for code, language in LANGUAGES.items():
        if only and code not in only:
            continue
        tried = [language.engine] + (["espeak"] if language.engine == "kokoro" else [])
        row: dict[str, Any] = {"name": language.name, "engine": language.engine}
        for engine in tried:
            speaker = VOICES["kokoro"] if engine == "kokoro" else Speaker(piper=True)
            samples, took = (
                await engines.say(language.sample, code, speaker)
                if engine != "espeak"
                else (await _espeak(engines, language.sample, code))
            )
            heard, _ = await engines.hear(samples, code)
            row[f"cer_{engine}"] = round(float(jiwer.cer(letters(language.sample), letters(heard) or "-")), 3)
            row[f"rtf_{engine}"] = round(took / max(len(samples) / SAMPLE_RATE, 1e-6), 3)
            row[f"heard_{engine}"] = heard
        rows[code] = row
        print(code, {k: v for k, v in row.items() if not k.startswith("heard")}, flush=True)
    return rows


async def _espeak(engines: Engines, text: str, language: str) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    speech = await engines.tts_engines["espeak"].synthesize(text, language, Speaker(), Prosody())
    took = time.perf_counter() - started
    return resample(speech.samples, speech.rate, SAMPLE_RATE), took


async def voicechat_part(engines: Engines, repeat: int) -> dict[str, Any]:
    from aigw.chat.service import ChatService
    from aigw.engines.base import EngineRegistry
    from aigw.settings import Settings
    from aigw.speech.service import SpeechService
    from aigw.speech.voicechat import VoiceChat

    settings = Settings(models_dir=engines.models_dir, data_dir=engines.models_dir / "data")
    registry = EngineRegistry()
    chat = ChatService.from_settings(settings, registry)
    registry.warm_in_background()
    await registry.warmed()
    pipeline = VoiceChat(SpeechService(engines.stt, 600), chat, engines.tts)
    totals, lengths = [], []
    for i in range(min(repeat + 1, len(QUESTIONS))):
        question, _ = await engines.say(QUESTIONS[i], "en", VOICES["piper"])
        started = time.perf_counter()
        reply = await pipeline.reply(0, wav_bytes(question, SAMPLE_RATE), [], VOICES["piper"], language="en")
        totals.append(time.perf_counter() - started)
        lengths.append(len(question) / SAMPLE_RATE)
        print(f"  {totals[-1]:.2f} s: heard {reply.transcript.text!r}, said {reply.text!r}", flush=True)
    await registry.close()
    totals, lengths = totals[1:], lengths[1:]  # the first includes the chat model's first prompt
    return {
        "question_s": [round(length, 2) for length in lengths],
        "total_s_p50": round(statistics.median(totals), 2),
        "total_s_max": round(max(totals), 2),
        "runs": len(totals),
    }


async def run(part: str, model: str, repeat: int, only: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        engines = Engines(Path(os.environ.get("AIGW_MODELS_DIR", tmp)), model)
        loads = await engines.warm()
        if part == "stt":
            result = await stt_part(engines, repeat)
        elif part == "tts":
            result = await tts_part(engines, repeat)
        elif part == "languages":
            result = await languages_part(engines, only)
        else:
            result = await voicechat_part(engines, repeat)
        return {"part": part, "load_s": loads, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["stt", "tts", "languages", "voicechat"], default="stt")
    parser.add_argument("--model", default="base", help="the Whisper model (base, tiny.en or a directory)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--languages", default="", help="--part languages: only these codes (comma-separated)")
    args = parser.parse_args()
    command = "python bench/speech.py " + " ".join(sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: {command}\nmachine: {machine}\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    only = [code for code in args.languages.split(",") if code]
    result = asyncio.run(run(args.part, args.model, args.repeat, only))
    print(json.dumps(result, ensure_ascii=False))
    if args.part == "languages":
        print("\n| code | language | engine | CER | espeak-ng's CER |\n|---|---|---|---|---|")
        for code, row in result.items():
            if isinstance(row, dict) and "engine" in row:
                alternative = row.get("cer_espeak", "") if row["engine"] == "kokoro" else ""
                print(f"| {code} | {row['name']} | {row['engine']} | {row['cer_' + row['engine']]} | {alternative} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"speech-{args.part}-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"command": command, "machine": machine, **result}, indent=2, ensure_ascii=False))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
