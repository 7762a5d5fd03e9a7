"""Data preparation for Spectron speech continuation: Libri-Light and LibriSpeech manifests.

Writes one manifest CSV per subset/split into ``save_folder`` (schema in
``spectron_kit.data.manifest``): ``<save_folder>/<subset>.csv`` for Libri-Light
(``small.csv``) and ``<save_folder>/<split>.csv`` for LibriSpeech
(``test-clean.csv``). Beside each manifest a ``<name>.prep.json`` records the
options it was built with and its counts (utterances, hours, skipped by
reason); a rerun with the same options skips the work
(SpeechBrain convention), a rerun with different options rebuilds it.

Libri-Light (``<root>/<subset>/<speaker>/<book>/<name>.flac`` + ``<name>.json``
with ``voice_activity``) is cut along its voice-activity segments into
utterances of ``min_seconds`` to ``max_seconds``. It has no transcripts: make
pseudo-labels first, then prepare again with them::

    python librilight_prepare.py --librilight /data/librilight --save results/prep
    python ../../tools/pseudo_label.py results/prep/small.csv results/prep/small_labels.tsv \\
        --transcriber whisper
    python librilight_prepare.py --librilight /data/librilight --save results/prep \\
        --transcripts results/prep/small_labels.tsv

From a recipe::

    from librilight_prepare import prepare
    run_on_main(prepare, kwargs={"save_folder": hparams["save_folder"],
                                 "librilight_folder": hparams["librilight_folder"],
                                 "librispeech_folder": hparams["librispeech_folder"],
                                 "transcripts": hparams["transcripts"]})
"""
import argparse
import json
import logging
import math
import sys
from collections import Counter
from pathlib import Path

try:
    from spectron_kit.audio import audio_seconds
    from spectron_kit.data.manifest import (COLUMNS, DEFAULT_PROMPT_SECONDS, format_phone_times, format_word_times,
                                            track, write_manifest)
    from spectron_kit.data.transcripts import prompt_words, read_transcripts, read_word_alignments
    from spectron_kit.text import normalize_text
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from spectron_kit.audio import audio_seconds
    from spectron_kit.data.manifest import (COLUMNS, DEFAULT_PROMPT_SECONDS, format_phone_times, format_word_times,
                                            track, write_manifest)
    from spectron_kit.data.transcripts import prompt_words, read_transcripts, read_word_alignments
    from spectron_kit.text import normalize_text

logger = logging.getLogger(__name__)

