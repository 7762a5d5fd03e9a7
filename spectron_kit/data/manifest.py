"""Utterance manifests: the CSV files that data preparation writes and recipes read.

A manifest is a CSV file (UTF-8, comma separated, quoted where needed) with one
row per utterance and this header, in this order::

    id,path,start,end,duration,speaker,book,prompt_seconds,text,prompt_text,word_times,phone_times

============== ======= =======================================================
column         type    meaning
============== ======= =======================================================
id             str     unique utterance id (e.g. ``367-130732-0001``)
path           str     audio file; relative paths are resolved against the
                       manifest's folder when read; ``$name`` placeholders are
                       filled from ``read_manifest(..., replacements=...)``
start          float   segment start within the file, seconds
end            float   segment end within the file, seconds; ``-1`` means
                       "to the end of the file"
duration       float   segment length in seconds (``end - start`` once resolved)
speaker        str     speaker id
book           str     book (Libri-Light) or chapter (LibriSpeech) id
prompt_seconds float   length of the speech prompt the model is given
text           str     whole transcript of the segment, lower case; may be
                       empty when the audio is untranscribed
prompt_text    str     the words spoken within the prompt when known from word
                       alignments, else empty
word_times     str     when word alignments are known: one ``start:end``
                       (seconds from the segment start) per word of ``text``,
                       space separated (see :func:`parse_word_times`); else
                       empty. Older manifests without the column read as empty.
phone_times    str     when phoneme alignments are known (the espeak-ng mini
                       corpus): one ``start:end:phoneme`` per phoneme spoken
                       (see :func:`parse_phone_times`); else empty
============== ======= =======================================================

Long files (Libri-Light) give many rows pointing at the same ``path`` with
different ``start``/``end``; whole files (LibriSpeech) have ``start=0``.

SpeechBrain's ``DynamicItemDataset.from_csv`` insists on an upper-case ``ID``
column; build the dataset with
``DynamicItemDataset(to_speechbrain_data(read_manifest(path)))`` instead.

Example:
    >>> import tempfile, os
    >>> rows = [{"id": "a", "path": "/x/a.flac", "start": 0.0, "end": 5.0,
    ...          "duration": 5.0, "speaker": "1", "book": "2", "text": "hi there"}]
    >>> folder = tempfile.mkdtemp()
    >>> write_manifest(rows, os.path.join(folder, "m.csv"))
    1
    >>> back = read_manifest(os.path.join(folder, "m.csv"))
    >>> back[0]["duration"], back[0]["prompt_seconds"], back[0]["prompt_text"]
    (5.0, 3.0, '')
    >>> split_prompt(5.0).eligible, split_prompt(3.5).eligible
    (True, False)
"""
import csv
import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import soundfile as sf

from spectron_kit.audio import load_audio, to_samples

logger = logging.getLogger(__name__)

#: manifest columns, in file order
COLUMNS = ("id", "path", "start", "end", "duration", "speaker", "book",
           "prompt_seconds", "text", "prompt_text", "word_times", "phone_times")
#: columns parsed as floats when read
FLOAT_COLUMNS = ("start", "end", "duration", "prompt_seconds")
#: columns every row must have when written (the rest get defaults)
REQUIRED_COLUMNS = ("id", "path", "start", "end", "duration")
#: defaults for optional columns
DEFAULTS = {"speaker": "", "book": "", "prompt_seconds": 3.0, "text": "", "prompt_text": "", "word_times": "",
            "phone_times": ""}

DEFAULT_PROMPT_SECONDS = 3.0
DEFAULT_MIN_CONTINUATION_SECONDS = 1.0


class ManifestError(ValueError):
    """A manifest file or row that cannot be used."""


# ---------------------------------------------------------------------------
# reading and writing
# ---------------------------------------------------------------------------
def _format_value(column, value):
    if column in FLOAT_COLUMNS:
        value = float(value)
        if not math.isfinite(value):
            raise ManifestError(f"column {column!r} has a non-finite value {value!r}; "
                                "give a finite number of seconds")
        return repr(round(value, 6))
    text = "" if value is None else str(value)
    # one row per line: newlines inside a text would break line-based tools
    return " ".join(text.split()) if column in ("text", "prompt_text", "word_times", "phone_times") else text


def format_word_times(times):
    """``[(start, end), ...]`` seconds -> the ``word_times`` column text.

    Example:
        >>> format_word_times([(0.0, 0.25), (0.25, 0.6)])
        '0:0.25 0.25:0.6'
    """
    return " ".join(f"{round(float(a), 4):g}:{round(float(b), 4):g}" for a, b in times)


