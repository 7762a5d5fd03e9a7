"""espeak-ng speech synthesis through ctypes, with word timings.

The shared library and its voice data come from the ``espeakng-loader`` wheel
(no system package needed). Two environment variables point elsewhere:
``SPECTRON_KIT_ESPEAK_LIBRARY`` (path of ``libespeak-ng.so``) and
``SPECTRON_KIT_ESPEAK_DATA`` (path of the ``espeak-ng-data`` folder).

espeak-ng keeps hidden state between calls (pitch flutter phase, echo and
noise buffers), so the same text spoken twice comes out slightly different.
To make every call a pure function of its arguments, this module works on a
private copy of the library and reloads it before each synthesis (under a
millisecond). All calls go through one process-wide lock.

Example:
    >>> out = synthesize("The fox ran home.", voice="en-us+f3")  # doctest: +SKIP
    >>> out.sample_rate, [w.word for w in out.words]  # doctest: +SKIP
    (16000, ['The', 'fox', 'ran', 'home'])
"""
from __future__ import annotations

import atexit
import ctypes
import dataclasses
import functools
import math
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from spectron_kit.audio import resample

__all__ = [
    "EspeakError", "WordTiming", "PhonemeTiming", "Synthesis", "synthesize", "tokenize",
    "english_voices", "variants", "check_voice", "library_path", "data_path",
    "RATE_MIN", "RATE_MAX",
]

LIBRARY_ENV = "SPECTRON_KIT_ESPEAK_LIBRARY"
DATA_ENV = "SPECTRON_KIT_ESPEAK_DATA"

RATE_MIN, RATE_MAX = 80, 450  # words per minute accepted by espeak-ng

# espeak-ng constants (speak_lib.h)
_OUTPUT_SYNCHRONOUS = 2
_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_END_OF_LIST = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_INITIALIZE_PHONEME_EVENTS = 0x0001  # phoneme events in the callback (the audio is unchanged)
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4

# Voice names people type that espeak-ng spells differently.
_ALIASES = {"en-gb": "en", "en-uk": "en", "english": "en"}
# Voices tagged English that read another script.
_NOT_SPOKEN_ENGLISH = {"en-shaw"}


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded, initialised or run."""


@dataclasses.dataclass(frozen=True)
class WordTiming:
    """One word of the input text with the time span it is spoken in.

    Arguments:
        word: the word as written in the text.
        start: seconds from the start of the audio.
        end: seconds; the next word's start or, before a pause, the end of voicing.
        char_start: offset of the word's first character in the text.
        char_end: offset one past its last character.
    """

    word: str
    start: float
    end: float
    char_start: int
    char_end: int


@dataclasses.dataclass(frozen=True)
class PhonemeTiming:
    """One phoneme espeak-ng spoke, with its time span.

    Arguments:
        phoneme: espeak-ng's phoneme mnemonic in the voice's phoneme table, with
            its stress mark (``"'A@"`` is a stressed ``A@``; ``"_"`` a pause).
        start: seconds from the start of the audio.
        end: seconds; the next phoneme's start, or the end of the audio for the last.
    """

    phoneme: str
    start: float
    end: float


@dataclasses.dataclass
class Synthesis:
    """Result of :func:`synthesize`.

    Arguments:
        wav: float32 mono waveform in [-1, 1].
        sample_rate: samples per second of ``wav``.
        words: one :class:`WordTiming` per word of the text, in order.
        phonemes: one :class:`PhonemeTiming` per phoneme spoken, in order.
    """

    wav: np.ndarray
    sample_rate: int
    words: list
    phonemes: list = dataclasses.field(default_factory=list)

    @property
    def duration(self) -> float:
        """Length of the waveform in seconds."""
        return len(self.wav) / self.sample_rate


# -- ctypes declarations -------------------------------------------------------
class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


def library_path() -> str:
    """Path of the espeak-ng shared library in use.

    Returns:
        ``$SPECTRON_KIT_ESPEAK_LIBRARY`` when set, else the library in the espeakng-loader wheel.
    """
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env
    return _loader().get_library_path()


def data_path() -> str:
    """Path of the ``espeak-ng-data`` folder in use.

    Returns:
        ``$SPECTRON_KIT_ESPEAK_DATA`` when set, else the data folder in the espeakng-loader wheel.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return env
    try:
        return _loader().get_data_path()
    except RuntimeError as err:
        raise EspeakError(f"espeakng-loader has no voice data ({err}); reinstall it with "
                          f"`pip install --force-reinstall espeakng-loader` or set {DATA_ENV}") from None


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise ImportError("espeak-ng synthesis needs the espeakng-loader wheel: "
                          "pip install espeakng-loader") from None
    return espeakng_loader