#: human-readable descriptions of the skip counters
SKIP_REASONS = {
    "no_vad_json": "audio files without a voice-activity JSON beside them",
    "bad_json": "voice-activity JSON files that cannot be parsed",
    "unreadable_audio": "audio files that soundfile cannot read",
    "bad_vad_segment": "voice-activity segments that are malformed or outside the file",
    "too_short": "cut pieces shorter than min_seconds",
    "no_transcript": "utterances without a transcript (require_text=True)",
    "bad_alignment": "utterances whose word alignments are malformed (prompt_text left empty)",
}


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------
def _already_prepared(csv_path, options):
    """SpeechBrain-style skip: True when ``csv_path`` exists and was built with ``options``."""
    opts_path = csv_path.with_suffix(".prep.json")
    if not csv_path.is_file():
        return False
    if not opts_path.is_file():
        logger.info("%s exists (no record of its options): skipping its preparation", csv_path)
        return True
    try:
        previous = json.loads(opts_path.read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == options:
        logger.info("%s already prepared with the same options: skipping", csv_path)
        return True
    logger.info("%s was prepared with other options: rebuilding it", csv_path)
    return False


def _write(csv_path, rows, options, skipped, name):
    write_manifest(rows, csv_path)
    hours = sum(r["duration"] for r in rows) / 3600
    record = {"options": options, "utterances": len(rows), "hours": round(hours, 4),
              "skipped": {k: v for k, v in sorted(skipped.items()) if v}}
    csv_path.with_suffix(".prep.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    logger.info("%s: %d utterances, %.2f hours -> %s", name, len(rows), hours, csv_path)
    if not rows:
        logger.warning("%s: the manifest is empty; see the skip counts below", name)
    for reason, count in sorted(skipped.items()):
        if count:
            logger.info("  skipped %d %s", count, SKIP_REASONS.get(reason, reason))


def _check_folder(folder, what, fix):
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {str(folder)!r} is not a folder; {fix}")
    return folder


def _subfolder(root, name, what):
    path = root / name
    if not path.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"{what} {name!r} not found under {str(root)!r} (found: "
                                f"{', '.join(found) or 'nothing'}); fix the {what} name or data_folder")
    return path


# ---------------------------------------------------------------------------
# Libri-Light
# ---------------------------------------------------------------------------
def cut_voice_activity(segments, min_seconds=4.0, max_seconds=20.0):
    """Cut voice-activity segments into utterance spans.

    Consecutive segments are merged while the merged span (gaps included)
    stays within ``max_seconds``; a single segment longer than ``max_seconds``
    is split into equal pieces of at most ``max_seconds`` (and not merged with
    its neighbours). Pieces shorter than ``min_seconds`` are dropped.

    Arguments
    ---------
    segments : list of (float, float)
        Valid ``(start, end)`` seconds with ``end > start``, in any order.
    min_seconds : float
        Shortest utterance kept.
    max_seconds : float
        Longest utterance.

    Returns
    -------
    spans : list of (int, float, float)
        ``(k, start, end)`` of the kept pieces, where ``k`` indexes all pieces
        (kept or not) so ids stay stable when ``min_seconds`` changes.
    n_too_short : int
        Pieces dropped for being shorter than ``min_seconds``.

    Example:
        >>> cut_voice_activity([(0, 3), (4, 9), (12, 14), (30, 31)], 4, 10)
        ([(0, 0.0, 9.0)], 2)
    """
    pieces = []
    current = None
    for start, end in sorted((float(s), float(e)) for s, e in segments):
        if end - start > max_seconds:
            if current is not None:
                pieces.append(tuple(current))
                current = None
            n = math.ceil((end - start) / max_seconds - 1e-9)
            step = (end - start) / n
            pieces.extend((start + i * step, start + (i + 1) * step) for i in range(n))
            pieces[-1] = (pieces[-1][0], end)  # no float drift on the last edge
        elif current is None:
            current = [start, end]
        elif max(current[1], end) - current[0] <= max_seconds + 1e-9:
            current[1] = max(current[1], end)
        else:
            pieces.append(tuple(current))
            current = [start, end]
    if current is not None:
        pieces.append(tuple(current))
    spans = [(k, s, e) for k, (s, e) in enumerate(pieces) if e - s >= min_seconds - 1e-9]
    return spans, len(pieces) - len(spans)


def _vad_segments(meta, file_seconds, counter):
    """Valid, clipped ``(start, end)`` pairs from a Libri-Light JSON; counts the bad ones."""
    raw = meta.get("voice_activity")
    if not isinstance(raw, list):
        raise ValueError("no 'voice_activity' list")
    good = []
    for seg in raw:
        try:
            start, end = float(seg[0]), float(seg[1])
            ok = math.isfinite(start) and math.isfinite(end) and len(seg) == 2
        except (TypeError, ValueError, IndexError, KeyError):
            ok = False
        if ok:
            start, end = max(start, 0.0), min(end, file_seconds)
            ok = end > start
        if ok:
            good.append((start, end))
        else:
            counter["bad_vad_segment"] += 1
    return good


def _speaker_book(meta, speaker_dir, book_dir):
    speaker = meta.get("speaker")
    speaker = str(speaker).strip() if speaker not in (None, "") else speaker_dir
    book_meta = meta.get("book_meta")
    book = book_meta.get("id") if isinstance(book_meta, dict) else None
    book = str(book).strip() if book not in (None, "") else book_dir
    return speaker, book


def _librilight_file_rows(audio, texts, require_text, min_seconds, max_seconds, prompt_seconds, skipped):
    """The manifest rows of one Libri-Light file, cut along its voice activity: ``(rows, whether its JSON
    speaker differs from its folder)``, or None when the file is skipped (counted in ``skipped``)."""
    speaker_dir, book_dir, name = audio.parent.parent.name, audio.parent.name, audio.stem
    json_path = audio.with_suffix(".json")
    if not json_path.is_file():
        skipped["no_vad_json"] += 1
        return None
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        logger.debug("cannot parse %s: %s", json_path, err)
        skipped["bad_json"] += 1
        return None
    try:
        file_seconds = audio_seconds(audio)
    except Exception as err:  # libsndfile raises several types
        logger.debug("cannot read %s: %s", audio, err)
        skipped["unreadable_audio"] += 1
        return None
    try:
        segments = _vad_segments(meta, file_seconds, skipped)
    except ValueError:
        skipped["bad_json"] += 1
        return None
    speaker, book = _speaker_book(meta, speaker_dir, book_dir)
    spans, n_short = cut_voice_activity(segments, min_seconds, max_seconds)
    skipped["too_short"] += n_short
    rows = []
    for k, start, end in spans:
        # files already named <speaker>-<book>-<n> (LibriSpeech style) keep their name: no doubled prefix
        stem = name if name.startswith(f"{speaker_dir}-{book_dir}-") else f"{speaker_dir}-{book_dir}-{name}"
        utt_id = f"{stem}-{k:04d}"
        text = ""
        if texts is not None:
            text = texts.get(utt_id, "")
            if not text and require_text:
                skipped["no_transcript"] += 1
                continue
        rows.append({"id": utt_id, "path": str(audio.resolve()), "start": round(start, 6),
                     "end": round(end, 6), "duration": round(end - start, 6),
                     "speaker": speaker, "book": book, "prompt_seconds": prompt_seconds,
                     "text": text, "prompt_text": ""})
    return rows, speaker != speaker_dir


def prepare_librilight(data_folder, save_folder, subsets=("small",), min_seconds=4.0,
                       max_seconds=20.0, transcripts=None, require_text=True,
                       prompt_seconds=DEFAULT_PROMPT_SECONDS, skip_prep=False, progress=True):
    """Cut Libri-Light audiobooks into utterances along voice activity and write manifests.

    Expects ``<data_folder>/<subset>/<speaker>/<book>/<name>.flac`` with
    ``<name>.json`` beside it (keys ``voice_activity`` ``[[start, end], ...]``,
    ``speaker``, ``book_meta`` ``{"id", "title", ...}``; when the JSON lacks
    speaker or book id, the folder names are used). Utterance ids are
    ``<speaker folder>-<book folder>-<name>-<k:04d>``.

    Arguments
    ---------
    data_folder : str or Path
        Libri-Light root (holding ``small/``, ``medium/``...).
    save_folder : str or Path
        Where ``<subset>.csv`` is written.
    subsets : sequence of str
        Subset folders to prepare.
    min_seconds, max_seconds : float
        Utterance length bounds (see :func:`cut_voice_activity`).
    transcripts : str or Path, optional
        Transcripts matched by utterance id (see :func:`read_transcripts`):
        pseudo-labels TSV, a CSV with id/text, or a folder of ``*.trans.txt``.
        ``None`` keeps every utterance with empty text (for pseudo-labelling).
    require_text : bool
        With ``transcripts``: skip (and count) utterances that have no
        transcript; False keeps them with empty text.
    prompt_seconds : float
        Written to the ``prompt_seconds`` column.
    skip_prep : bool
        Do nothing (manifests are provided by the user).
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``{subset: path of its manifest CSV}``.
    """
    save_folder = Path(save_folder)
    subsets = [subsets] if isinstance(subsets, str) else list(subsets)
    outputs = {s: save_folder / f"{s}.csv" for s in subsets}
    if skip_prep:
        return outputs
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"min_seconds={min_seconds} and max_seconds={max_seconds} must satisfy "
                         "0 < min_seconds <= max_seconds")
    root = _check_folder(data_folder, "Libri-Light data_folder",
                         "point it at the folder that holds small/, medium/ or large/")
    texts = None
    for subset in subsets:
        options = {"dataset": "librilight", "data_folder": str(root.resolve()), "subset": subset,
                   "min_seconds": float(min_seconds), "max_seconds": float(max_seconds),
                   "transcripts": str(Path(transcripts).resolve()) if transcripts else None,
                   "require_text": bool(require_text), "prompt_seconds": float(prompt_seconds)}
        if _already_prepared(outputs[subset], options):
            continue
        if transcripts is not None and texts is None:
            texts = read_transcripts(transcripts)
            logger.info("read %d transcripts from %s", len(texts), transcripts)
        subset_dir = _subfolder(root, subset, "Libri-Light subset")
        audio_files = sorted(subset_dir.glob("*/*/*.flac"))
        if not audio_files:
            raise FileNotFoundError(f"no <speaker>/<book>/<name>.flac files under {str(subset_dir)!r}; "
                                    "is this a Libri-Light subset folder?")
        skipped = Counter()
        mismatched_speaker = 0
        rows = []
        for audio in track(audio_files, f"cutting Libri-Light {subset}", enabled=progress):
            found = _librilight_file_rows(audio, texts, require_text, min_seconds, max_seconds, prompt_seconds,
                                          skipped)
            if found is not None:
                rows += found[0]
                mismatched_speaker += found[1]
        if mismatched_speaker:
            logger.warning("%d Libri-Light files have a JSON speaker differing from their folder "
                           "name; the manifest's speaker column uses the JSON value", mismatched_speaker)
        if transcripts is None:
            logger.info("Libri-Light %s has no transcripts: text is empty; make pseudo-labels with "
                        "tools/pseudo_label.py and prepare again with transcripts=...", subset)
        _write(outputs[subset], rows, options, skipped, f"Libri-Light {subset}")
    return outputs


