#!/usr/bin/env python3
"""Voice-activity files for your own audio, in the layout ``librilight_prepare.py`` reads.

    python tools/make_vad.py /data/my_books/small          # <speaker>/<book>/<name>.flac -> <name>.json
    python recipes/LibriLight/librilight_prepare.py --librilight /data/my_books --subsets small --save manifests/

Libri-Light ships a JSON per audio file whose ``voice_activity`` list of
``[start, end]`` seconds says where speech is; ``librilight_prepare.py`` cuts
utterances along it. Recordings of your own have no such file: this tool
writes one per audio file with WebRTC's voice-activity detector (the
``webrtcvad`` package: a fixed statistical model compiled into the wheel, so
it runs offline). Audio is resampled to 16 kHz mono and judged in 30 ms
frames; speech runs separated by less than ``--min-gap`` seconds are merged
and runs shorter than ``--min-speech`` seconds dropped. Existing JSON files are
kept unless ``--overwrite`` is given; unreadable audio is skipped and counted.
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path

FRAME_SECONDS = 0.03
RATE = 16000
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")


def speech_segments(wav, vad, min_gap=0.3, min_speech=0.2):
    """``[(start, end)]`` seconds of speech in a 16 kHz mono float waveform.

    Arguments:
        wav: 1-D numpy float array in [-1, 1] at 16 kHz.
        vad: a ``webrtcvad.Vad``.
        min_gap: pauses shorter than this are bridged.
        min_speech: runs shorter than this are dropped.
    """
    import numpy as np

    hop = int(RATE * FRAME_SECONDS)
    pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2")
    runs, start = [], None
    n_frames = len(pcm) // hop
    for i in range(n_frames):
        speech = vad.is_speech(pcm[i * hop:(i + 1) * hop].tobytes(), RATE)
        if speech and start is None:
            start = i
        elif not speech and start is not None:
            runs.append([start * FRAME_SECONDS, i * FRAME_SECONDS])
            start = None
    if start is not None:
        runs.append([start * FRAME_SECONDS, n_frames * FRAME_SECONDS])
    merged = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < min_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(round(a, 3), round(b, 3)) for a, b in merged if b - a >= min_speech]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a subset folder: <speaker>/<book>/<name>.flac under it")
    parser.add_argument("--aggressiveness", type=int, default=2, choices=(0, 1, 2, 3),
                        help="WebRTC VAD mode: 0 keeps the most, 3 the least (default 2)")
    parser.add_argument("--min-gap", type=float, default=0.3, help="bridge pauses shorter than this (s)")
    parser.add_argument("--min-speech", type=float, default=0.2, help="drop speech runs shorter than this (s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing JSON files")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        sys.exit(f"error: {folder} is not a folder; pass a subset folder holding <speaker>/<book>/<name>.flac")
    files = sorted(p for p in folder.glob("*/*/*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        print(f"error: no <speaker>/<book>/<name>.flac (or .wav) files under {folder}; arrange the audio so",
              file=sys.stderr)
        sys.exit(2)
    try:
        import webrtcvad
    except ImportError:
        print("error: the webrtcvad package is missing; pip install webrtcvad (or spectron-kit[eval])", file=sys.stderr)
        sys.exit(2)
    from spectron_kit.audio import load_audio
    from spectron_kit.progress import progress_bar

    vad = webrtcvad.Vad(args.aggressiveness)
    counts = Counter()
    with progress_bar() as progress:
        task = progress.add_task("voice activity", total=len(files))
        for audio in files:
            target = audio.with_suffix(".json")
            progress.update(task, advance=1)
            if target.exists() and not args.overwrite:
                counts["kept (JSON already there)"] += 1
                continue
            try:
                wav = load_audio(audio, RATE).numpy()
            except ValueError as err:
                print(f"skipped: {err}", file=sys.stderr)
                counts["skipped (unreadable audio)"] += 1
                continue
            segments = speech_segments(wav, vad, args.min_gap, args.min_speech)
            speaker, book = audio.parent.parent.name, audio.parent.name
            target.write_text(json.dumps({"speaker": speaker, "book_meta": {"id": book},
                                          "voice_activity": [list(s) for s in segments],
                                          "vad": f"webrtcvad mode {args.aggressiveness}"}))
            counts["written"] += 1
            counts["speech seconds"] += round(sum(b - a for a, b in segments))
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