class _Engine:
    """A private copy of libespeak-ng, reloaded for each synthesis."""

    def __init__(self):
        self.source = library_path()
        self.data = data_path()
        if not os.path.isfile(self.source):
            raise EspeakError(f"espeak-ng library not found at {self.source}; install "
                              f"espeakng-loader or set {LIBRARY_ENV} to libespeak-ng.so")
        if not os.path.isdir(self.data):
            raise EspeakError(f"espeak-ng data folder not found at {self.data}; install "
                              f"espeakng-loader or set {DATA_ENV} to an espeak-ng-data folder")
        # A private file name gives a handle nobody else shares, so closing it
        # really unloads the library and resets espeak-ng's static state.
        self._dir = tempfile.mkdtemp(prefix="spectron-espeak-")
        atexit.register(shutil.rmtree, self._dir, True)
        self.copy = os.path.join(self._dir, os.path.basename(self.source))
        shutil.copy2(self.source, self.copy)
        self.lib = None
        self.sample_rate = None
        self._chunks = []
        self._events = []
        self._phonemes = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive as long as the engine

    def _on_audio(self, wav, n_samples, events):
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_END_OF_LIST:
            ev = events[i]
            if ev.type == _EVENT_WORD:
                self._events.append((ev.text_position - 1, ev.length, ev.audio_position))
            elif ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self._phonemes.append((name, ev.audio_position))
            i += 1
        return 0

    def open(self):
        try:
            lib = ctypes.CDLL(self.copy)
        except OSError as err:
            raise EspeakError(f"cannot load the espeak-ng library {self.source} "
                              f"(copied to {self.copy}): {err}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, self.data.encode(),
                                     _DONT_EXIT | _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            self._unload(lib, terminate=False)
            raise EspeakError(f"espeak-ng ({self.source}) failed to initialise with data folder "
                              f"{self.data} (returned {rate}); check that the folder holds "
                              f"phontab and en_dict, or set {DATA_ENV}")
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.sample_rate = lib, rate

    def close(self):
        if self.lib is not None:
            lib, self.lib = self.lib, None
            self._unload(lib, terminate=True)

    @staticmethod
    def _unload(lib, terminate):
        if terminate:
            lib.espeak_Terminate()
        import _ctypes
        _ctypes.dlclose(lib._handle)

    def run(self, text, voice, rate, pitch, pitch_range, volume, seed):
        self.close()
        self.open()  # fresh static state: output depends on the arguments only
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng does not know the voice {voice!r}; "
                             f"pick one of english_voices(), optionally with '+<variant>'")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch),
                             (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, volume)):
            lib.espeak_SetParameter(param, int(value), 0)
        lib.espeak_ng_SetRandSeed(int(seed))
        self._chunks, self._events, self._phonemes = [], [], []
        data = text.encode("utf-8")
        status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise EspeakError(f"espeak_Synth failed with status {status} on text {text[:60]!r}")
        chunks, events, phonemes = self._chunks, self._events, self._phonemes
        self._chunks, self._events, self._phonemes = [], [], []
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return wav, events, phonemes


_LOCK = threading.RLock()
_ENGINE = None


def _engine() -> _Engine:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


# -- voices --------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _voice_files():
    root = Path(data_path())
    bases = {}
    for path in sorted((root / "lang").rglob("*")):
        if not path.is_file():
            continue
        try:
            head = path.read_text(encoding="utf-8", errors="replace").splitlines()[:6]
        except OSError:
            continue
        langs = [line.split()[1] for line in head if line.startswith("language ") and len(line.split()) > 1]
        bases[path.name.lower()] = langs
    variant_dir = root / "voices" / "!v"
    names = sorted(p.name for p in variant_dir.iterdir() if p.is_file()) if variant_dir.is_dir() else []
    return bases, tuple(names)


def english_voices() -> list:
    """Base English voices of the data folder (use with ``+variant``).

    Returns:
        Sorted names such as ``en``, ``en-us``, ``en-gb-x-rp``.

    Example:
        >>> "en-us" in english_voices()
        True
    """
    bases, _ = _voice_files()
    return sorted(name for name, langs in bases.items()
                  if any(lang.split("-")[0] == "en" for lang in langs)
                  and name not in _NOT_SPOKEN_ENGLISH)