def format_phone_times(phones):
    """``[(phoneme, start, end), ...]`` -> the ``phone_times`` column text.

    Example:
        >>> format_phone_times([("h", 0.0, 0.05), ("'A@", 0.05, 0.2)])
        "0:0.05:h 0.05:0.2:'A@"
    """
    return " ".join(f"{round(float(a), 4):g}:{round(float(b), 4):g}:{name}" for name, a, b in phones
                    if name and not any(c.isspace() for c in name))


def parse_phone_times(value):
    """The ``phone_times`` column -> list of ``(phoneme, start, end)``, or None when empty or unusable.

    Example:
        >>> parse_phone_times("0:0.05:h 0.05:0.2:'A@")
        [('h', 0.0, 0.05), ("'A@", 0.05, 0.2)]
        >>> parse_phone_times("0.3:0.2:h") is None
        True
    """
    if not value:
        return None
    out = []
    for item in str(value).split():
        parts = item.split(":", 2)
        if len(parts) != 3 or not parts[2]:
            return None
        try:
            start, end = float(parts[0]), float(parts[1])
        except ValueError:
            return None
        if not start <= end:
            return None
        out.append((parts[2], start, end))
    return out


def parse_word_times(value, n_words=None):
    """The ``word_times`` column -> list of ``(start, end)`` seconds, or None when empty or unusable.

    Arguments
    ---------
    value : str
        The column text (``"0:0.25 0.25:0.6"``).
    n_words : int, optional
        Number of words of the row's ``text``; a different count gives None.

    Returns
    -------
    list of (float, float) or None

    Example:
        >>> parse_word_times("0:0.25 0.25:0.6", n_words=2)
        [(0.0, 0.25), (0.25, 0.6)]
        >>> parse_word_times("0:0.25", n_words=2) is None
        True
    """
    if not value:
        return None
    try:
        times = [tuple(float(x) for x in item.split(":")) for item in str(value).split()]
    except ValueError:
        return None
    if any(len(t) != 2 or not t[0] <= t[1] for t in times):
        return None
    if n_words is not None and len(times) != n_words:
        return None
    return times


def start_at_word(row, index, prompt_seconds=None):
    """The row of the same utterance starting at its word ``index`` (a prompt that begins mid-sentence).

    The new segment starts in the pause before that word (half way through it, at most 0.1 s before the
    word); ``text``, ``word_times``, ``phone_times`` and ``prompt_text`` are those of the words from there
    on, times measured from the new start; the id gains ``@<index>``. Real prompts start anywhere, while a
    corpus's segments all start where a sentence does: the mini recipe's ``shifted_prompts`` trains on
    both.

    Arguments:
        row: a manifest row with ``word_times`` (one span per word of ``text``).
        index: the first word kept (0 returns the row itself).
        prompt_seconds: the prompt length for ``prompt_text`` (default: the row's).

    Returns:
        The new row (a dict).

    Raises:
        ValueError: the row has no usable word times, or ``index`` is not one of its words.

    Example:
        >>> row = {"id": "u", "start": 1.0, "end": 4.0, "duration": 3.0, "text": "one two three",
        ...        "word_times": "0:0.5 0.7:1.2 1.3:2.9", "phone_times": "0:0.5:w 0.7:1.2:t 1.3:2.9:T",
        ...        "prompt_seconds": 2.0, "prompt_text": "one two"}
        >>> new = start_at_word(row, 1)
        >>> new["id"], new["start"], new["text"], new["word_times"], new["prompt_text"], new["phone_times"]
        ('u@1', 1.6, 'two three', '0.1:0.6 0.7:2.3', 'two', '0.1:0.6:t 0.7:2.3:T')
    """
    from spectron_kit.data.transcripts import prompt_words

    words = str(row.get("text", "")).split()
    times = parse_word_times(row.get("word_times", ""), n_words=len(words))
    if times is None:
        raise ValueError(f"row {row.get('id')!r} has no word_times for its {len(words)} words; only aligned rows "
                         "can start at a word")
    if not 0 <= int(index) < len(words):
        raise ValueError(f"word index {index} is outside row {row.get('id')!r}'s {len(words)} words")
    index = int(index)
    if index == 0:
        return dict(row)
    gap_start = times[index - 1][1]
    offset = max(times[index][0] - 0.1, (gap_start + times[index][0]) / 2, 0.0)
    offset = round(min(offset, times[index][0]), 4)
    shifted = [(max(a - offset, 0.0), max(b - offset, 0.0)) for a, b in times[index:]]
    phones = [(name, max(a - offset, 0.0), b - offset) for name, a, b in parse_phone_times(row.get("phone_times", ""))
              or () if b > offset]
    seconds = float(row.get("prompt_seconds") or DEFAULTS["prompt_seconds"]) if prompt_seconds is None \
        else float(prompt_seconds)
    end = float(row.get("end", -1))
    return dict(row, id=f"{row['id']}@{index}", start=round(float(row.get("start", 0.0)) + offset, 4),
                duration=round(float(row["duration"]) - offset, 6), end=end,
                text=" ".join(words[index:]), word_times=format_word_times(shifted),
                phone_times=format_phone_times(phones) if phones else "",
                prompt_text=prompt_words([[w, a, b] for w, (a, b) in zip(words[index:], shifted)], seconds))