# ---------------------------------------------------------------------------
# LibriSpeech
# ---------------------------------------------------------------------------
def alignment_word_times(alignment, text):
    """The manifest's ``word_times`` for one utterance: its alignment when it matches the transcript.

    Arguments
    ---------
    alignment : list of [word, start_s, end_s]
        Word alignment of the utterance.
    text : str
        The normalised transcript.

    Returns
    -------
    str
        ``start:end`` per word (see ``spectron_kit.data.manifest.format_word_times``),
        or ``""`` when the aligned words are not the transcript's words.

    Example:
        >>> alignment_word_times([["HE", 0.1, 0.3], ["WENT", 0.4, 0.9]], "he went")
        '0.1:0.3 0.4:0.9'
        >>> alignment_word_times([["HE", 0.1, 0.3]], "he went")
        ''
    """
    words = [normalize_text(str(item[0])) for item in alignment]
    if " ".join(words).split() != text.split() or len(words) != len(text.split()):
        return ""
    return format_word_times([(float(item[1]), float(item[2])) for item in alignment])


def _librispeech_row(audio, utt_id, split_dir, seconds, text, words, phones, prompt_seconds, skipped):
    """The manifest row of one LibriSpeech utterance: speaker and chapter from its name (else its folders),
    the prompt's words and the word and phoneme timings from its alignments when it has them (a broken
    alignment is counted in ``skipped`` and left out)."""
    parts = utt_id.split("-")
    if len(parts) == 3:
        speaker, chapter = parts[0], parts[1]
    else:  # not a LibriSpeech name: fall back on the folders
        rel = audio.relative_to(split_dir).parts
        speaker = rel[0] if len(rel) > 1 else ""
        chapter = rel[1] if len(rel) > 2 else ""
    prompt_text = word_times = phone_times = ""
    if phones is not None:
        try:
            phone_times = format_phone_times(phones)
        except (TypeError, ValueError) as err:
            logger.debug("phoneme alignment of %s: %s", utt_id, err)
            skipped["bad_phone_alignment"] += 1
    if words is not None:
        try:
            prompt_text = prompt_words(words, prompt_seconds)
            word_times = alignment_word_times(words, text)
        except (TypeError, ValueError) as err:
            logger.debug("alignment of %s: %s", utt_id, err)
            skipped["bad_alignment"] += 1
    return {"id": utt_id, "path": str(audio.resolve()), "start": 0.0, "end": round(seconds, 6),
            "duration": round(seconds, 6), "speaker": speaker, "book": chapter, "prompt_seconds": prompt_seconds,
            "text": text, "prompt_text": prompt_text, "word_times": word_times, "phone_times": phone_times}


