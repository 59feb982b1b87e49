#!/usr/bin/env python3
"""Writes tests/fixtures/whisper_real/quick_brown_fox.wav: synthetic speech at 16 kHz.

espeak-ng (Debian package espeak-ng) speaks SENTENCE as a 22050 Hz WAV on its
stdout; it is resampled to 16 kHz (Whisper's rate, the only one edgekv's WAV
reader takes) by cutting its spectrum at 8 kHz (an ideal low-pass for a finite
clip), then written as 16-bit mono. It speaks at 120 words a minute (en-us):
at espeak-ng's default 175 Whisper tiny.en mishears words ("roundfire").
The WAV is committed, so the tests need neither espeak-ng nor this script and
do not change with espeak-ng's version; rerun it only to change the sentence.

Usage: python3 tools/make_speech_fixture.py [--out FILE] [--text SENTENCE]
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import wave

import numpy as np

SENTENCE = "The quick brown fox jumps over the lazy dog."
RATE = 16000


def espeak(text: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "120", "--stdout", text],
                         check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("espeak-ng did not write 16-bit mono")
        # espeak-ng's streamed WAV header leaves the length open: read it all.
        pcm = np.frombuffer(w.readframes(1 << 30), "<i2").astype(np.float64)
        return pcm, w.getframerate()


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    n_out = int(round(x.size * rate_out / rate_in))
    spectrum = np.fft.rfft(x)[: n_out // 2 + 1]
    return np.fft.irfft(spectrum, n_out) * (n_out / x.size)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "whisper_real",
                                                  "quick_brown_fox.wav"))
    ap.add_argument("--text", default=SENTENCE)
    args = ap.parse_args()
    pcm, rate = espeak(args.text)
    y = np.clip(np.round(resample(pcm, rate, RATE)), -32768, 32767).astype("<i2")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with wave.open(args.out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(y.tobytes())
    print(f"{args.out}: {y.size / RATE:.2f} s from {rate} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