def write_manifest(rows, path):
    """Write utterance rows to a manifest CSV (atomically: a temp file, then a rename).

    Arguments
    ---------
    rows : iterable of dict
        Each needs ``id, path, start, end, duration``; ``speaker, book,
        prompt_seconds, text, prompt_text, word_times`` default to
        ``"", "", 3.0, "", "", ""``.
        Extra keys are ignored.
    path : str or Path
        Where to write; parent folders are created.

    Returns
    -------
    int
        Number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen = set()
    lines = []
    for i, row in enumerate(rows):
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise ManifestError(f"manifest row {i} (id={row.get('id')!r}) lacks column(s) "
                                f"{', '.join(missing)}; every row needs {', '.join(REQUIRED_COLUMNS)}")
        if row["id"] in seen:
            raise ManifestError(f"duplicate utterance id {row['id']!r} in manifest rows; "
                                "ids must be unique")
        seen.add(row["id"])
        lines.append([_format_value(c, row.get(c, DEFAULTS.get(c, ""))) for c in COLUMNS])
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows(lines)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(lines)


def read_manifest(path, replacements=None):
    """Read a manifest CSV into a list of row dicts.

    Arguments
    ---------
    path : str or Path
        The manifest file.
    replacements : dict, optional
        ``{"data_root": "/data"}`` turns ``$data_root/a.flac`` into ``/data/a.flac``
        in the ``path`` column (SpeechBrain convention).

    Returns
    -------
    list of dict
        One dict per row with all :data:`COLUMNS`; ``start, end, duration,
        prompt_seconds`` are floats, the rest strings. Relative audio paths are
        made absolute against the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {str(path)!r} does not exist; run data preparation "
                                "first or fix the path")
    replacements = replacements or {}
    placeholder = re.compile(r"\$([\w.]+)")

    def fill(match):
        key = match.group(1)
        if key not in replacements:
            raise ManifestError(f"manifest {path}: placeholder ${key} has no value; pass "
                                f"read_manifest(..., replacements={{'{key}': ...}})")
        return str(replacements[key])

    rows, seen = [], {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ManifestError(f"manifest {path} lacks column(s) {', '.join(missing)}; "
                                f"the header must be {','.join(COLUMNS)}")
        for lineno, raw in enumerate(reader, start=2):
            row = {c: raw.get(c) if raw.get(c) is not None else DEFAULTS.get(c, "") for c in COLUMNS}
            for c in FLOAT_COLUMNS:
                value = row[c]
                if value == "" and c in DEFAULTS:
                    row[c] = float(DEFAULTS[c])
                    continue
                try:
                    row[c] = float(value)
                except (TypeError, ValueError):
                    raise ManifestError(f"manifest {path} line {lineno}: column {c!r} is {value!r}, "
                                        "not a number of seconds") from None
            audio = placeholder.sub(fill, row["path"])
            if audio and not os.path.isabs(audio):
                audio = str((path.parent / audio).resolve())
            row["path"] = audio
            if row["id"] in seen:  # a dataset keyed by id would silently keep only one of them
                first = seen[row["id"]]
                raise ManifestError(f"manifest {path}: utterance id {row['id']!r} on line {first[0]} ({first[1]}) "
                                    f"and line {lineno} ({audio}); give every utterance its own id")
            seen[row["id"]] = (lineno, audio)
            rows.append(row)
    return rows


def to_speechbrain_data(rows):
    """Turn manifest rows into the ``{id: {...}}`` dict ``DynamicItemDataset`` takes.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (from :func:`read_manifest`).

    Returns
    -------
    dict
        ``{id: row without "id"}``.

    Example:
        >>> to_speechbrain_data([{"id": "u1", "duration": 2.0}])
        {'u1': {'duration': 2.0}}
    """
    return {row["id"]: {k: v for k, v in row.items() if k != "id"} for row in rows}


# ---------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------
def load_segment(row, target_sr=16000):
    """Read the ``[start, end]`` segment of a row's audio as a mono waveform.

    Only the segment's frames are read from disk; stereo is averaged to mono
    and other sample rates are resampled to ``target_sr``.

    Arguments
    ---------
    row : dict
        A manifest row (needs ``path``, ``start``, ``end``; ``end=-1`` reads to
        the end of the file).
    target_sr : int
        Sample rate of the returned waveform.

    Returns
    -------
    torch.Tensor
        float32, shape ``[samples]``.
    """
    path = row["path"]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file {path!r} of utterance {row.get('id')!r} does not "
                                "exist; fix the manifest or rerun data preparation")
    start_s, end_s = float(row.get("start", 0) or 0), float(row.get("end", -1))
    info = sf.info(path)
    sr, n_frames = info.samplerate, info.frames
    start = to_samples(start_s, sr)
    stop = n_frames if end_s < 0 else to_samples(end_s, sr)
    if start < 0 or start >= n_frames or stop > n_frames + max(1, sr // 100) or stop <= start:
        raise ValueError(f"segment [{start_s}, {end_s}] s of utterance {row.get('id')!r} lies "
                         f"outside {path!r} (0-{n_frames / sr:.3f} s); fix start/end")
    return load_audio(path, target_sr, start=start_s, end=None if end_s < 0 else end_s)  # the one reader


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------
#: report key -> (log description, whether rows of this kind are kept)
VALIDATION_CATEGORIES = {
    "missing": ("audio file missing: skipped", False),
    "unreadable": ("audio unreadable: skipped", False),
    "undecodable": ("audio data damaged (decoding failed): skipped", False),
    "out_of_bounds": ("segment outside the file: skipped", False),
    "resampled": ("sample rate differs from target: kept, will be resampled", True),
    "mixed_down": ("more than one channel: kept, will be mixed down to mono", True),
}


def _decoded_frames(path, block=1 << 16):
    """Decode a whole file (block by block, nothing kept) and return its real number of frames."""
    frames = 0
    with sf.SoundFile(path) as f:
        while True:
            data = f.read(block, dtype="float32", always_2d=True)
            if not len(data):
                return frames
            frames += len(data)


def validate_manifest(rows, target_sr=16000, tolerance_seconds=0.01, progress=True, decode=True):
    """Check that every row's audio exists, is readable and holds its segment.

    Reads each file once: its header, then (``decode=True``) all of its data,
    so a damaged file (a truncated FLAC whose header is intact) is skipped
    here, not in the middle of training; segments are checked against the
    decoded length.

    Arguments
    ---------
    rows : list of dict
        Manifest rows.
    target_sr : int
        The sample rate the model wants; other rates are counted as "resampled".
    tolerance_seconds : float
        How far ``end`` may run past the end of the file before the row is out
        of bounds (VAD timestamps are rounded).
    progress : bool
        Show a progress bar.
    decode : bool
        Decode every file (False: headers only, for very large corpora).

    Returns
    -------
    good_rows : list of dict
        Rows that can be loaded (including those needing resampling/mix-down).
    report : dict
        ``total``, ``kept`` and a count per category in
        :data:`VALIDATION_CATEGORIES`, plus ``examples``: category -> up to 5
        utterance ids.
    """
    report = {"total": 0, "kept": 0, **{k: 0 for k in VALIDATION_CATEGORIES}, "examples": {}}
    info_cache = {}

    def note(category, row):
        report[category] += 1
        examples = report["examples"].setdefault(category, [])
        if len(examples) < 5:
            kept = VALIDATION_CATEGORIES[category][1]
            examples.append(row.get("id") if kept else f"{row.get('id')} ({row.get('path')})")

    good = []
    for row in track(rows, description="validating audio", enabled=progress):
        report["total"] += 1
        path = row.get("path", "")
        if path not in info_cache:
            if not path or not os.path.isfile(path):
                info_cache[path] = "missing"
            else:
                try:
                    info = sf.info(path)
                    if info.frames <= 0 or info.samplerate <= 0:
                        raise RuntimeError("no audio frames")
                    info_cache[path] = (info, info.frames)
                except Exception as err:  # libsndfile raises several types
                    logger.debug("cannot read %s: %s", path, err)
                    info_cache[path] = "unreadable"
                if decode and info_cache[path] != "unreadable":
                    try:
                        info_cache[path] = (info, _decoded_frames(path))
                    except Exception as err:  # noqa: BLE001 - e.g. "flac decoder lost sync"
                        logger.debug("cannot decode %s: %s", path, err)
                        info_cache[path] = "undecodable"
        cached = info_cache[path]
        if isinstance(cached, str):
            note(cached, row)
            continue
        info, frames = cached
        file_seconds = frames / info.samplerate
        start, end = float(row.get("start", 0) or 0), float(row.get("end", -1))
        end_resolved = file_seconds if end < 0 else end
        if start < 0 or end_resolved <= start or start >= file_seconds \
                or end_resolved > file_seconds + tolerance_seconds:
            note("out_of_bounds", row)
            continue
        if info.samplerate != target_sr:
            note("resampled", row)
        if info.channels > 1:
            note("mixed_down", row)
        good.append(row)
    report["kept"] = len(good)
    logger.info("validated %d utterances: %d kept", report["total"], report["kept"])
    for key, (description, _) in VALIDATION_CATEGORIES.items():
        if report[key]:
            logger.info("  %s: %d (e.g. %s)", description, report[key],
                        ", ".join(map(str, report["examples"][key])))
    return good, report


# ---------------------------------------------------------------------------
# prompt / continuation split
# ---------------------------------------------------------------------------
class PromptSplit(NamedTuple):
    """Where an utterance splits into prompt and continuation."""

    eligible: bool  #: long enough for a prompt plus the minimum continuation
    prompt_seconds: float  #: prompt length (clipped to the duration)
    continuation_seconds: float  #: what remains after the prompt (>= 0)


def split_prompt(duration, prompt_seconds=DEFAULT_PROMPT_SECONDS,
                 min_continuation_seconds=DEFAULT_MIN_CONTINUATION_SECONDS):
    """Decide whether an utterance can be a continuation example, and where it splits.

    Arguments
    ---------
    duration : float
        Utterance length in seconds.
    prompt_seconds : float
        Prompt length (paper: 3 s).
    min_continuation_seconds : float
        Shortest continuation worth training or evaluating on.

    Returns
    -------
    PromptSplit
        ``eligible`` is True when ``duration >= prompt_seconds + min_continuation_seconds``.

    Example:
        >>> split_prompt(7.5)
        PromptSplit(eligible=True, prompt_seconds=3.0, continuation_seconds=4.5)
        >>> split_prompt(2.0).eligible
        False
    """
    for name, value in (("duration", duration), ("prompt_seconds", prompt_seconds),
                        ("min_continuation_seconds", min_continuation_seconds)):
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name}={value!r} must be a finite number of seconds >= 0")
    if float(prompt_seconds) <= 0:
        raise ValueError(f"prompt_seconds={prompt_seconds!r} must be > 0")
    duration, prompt_seconds = float(duration), float(prompt_seconds)
    prompt = min(prompt_seconds, duration)
    continuation = max(duration - prompt_seconds, 0.0)
    eligible = duration >= prompt_seconds + float(min_continuation_seconds) - 1e-9
    return PromptSplit(eligible, prompt, continuation)


