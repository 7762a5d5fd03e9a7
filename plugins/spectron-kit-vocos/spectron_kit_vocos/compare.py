"""Compare a trained vocoder with Griffin-Lim on held-out speech: mel distance, predicted MOS, ASR WER.

    python -m spectron_kit_vocos.compare --vocoder results/vocos/mini --test data/mini_corpus/test \\
        --n 40 --out results/vocos/compare_mini

For every utterance of a LibriSpeech-layout folder (transcripts in
``*.trans.txt``): the frames of the recording (spectron-kit's frontend with the
vocoder's FeatureSpec) are turned back into audio by Griffin-Lim (the
built-in, 32 iterations) and by the trained vocoder. Each version is scored
against the recording: the L1 distance between its frames and the original
frames (normalised log-mel; 0 for the recording itself), DNSMOS (OVRL) and the
WER of Whisper's transcript against the reference transcript; a silent floor
gives the other end of each scale. Writes ``results.md`` / ``results.json``
with 95% bootstrap intervals and a few wav samples.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from spectron_kit import build
from spectron_kit.audio import load_audio, save_audio
from spectron_kit.data.transcripts import read_trans_file as read_transcripts
from spectron_kit.evaluation import metrics as M
from spectron_kit.progress import track

from spectron_kit_vocos import VocosVocoder


def utterances(folder, n, max_seconds, rate):
    """``[(id, wav, transcript)]``: the first ``n`` utterances (sorted ids) of a LibriSpeech-layout folder."""
    rows = []
    for trans in sorted(Path(folder).rglob("*.trans.txt")):
        for uid, text in read_transcripts(trans).items():
            audio = next((trans.parent / f"{uid}{ext}" for ext in (".flac", ".wav")
                          if (trans.parent / f"{uid}{ext}").is_file()), None)
            if audio is not None:
                rows.append((uid, audio, text))
    if not rows:
        raise FileNotFoundError(f"no transcribed audio under {folder}; pass a LibriSpeech-layout folder with "
                                "*.trans.txt files")
    rows = sorted(rows)[:n]
    out = []
    for uid, audio, text in rows:
        wav = load_audio(str(audio), rate)
        if max_seconds is not None and len(wav) > max_seconds * rate:
            continue  # its transcript would not match a cut
        out.append((uid, wav, text))
    return out


def compare(vocoder_dir, test, n=40, out=None, max_seconds=10.0, n_resamples=1000, samples=3, progress=True):
    vocoder = VocosVocoder(source=vocoder_dir).eval()
    spec = vocoder.spec
    rate = spec.sample_rate
    frontend = build("frontend", "log_mel", spec=spec)
    systems = {"Griffin-Lim (built-in, 32 iterations)": build("vocoder", "griffin_lim", spec=spec),
               f"Vocos plugin ({vocoder_dir})": vocoder}
    transcriber = build("transcriber", "whisper")
    mos = build("mos_predictor", "dnsmos")
    items = utterances(test, n, max_seconds, rate)
    names = ["recording (ceiling)", *systems, "silence (floor)"]
    wavs = {name: [] for name in names}
    mel = {name: [] for name in names}
    for uid, wav, _ in track(items, description="resynthesis", enabled=progress):
        feats, lengths = frontend(wav[None])
        versions = {"recording (ceiling)": wav, "silence (floor)": torch.zeros_like(wav)}
        with torch.no_grad():
            for name, system in systems.items():
                versions[name] = system(feats, lengths)[0][0]
        for name in names:
            audio = versions[name][: len(wav)].float()
            again = frontend(audio[None])[0][0]
            t = min(len(again), feats.shape[1])
            mel[name].append(float((again[:t] - feats[0, :t]).abs().mean()))
            wavs[name].append(audio.numpy())
    refs = [text for _, _, text in items]
    results = {}
    for name in names:
        heard = transcriber.transcribe(wavs[name], rate)
        counts = [M.word_error_counts(r, h) for r, h in zip(refs, heard)]
        edits = np.array([c["edits"] for c in counts], dtype=float)
        words = np.array([c["n_ref"] for c in counts], dtype=float)
        scores = np.array(mos.predict(wavs[name], rate), dtype=float)
        results[name] = {
            "mel_l1": M.bootstrap_ci(np.array(mel[name]), n_resamples=n_resamples),
            "mos": M.bootstrap_ci(scores, n_resamples=n_resamples),
            "wer": M.bootstrap_ratio_ci(edits, words, n_resamples=n_resamples),
            "transcripts": heard[:samples]}
    report = {"vocoder": str(vocoder_dir), "test": str(test), "utterances": len(items), "results": results,
              "references": refs[:samples]}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(report, indent=1, default=float))
        fmt = lambda t, pct=False: (f"{100 * t[0]:.1f}% [{100 * t[1]:.1f}, {100 * t[2]:.1f}]" if pct  # noqa: E731
                                    else f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]")
        lines = [f"# Vocoder comparison: {len(items)} utterances of `{test}`", "",
                 "| audio | frame L1 to the recording (lower) | DNSMOS OVRL (higher) | Whisper WER (lower) |",
                 "| --- | ---: | ---: | ---: |"]
        for name in names:
            r = results[name]
            lines.append(f"| {name} | {fmt(r['mel_l1'])} | {fmt(r['mos'])} | {fmt(r['wer'], pct=True)} |")
        lines += ["", "95% bootstrap intervals over utterances. Frame L1: mean absolute difference of the "
                  "normalised log-mel frames of the audio and of the recording."]
        (out / "results.md").write_text("\n".join(lines) + "\n")
        (out / "samples").mkdir(exist_ok=True)
        for name in names[:-1]:
            tag = name.split(" ")[0].lower().replace("-", "_")
            for (uid, _, _), audio in list(zip(items, wavs[name]))[:samples]:
                save_audio(str(out / "samples" / f"{uid}_{tag}.wav"), audio, rate)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocoder", required=True, help="folder of a trained vocoder (spectron_kit_vocos.train)")
    parser.add_argument("--test", required=True, help="LibriSpeech-layout folder with transcripts (held out)")
    parser.add_argument("--n", type=int, default=40, help="utterances (first N by id)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="skip longer utterances")
    parser.add_argument("--out", required=True, help="where results.md, results.json and samples/ go")
    args = parser.parse_args(argv)
    try:
        compare(args.vocoder, args.test, args.n, args.out, args.max_seconds)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((Path(args.out) / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
