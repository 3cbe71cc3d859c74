"""Speech-to-text speed and accuracy: aigw's embedded engine on sentences spoken by the packaged Piper voice.

Synthesises English sentences with Piper (en_US joe, the only Piper voice that ships in a package), then runs
each through the path `/api/stt` takes in process (PyAV decode of a WAV, then faster-whisper), and reports:

- real-time factor (transcription seconds / audio seconds, decode included), p50 and over the whole set;
- word error rate over the set (jiwer, after lower-casing and stripping punctuation);
- the first-request load time of the model.

    .venv/bin/python bench/speech.py [--model base|tiny.en|PATH] [--repeat 2]

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
from datetime import UTC, datetime
from pathlib import Path

import jiwer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
RESULTS = HERE / "results"

from aigw.engines.stt import build_stt_engine  # noqa: E402
from aigw.engines.stt.base import SttConfig  # noqa: E402
from aigw.speech.audio import decode_audio  # noqa: E402
from speech_files import speak, spoken  # noqa: E402 - tests/speech_files.py, the Piper voice

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


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


async def run(model: str, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_stt_engine(SttConfig(model=model), Path(os.environ.get("AIGW_MODELS_DIR", tmp)))
        started = time.perf_counter()
        await engine.warm()  # type: ignore[attr-defined]
        load_s = time.perf_counter() - started
        clips = [(text, spoken(text), len(speak(text)[0]) / speak(text)[1]) for text in SENTENCES]
        factors, references, hypotheses = [], [], []
        audio_total = work_total = 0.0
        for _ in range(repeat):
            for text, wav, seconds in clips:
                started = time.perf_counter()
                decoded = decode_audio(wav, 600)
                transcript = await engine.transcribe(decoded.samples, language=None)
                took = time.perf_counter() - started
                factors.append(took / seconds)
                audio_total += seconds
                work_total += took
                references.append(normalise(text))
                hypotheses.append(normalise(transcript.text))
        await engine.close()
    return {
        "model": model,
        "sentences": len(SENTENCES),
        "repeat": repeat,
        "audio_s": round(audio_total, 1),
        "load_s": round(load_s, 2),
        "rtf_p50": round(statistics.median(factors), 3),
        "rtf_overall": round(work_total / audio_total, 3),
        "wer": round(jiwer.wer(references, hypotheses), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    command = "python bench/speech.py " + " ".join(sys.argv[1:])
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: {command}\nmachine: {machine}\ndate: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    result = asyncio.run(run(args.model, args.repeat))
    print(json.dumps(result))
    print("\n| model | audio s | load s | RTF p50 | RTF overall | WER |\n|---|---|---|---|---|---|")
    print(
        f"| {result['model']} | {result['audio_s']} | {result['load_s']} | {result['rtf_p50']} "
        f"| {result['rtf_overall']} | {result['wer']:.1%} |"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"speech-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"command": command, "machine": machine, **result}, indent=2))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