def prepare_librispeech(data_folder, save_folder, splits=("test-clean",), alignments=True,
                        require_text=True, prompt_seconds=DEFAULT_PROMPT_SECONDS,
                        skip_prep=False, progress=True):
    """Write manifests for LibriSpeech splits (whole utterances with transcripts).

    Every ``*.flac`` or ``*.wav`` under ``<data_folder>/<split>`` is an utterance whose id is
    the file name (``<speaker>-<chapter>-<nnnn>``), so both the standard layout
    (``<speaker>/<chapter>/`` with ``<speaker>-<chapter>.trans.txt``) and a flat
    one (``<speaker>/<utt-id>.flac`` with one ``transcripts.txt``) work.
    Transcripts come from every ``*.trans.txt`` and ``transcripts.txt`` under
    the split. With ``alignments``, ``*.words.json`` files under the split
    (``{utt_id: [[word, start_s, end_s], ...]}``) fill ``prompt_text`` and
    ``word_times``, and ``*.phones.json`` files (the same shape, one entry per
    phoneme) fill ``phone_times``.

    Arguments
    ---------
    data_folder : str or Path
        LibriSpeech root (holding ``test-clean/``...).
    save_folder : str or Path
        Where ``<split>.csv`` is written.
    splits : sequence of str
        Split folders to prepare.
    alignments : bool
        Read ``*.words.json`` / ``*.phones.json`` alignments into ``prompt_text``,
        ``word_times`` and ``phone_times``.
    require_text : bool
        Skip (and count) utterances without a transcript; False keeps them with
        empty text (audio-only prompts).
    prompt_seconds : float
        Prompt length, written to ``prompt_seconds`` and used for ``prompt_text``.
    skip_prep : bool
        Do nothing (manifests are provided by the user).
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``{split: path of its manifest CSV}``.
    """
    save_folder = Path(save_folder)
    splits = [splits] if isinstance(splits, str) else list(splits)
    outputs = {s: save_folder / f"{s}.csv" for s in splits}
    if skip_prep:
        return outputs
    root = _check_folder(data_folder, "LibriSpeech data_folder",
                         "point it at the folder that holds test-clean/, train-clean-100/...")
    for split in splits:
        options = {"dataset": "librispeech", "data_folder": str(root.resolve()), "split": split,
                   "alignments": bool(alignments), "require_text": bool(require_text),
                   "prompt_seconds": float(prompt_seconds), "columns": list(COLUMNS)}
        if _already_prepared(outputs[split], options):
            continue
        split_dir = _subfolder(root, split, "LibriSpeech split")
        audio_files = sorted(p for suffix in LIBRISPEECH_AUDIO for p in split_dir.rglob(f"*{suffix}"))
        if not audio_files:
            raise FileNotFoundError(f"no .flac or .wav files under {str(split_dir)!r}; is this a LibriSpeech split?")
        has_transcripts = any(split_dir.rglob("*.trans.txt")) or any(split_dir.rglob("transcripts.txt"))
        texts = read_transcripts(split_dir) if has_transcripts else {}
        words = read_word_alignments(sorted(split_dir.rglob("*.words.json"))) if alignments else {}
        phones = read_word_alignments(sorted(split_dir.rglob("*.phones.json"))) if alignments else {}
        skipped = Counter()
        rows = []
        seen = set()
        for audio in track(audio_files, f"reading LibriSpeech {split}", enabled=progress):
            utt_id = audio.stem
            if utt_id in seen:
                raise ValueError(f"two audio files for utterance {utt_id} under {str(split_dir)!r} (e.g. "
                                 f"{audio.name} and another .flac/.wav); utterance ids must be unique within a split")
            seen.add(utt_id)
            text = texts.get(utt_id, "")
            if not text and require_text:
                skipped["no_transcript"] += 1
                continue
            try:
                seconds = audio_seconds(audio)
            except Exception as err:  # libsndfile raises several types
                logger.debug("cannot read %s: %s", audio, err)
                skipped["unreadable_audio"] += 1
                continue
            rows.append(_librispeech_row(audio, utt_id, split_dir, seconds, text, words.get(utt_id),
                                         phones.get(utt_id), prompt_seconds, skipped))
        orphans = len(set(texts) - seen)
        if orphans:
            logger.info("LibriSpeech %s: %d transcripts have no audio file (ignored)", split, orphans)
        if alignments and not words:
            logger.info("LibriSpeech %s: no *.words.json alignments found; prompt_text is empty", split)
        _write(outputs[split], rows, options, skipped, f"LibriSpeech {split}")
    return outputs


