"""Transcribe a manifest's audio with any registered transcriber: pseudo-labels for Libri-Light.

Usage::

    python tools/pseudo_label.py results/prep/small.csv results/prep/small_labels.tsv \\
        --transcriber NAME [--transcriber-arg key=value ...] [--batch-size 8]

Writes ``id<TAB>text`` lines. Rerunning the same command resumes: ids already
in the output are skipped, and each batch is appended and flushed as soon as
it is transcribed. Feed the result back to data preparation with
``prepare_librilight(..., transcripts="small_labels.tsv")``.
"""
import argparse
import ast
import logging
import os
import sys
import time
from pathlib import Path

try:
    from spectron_kit.data.manifest import load_segment, read_manifest, track
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from spectron_kit.data.manifest import load_segment, read_manifest, track

logger = logging.getLogger("pseudo_label")

SAMPLE_RATE = 16000


def read_done_ids(out_path):
    """Ids already transcribed in ``out_path``; repairs a last line cut off by a crash.

    Arguments
    ---------
    out_path : str or Path
        A pseudo-label TSV (may not exist yet).

    Returns
    -------
    set of str
        Ids that have a complete line.
    """
    out_path = Path(out_path)
    if not out_path.is_file():
        return set()
    data = out_path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        logger.warning("%s ends with an incomplete line (interrupted run): dropping it, "
                       "that utterance will be transcribed again", out_path)
        with open(out_path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    done = set()
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            done.add(line.split("\t", 1)[0])
    return done


def _clean(text):
    return " ".join(str(text).split())  # no tabs or newlines inside a TSV field


def pseudo_label(manifest, out_path, transcriber, batch_size=8, sample_rate=SAMPLE_RATE,
                 progress=True):
    """Transcribe every manifest row missing from ``out_path`` and append ``id<TAB>text`` lines.

    Arguments
    ---------
    manifest : str, Path or list of dict
        A manifest CSV or its rows.
    out_path : str or Path
        Pseudo-label TSV; created, or appended to when it exists (resume).
    transcriber : object
        Has ``transcribe(list of np.ndarray, sample_rate) -> list of str``.
    batch_size : int
        Utterances per ``transcribe`` call; each batch is flushed to disk.
    sample_rate : int
        Rate the audio is loaded at and passed to the transcriber.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``total`` rows, ``already_done``, ``transcribed``, ``failed`` (audio that
        could not be loaded, skipped), ``empty`` (blank transcriptions), ``seconds``.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if not callable(getattr(transcriber, "transcribe", None)):
        raise TypeError(f"transcriber {transcriber!r} has no transcribe(wavs, sample_rate) method")
    rows = read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else list(manifest)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_done_ids(out_path)
    todo = [r for r in rows if r["id"] not in done]
    summary = {"total": len(rows), "already_done": len(rows) - len(todo), "transcribed": 0,
               "failed": 0, "empty": 0, "seconds": 0.0}
    if summary["already_done"]:
        logger.info("%s: %d of %d utterances already transcribed, resuming",
                    out_path, summary["already_done"], len(rows))
    t0 = time.perf_counter()
    batches = [todo[i:i + int(batch_size)] for i in range(0, len(todo), int(batch_size))]
    with open(out_path, "a", encoding="utf-8") as out:
        for batch in track(batches, "transcribing", enabled=progress and bool(batches)):
            ids, wavs = [], []
            for row in batch:
                try:
                    wav = load_segment(row, target_sr=sample_rate)
                except Exception as err:  # missing/corrupt audio: skip with a count
                    summary["failed"] += 1
                    logger.warning("skipping %s: %s", row["id"], err)
                    continue
                ids.append(row["id"])
                wavs.append(wav.numpy())
                summary["seconds"] += len(wav) / sample_rate
            if not wavs:
                continue
            texts = list(transcriber.transcribe(wavs, sample_rate))
            if len(texts) != len(wavs):
                raise RuntimeError(f"transcriber {type(transcriber).__name__} returned {len(texts)} "
                                   f"texts for {len(wavs)} waveforms; it must return one per input")
            for utt_id, text in zip(ids, texts):
                text = _clean(text)
                summary["empty"] += not text
                out.write(f"{utt_id}\t{text}\n")
            out.flush()
            summary["transcribed"] += len(ids)
    elapsed = time.perf_counter() - t0
    logger.info("pseudo-labels -> %s: %d transcribed (%.1f min of audio) in %.0f s, %d already "
                "done, %d failed to load, %d empty transcriptions",
                out_path, summary["transcribed"], summary["seconds"] / 60, elapsed,
                summary["already_done"], summary["failed"], summary["empty"])
    return summary


def parse_kwargs(pairs):
    """Turn ``["key=value", ...]`` into a dict; values are Python literals or plain strings.

    Arguments
    ---------
    pairs : list of str
        ``key=value`` strings.

    Returns
    -------
    dict
        ``{"beam": 5, "model": "tiny"}`` for ``["beam=5", "model=tiny"]``.

    Example:
        >>> parse_kwargs(["beam=5", "model=tiny", "fp16=False"])
        {'beam': 5, 'model': 'tiny', 'fp16': False}
    """
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--transcriber-arg {pair!r} is not key=value (e.g. model=tiny)")
        try:
            kwargs[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = value
    return kwargs


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest", help="manifest CSV (from librilight_prepare.py)")
    parser.add_argument("out", help="output TSV of id<TAB>text lines (resumed when it exists)")
    parser.add_argument("--transcriber", required=True, help="registered transcriber name")
    parser.add_argument("--transcriber-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the transcriber (repeatable)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import spectron_kit
    from spectron_kit.errors import one_line

    try:
        transcriber = spectron_kit.build("transcriber", args.transcriber,
                                         **parse_kwargs(args.transcriber_arg))
    except (KeyError, TypeError, ValueError, ImportError, OSError) as err:  # unknown name, bad kwargs, missing
        # extra, a model source that does not load (offline)
        parser.exit(2, f"error: cannot build transcriber {args.transcriber!r}: {one_line(err)}\n")
    summary = pseudo_label(args.manifest, args.out, transcriber, batch_size=args.batch_size)
    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