def variants() -> list:
    """Voice variants of the data folder (``m1`` .. ``m8``, ``f1`` .. ``f5``, ``klatt`` ...).

    Returns:
        Sorted variant names, as appended after ``+`` in a voice name.

    Example:
        >>> {"m1", "f3", "klatt"} <= set(variants())
        True
    """
    return list(_voice_files()[1])


def check_voice(voice: str) -> str:
    """Validate a ``base[+variant]`` voice name and spell it the way espeak-ng wants.

    Arguments:
        voice: e.g. ``"en-us"``, ``"en-gb+m3"``, ``"en+klatt"``.
    Returns:
        The canonical name (``"en-gb+m3"`` becomes ``"en+m3"``).

    Example:
        >>> check_voice("en-GB+m3")
        'en+m3'
    """
    if not isinstance(voice, str) or not voice.strip():
        raise ValueError(f"voice must be a name like 'en-us' or 'en-us+f3', got {voice!r}")
    base, _, variant = voice.strip().partition("+")
    base = _ALIASES.get(base.lower(), base.lower())
    bases, names = _voice_files()
    if base not in bases:
        raise ValueError(f"unknown espeak-ng voice {base!r} in {voice!r}; English voices: "
                         f"{', '.join(english_voices())}")
    if variant:
        lower = {n.lower(): n for n in names}
        if variant.lower() not in lower:
            raise ValueError(f"unknown espeak-ng variant {variant!r} in {voice!r}; variants: "
                             f"{', '.join(names)}")
        return f"{base}+{lower[variant.lower()]}"
    return base


# -- text and timings ------------------------------------------------------------
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list:
    """Words of ``text`` with their character spans (letters, digits, inner apostrophes).

    Arguments:
        text: any text.
    Returns:
        List of ``(word, char_start, char_end)``.

    Example:
        >>> tokenize("At three o'clock, go!")
        [('At', 0, 2), ('three', 3, 8), ("o'clock", 9, 16), ('go', 18, 20)]
    """
    return [(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def _word_starts(tokens, events, duration):
    """Start time of each token from espeak's word events (seconds)."""
    starts = [None] * len(tokens)
    ends = [t[2] for t in tokens]
    j = 0
    for pos, _length, ms in events:
        # first token ending after the event position; events may point at the
        # gap before a word, and numbers give several events inside one token
        while j < len(tokens) and ends[j] <= pos:
            j += 1
        if j == len(tokens):
            break
        if starts[j] is None and tokens[j][1] - pos <= 3:
            starts[j] = ms / 1000.0
    # tokens without an event: share the gap between known neighbours by length
    known = [i for i, s in enumerate(starts) if s is not None]
    if len(known) < len(starts):
        anchors = [(-1, 0.0)] + [(i, starts[i]) for i in known] + [(len(starts), duration)]
        for (i0, t0), (i1, t1) in zip(anchors, anchors[1:]):
            if i1 - i0 > 1:
                lo = i0 if i0 >= 0 else 0
                weights = [len(tokens[k][0]) for k in range(lo, i1)]
                total, acc = float(sum(weights)) or 1.0, 0.0
                for k, w in zip(range(lo, i1), weights):
                    if starts[k] is None:
                        starts[k] = t0 + (t1 - t0) * acc / total
                    acc += w
    # keep them non-decreasing
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1])
    return starts