#: audio files of a LibriSpeech-layout folder (LibriSpeech itself ships .flac; own data is often .wav)
LIBRISPEECH_AUDIO = (".flac", ".wav")


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------
def prepare(save_folder, librilight_folder=None, librilight_subsets=("small",),
            librispeech_folder=None, librispeech_splits=("test-clean",), transcripts=None,
            require_text=True, min_seconds=4.0, max_seconds=20.0, alignments=True,
            prompt_seconds=DEFAULT_PROMPT_SECONDS, skip_prep=False, progress=True):
    """Prepare every dataset a Spectron continuation recipe needs (for ``run_on_main``).

    Arguments
    ---------
    save_folder : str or Path
        Where the manifests go.
    librilight_folder : str or Path, optional
        Libri-Light root; ``None`` skips Libri-Light.
    librilight_subsets : sequence of str
        Libri-Light subsets (``small``, ``medium``, ``large``).
    librispeech_folder : str or Path, optional
        LibriSpeech root; ``None`` skips LibriSpeech.
    librispeech_splits : sequence of str
        LibriSpeech splits (``test-clean``...).
    transcripts : str or Path, optional
        Libri-Light transcripts (see :func:`prepare_librilight`).
    require_text : bool
        Skip Libri-Light utterances without a transcript when ``transcripts`` is given.
    min_seconds, max_seconds : float
        Libri-Light utterance length bounds.
    alignments : bool
        Read LibriSpeech ``*.words.json`` into ``prompt_text``.
    prompt_seconds : float
        Prompt length.
    skip_prep : bool
        Do nothing.
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        ``{subset or split: manifest path}``.
    """
    if librilight_folder is None and librispeech_folder is None and not skip_prep:
        raise ValueError("prepare() got neither librilight_folder nor librispeech_folder; "
                         "give at least one")
    outputs = {}
    if librilight_folder is not None:
        outputs.update(prepare_librilight(librilight_folder, save_folder, librilight_subsets,
                                          min_seconds, max_seconds, transcripts, require_text,
                                          prompt_seconds, skip_prep, progress))
    if librispeech_folder is not None:
        outputs.update(prepare_librispeech(librispeech_folder, save_folder, librispeech_splits,
                                           alignments, True, prompt_seconds, skip_prep, progress))
    return outputs


