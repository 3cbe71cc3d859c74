"""Speech: audio decoding and the speech service (transcription now; synthesis and voice chat to come)."""
