"""Speech: audio in and out (`audio`), transcription (`service`), synthesis sentence by sentence (`tts`), the
languages and their engines (`languages`), voices and clones (`voices`, `cloning`), and voice chat
(`voicechat`). Nothing here knows HTTP; the routes are in `aigw.api.speech` and `aigw.api.tts`."""