def main(argv=None):
    """Command line: ``python librilight_prepare.py --librilight DIR --save DIR [...]``.

    Errors a user can cause (a folder of another layout, unreadable transcripts)
    are one line ``error: ...`` with exit code 2.
    """
    from spectron_kit.recipe import exit_on_config_error

    return exit_on_config_error(_main)(argv)


def _main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save", required=True, help="folder for the manifests")
    parser.add_argument("--librilight", help="Libri-Light root")
    parser.add_argument("--subsets", nargs="+", default=["small"])
    parser.add_argument("--librispeech", help="LibriSpeech root")
    parser.add_argument("--splits", nargs="+", default=["test-clean"])
    parser.add_argument("--transcripts", help="Libri-Light transcripts (TSV/CSV or *.trans.txt folder)")
    parser.add_argument("--keep-untranscribed", action="store_true",
                        help="keep Libri-Light utterances missing from --transcripts (empty text)")
    parser.add_argument("--min-seconds", type=float, default=4.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--prompt-seconds", type=float, default=DEFAULT_PROMPT_SECONDS)
    parser.add_argument("--no-alignments", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    outputs = prepare(args.save, args.librilight, args.subsets, args.librispeech, args.splits,
                      args.transcripts, not args.keep_untranscribed, args.min_seconds,
                      args.max_seconds, not args.no_alignments, args.prompt_seconds)
    for name, path in outputs.items():
        print(f"{name}\t{path}")


if __name__ == "__main__":
    main()