def _voiced_ends(wav, sample_rate, starts, duration, floor_db=40.0):
    """End of each word: next start, pulled back over trailing silence."""
    hop = max(1, sample_rate // 100)  # 10 ms
    n = len(wav) // hop
    if n == 0:
        return [duration] * len(starts)
    frames = wav[: n * hop].astype(np.float64).reshape(n, hop)
    level = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    loud = level > level.max() - floor_db
    ends = []
    for i, start in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else duration
        a, b = int(start * 100), min(n, int(math.ceil(nxt * 100)))
        idx = np.flatnonzero(loud[a:b])
        end = nxt if idx.size == 0 else min(nxt, (a + int(idx[-1]) + 1) / 100.0)
        ends.append(float(max(end, min(nxt, start + 0.02))))
    return ends


# -- public entry point ----------------------------------------------------------------
def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
               pitch_range: int = 50, volume: int = 100, sample_rate: int = 16000,
               seed: int = 0) -> Synthesis:
    """Speak ``text`` with espeak-ng and time every word.

    Start a sentence with a capital letter: espeak-ng only pauses after a full
    stop that is followed by one.

    Arguments:
        text: UTF-8 text (plain, no SSML).
        voice: ``base[+variant]``, e.g. ``"en-us"``, ``"en+m3"``, ``"en-us+klatt"``.
        rate: speaking rate in words per minute (80-450).
        pitch: base pitch, 0-100 (50 is the voice's normal).
        pitch_range: intonation range, 0 (monotone) to 100.
        volume: 0-200 (100 is normal; loud voices may clip above about 70).
        sample_rate: output rate; espeak-ng's native 22050 Hz audio is resampled to it.
        seed: seed of espeak-ng's noise generator (breathy and Klatt voices).
    Returns:
        :class:`Synthesis` with a float32 waveform, one :class:`WordTiming` per word and
        one :class:`PhonemeTiming` per phoneme spoken.

    Example:
        >>> out = synthesize("One two three.")  # doctest: +SKIP
        >>> [w.word for w in out.words], out.words[0].start  # doctest: +SKIP
        (['One', 'two', 'three'], 0.0)
    """
    if not isinstance(text, str) or not _WORD_RE.search(text):
        raise ValueError(f"text must hold at least one word, got {text!r}")
    voice = check_voice(voice)
    for name, value, lo, hi in (("rate", rate, RATE_MIN, RATE_MAX), ("pitch", pitch, 0, 100),
                                ("pitch_range", pitch_range, 0, 100), ("volume", volume, 0, 200)):
        if not lo <= value <= hi:
            raise ValueError(f"{name}={value!r} is out of range; use {lo}..{hi}")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate={sample_rate!r} must be a positive integer (e.g. 16000)")
    with _LOCK:
        engine = _engine()
        raw, events, phoneme_events = engine.run(text, voice, rate, pitch, pitch_range, volume, seed)
        native = engine.sample_rate
    wav = raw.astype(np.float32) / 32768.0
    if native != sample_rate:
        wav = np.clip(resample(wav, native, int(sample_rate)).numpy(), -1.0, 1.0)
    duration = len(wav) / sample_rate
    tokens = tokenize(text)
    starts = [min(s, duration) for s in _word_starts(tokens, events, duration)]
    ends = _voiced_ends(wav, sample_rate, starts, duration)
    words = [WordTiming(w, s, e, a, b) for (w, a, b), s, e in zip(tokens, starts, ends)]
    return Synthesis(wav, int(sample_rate), words, _phoneme_spans(phoneme_events, duration))


def phonemes_per_word(text: str, voice: str = "en-us") -> list:
    """How many phonemes espeak-ng speaks for each word of ``text`` (pauses not counted).

    Each word is read on its own (espeak-ng's word events drift by a phoneme
    from its phoneme events, so cutting a sentence's reading at word times
    misplaces boundaries); linking sounds between words are not counted.

    Returns:
        ``[(word, n_phonemes), ...]``, one pair per word of :func:`tokenize`.

    Example:
        >>> phonemes_per_word("the cat")  # doctest: +SKIP
        [('the', 2), ('cat', 3)]
    """
    return [(word, _phoneme_count(word.lower(), voice)) for word, _, _ in tokenize(text)]


@functools.lru_cache(maxsize=4096)
def phoneme_names(word: str, voice: str = "en-us") -> tuple:
    """The phonemes espeak-ng speaks for one word (pauses left out), e.g. ``('k', "'a", 't')`` for "cat"."""
    if not _WORD_RE.search(word):
        return ()
    return tuple(p.phoneme for p in synthesize(word, voice=voice).phonemes if not p.phoneme.startswith("_"))


@functools.lru_cache(maxsize=4096)
def _phoneme_count(word, voice):
    return sum(1 for p in synthesize(word, voice=voice).phonemes if not p.phoneme.startswith("_"))


def _phoneme_spans(events, duration):
    """espeak-ng's phoneme events ``(name, ms)`` -> :class:`PhonemeTiming` list (each ends where the next starts)."""
    starts = [min(max(ms / 1000.0, 0.0), duration) for _, ms in events]
    for i in range(1, len(starts)):  # keep them non-decreasing
        starts[i] = max(starts[i], starts[i - 1])
    ends = starts[1:] + [duration]
    return [PhonemeTiming(name, s, e) for (name, _), s, e in zip(events, starts, ends) if name]