def filter_for_continuation(rows, prompt_seconds=None,
                            min_continuation_seconds=DEFAULT_MIN_CONTINUATION_SECONDS):
    """Keep the rows long enough for a prompt plus a continuation.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (need ``duration``).
    prompt_seconds : float, optional
        Prompt length; ``None`` uses each row's ``prompt_seconds`` column
        (3 s when absent).
    min_continuation_seconds : float
        Shortest continuation kept.

    Returns
    -------
    kept : list of dict
        Eligible rows, in input order.
    n_skipped : int
        Rows dropped as too short (logged).
    """
    kept = []
    for row in rows:
        p = prompt_seconds if prompt_seconds is not None else row.get("prompt_seconds", DEFAULT_PROMPT_SECONDS)
        if split_prompt(row["duration"], p, min_continuation_seconds).eligible:
            kept.append(row)
    n_skipped = len(rows) - len(kept)
    if n_skipped:
        logger.info("skipped %d of %d utterances too short for a %s s prompt plus %.1f s of "
                    "continuation", n_skipped, len(rows),
                    "per-row" if prompt_seconds is None else f"{float(prompt_seconds):g}",
                    float(min_continuation_seconds))
    return kept, n_skipped


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------
# the progress helper lives in spectron_kit.progress; ``manifest.track`` stays for existing imports
from spectron_kit.progress import track  # noqa: E402,F401
