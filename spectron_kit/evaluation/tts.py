"""Text-to-speech components (kind ``tts``): text -> waveform.

Used to synthesise spoken questions (Spoken WebQuestions) and test prompts.
"""
from __future__ import annotations

import numpy as np


class EspeakTTS:
    """espeak-ng speech through the espeakng-loader wheel: offline and deterministic.

    Arguments:
        voice: default voice, ``base[+variant]`` (e.g. ``"en-us"``, ``"en+m3"``, ``"en-us+f3"``).
        rate: words per minute (80-450).
        pitch: base pitch 0-100.
        pitch_range: intonation range 0-100.
        sample_rate: output rate in Hz.

    Example:
        >>> tts = EspeakTTS(voice="en-us+f3")  # doctest: +SKIP
        >>> wav, sr = tts.synthesize("What color is the sky?")  # doctest: +SKIP
        >>> sr, wav.dtype  # doctest: +SKIP
        (16000, dtype('float32'))
    """

    def __init__(self, voice: str = "en-us", rate: int = 175, pitch: int = 50,
                 pitch_range: int = 50, sample_rate: int = 16000):
        from spectron_kit.data import espeak  # needs the espeakng-loader wheel

        self._espeak = espeak
        self.voice = espeak.check_voice(voice)
        if not espeak.RATE_MIN <= rate <= espeak.RATE_MAX:
            raise ValueError(f"rate={rate!r} is out of range; use {espeak.RATE_MIN}..{espeak.RATE_MAX}")
        for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
            if not 0 <= value <= 100:
                raise ValueError(f"{name}={value!r} is out of range; use 0..100")
        if int(sample_rate) <= 0:
            raise ValueError(f"sample_rate={sample_rate!r} must be a positive integer (e.g. 16000)")
        self.rate, self.pitch, self.pitch_range = int(rate), int(pitch), int(pitch_range)
        self.sample_rate = int(sample_rate)
        bases = espeak.english_voices()
        #: English base voices, then ``en-us+<variant>`` for every variant of the data folder
        self.voices = bases + [f"en-us+{v}" for v in espeak.variants()]

    def synthesize(self, text: str, voice: str | None = None):
        """Speak ``text``.

        Arguments:
            text: plain text; start sentences with a capital for natural pauses.
            voice: overrides the default voice for this call.
        Returns:
            ``(wav, sample_rate)``: float32 mono waveform in [-1, 1] and its rate.
        """
        out = self._espeak.synthesize(text, voice=voice or self.voice, rate=self.rate,
                                      pitch=self.pitch, pitch_range=self.pitch_range,
                                      sample_rate=self.sample_rate)
        return out.wav.astype(np.float32, copy=False), out.sample_rate

    def __repr__(self):
        return (f"EspeakTTS(voice={self.voice!r}, rate={self.rate}, pitch={self.pitch}, "
                f"pitch_range={self.pitch_range}, sample_rate={self.sample_rate})")


from spectron_kit.hookspecs import hookimpl  # noqa: E402


@hookimpl
def register_tts(register):
    register("espeak", EspeakTTS, description="espeak-ng through the espeakng-loader wheel (offline)")
