#!/usr/bin/env python3
"""A lever's quick check: is the speech of a bundle intelligible, given the true text?

    python tools/lever_check.py results/levers/my_run/bundle                       # 24 test_seen utterances
    python tools/lever_check.py BUNDLE --num-utterances 48 --true-phonemes         # + phonemes forced
    python tools/lever_check.py BUNDLE --no-whisper                                # frame recogniser only, seconds

For each of the first N utterances of a manifest, the bundle makes the
continuation's frames three ways: the true frames (vocoded: the ceiling),
teacher-forced (given the true previous frames, and the true phoneme timings
when the bundle interleaves phonemes) and free-running with the **true text
forced** (the model writes its own phonemes and durations, when it has them,
and its own frames). Forcing the text makes the free-running WER measure the
speech alone, against the true words; ``evaluate.py``'s (d) measures it
against the model's own text. ``--true-phonemes`` adds a fourth condition: the
true phoneme sequence forced as well (only durations and frames are the
model's). Every condition is scored by Whisper (on Griffin-Lim audio) and by
the mini recipe's CTC recogniser applied to the frames directly; with phonemes
it also prints the phoneme error rate of the free-running phonemes.

This is the yardstick of the lever table in ``docs/experiments/librilight.md``;
``evaluate.py`` stays the judge of the targets.
"""
import argparse
import json
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="an inference bundle (a run's bundle/ or snapshots/<m>min/)")
    parser.add_argument("--manifest", default="data/mini_corpus/manifests/test_seen.csv",
                        help="manifest with text, word_times (and phone_times for phoneme bundles)")
    parser.add_argument("--ctc", default="data/mini_corpus/pretrained/1234/ctc",
                        help="the in-domain CTC recogniser applied to frames")
    parser.add_argument("--num-utterances", type=int, default=24)
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--true-phonemes", action="store_true", help="also generate with the true phonemes forced")
    parser.add_argument("--no-whisper", action="store_true", help="only the frame recogniser (seconds, no vocoder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path, what in ((args.bundle, "bundle"), (args.manifest, "manifest"), (args.ctc, "CTC recogniser")):
        if not Path(path).exists():
            sys.exit(f"error: {what} {path} does not exist; run the mini recipe first "
                     "(python recipes/LibriLight/train.py recipes/LibriLight/hparams/spectron_mini.yaml)")
    import torch
    from rich.console import Console
    from rich.table import Table
    from speechbrain.utils.edit_distance import wer_details_for_batch

    from spectron_kit import build
    from spectron_kit.audio import to_samples
    from spectron_kit.ctc import CTCSpeechRecognizer
    from spectron_kit.data.manifest import load_segment, parse_phone_times, read_manifest
    from spectron_kit.evaluation.continuation import continuation_words
    from spectron_kit.evaluation.metrics import normalize_text, word_errors
    from spectron_kit.model import SpectronModel
    from spectron_kit.phonemes import continuation_events
    from spectron_kit.progress import progress_bar

    model = SpectronModel.from_pretrained(args.bundle).eval()
    ctc = CTCSpeechRecognizer.from_pretrained(args.ctc)
    whisper = None if args.no_whisper else build("transcriber", "whisper")
    rows = read_manifest(args.manifest)[: args.num_utterances]
    phonemes = getattr(model, "phone_vocab", None) is not None and getattr(model, "interleave_phonemes", False)
    if args.true_phonemes and not phonemes:
        sys.exit(f"error: --true-phonemes: {args.bundle} does not interleave phonemes; drop the flag")
    if phonemes and any(not row.get("phone_times") for row in rows):
        sys.exit(f"error: {args.manifest} has rows without phone_times; regenerate the mini corpus manifests")
    conditions = ["vocoded", "teacher_forced", "free_true_text"] + (["free_true_phonemes"] if args.true_phonemes else [])
    rate = model.frontend.spec.sample_rate
    prompt_len = to_samples(args.prompt_seconds, rate)
    max_len = int(model.max_seconds * rate)
    errors = {name: {"ctc": [0, 0], "whisper": [0, 0]} for name in conditions}
    phone_errors = [0, 0]
    with torch.no_grad(), progress_bar() as progress:
        task = progress.add_task("utterances", total=len(rows))
        for row in rows:
            wav = load_segment(row, rate)
            prompt, cont = wav[:prompt_len], wav[prompt_len: prompt_len + max_len]
            true_frames = model.frontend(cont[None])[0][0]
            n_frames = len(true_frames)
            words = " ".join(continuation_words(row, args.prompt_seconds, args.prompt_seconds + len(cont) / rate)[0])
            text_ids = model.lm.encode(row["text"])
            outputs = {"vocoded": true_frames}
            torch.manual_seed(args.seed)
            outputs["teacher_forced"] = model.teacher_forced_frames(
                prompt[None], torch.tensor([len(prompt)]), [row["text"]], cont[None], torch.tensor([len(cont)]),
                phone_times=[row["phone_times"]] if phonemes else None)[0]
            torch.manual_seed(args.seed)
            free = model.generate(prompt, num_frames=n_frames, forced_text=[text_ids], vocode=False)
            outputs["free_true_text"] = free.frames[0]
            if phonemes:
                ids, _, _ = continuation_events(parse_phone_times(row["phone_times"]), model.phone_vocab,
                                                model.frontend.spec, model.r, args.prompt_seconds, len(cont))
                true_names = model.phone_vocab.names(ids)
                detail = wer_details_for_batch(["u"], [true_names], [list(free.phonemes[0][: len(true_names)])])[0]
                phone_errors[0] += detail["num_edits"]
                phone_errors[1] += len(true_names)
                if args.true_phonemes:
                    torch.manual_seed(args.seed)
                    outputs["free_true_phonemes"] = model.generate(prompt, num_frames=n_frames, forced_text=[text_ids],
                                                                   forced_phonemes=[ids], vocode=False).frames[0]
            for name, frames in outputs.items():
                e, n = word_errors(words, ctc.transcribe_features([frames])[0])
                errors[name]["ctc"][0] += e
                errors[name]["ctc"][1] += n
                if whisper is not None:
                    heard = normalize_text(whisper.transcribe([model.vocode([frames])[0].numpy()], rate)[0])
                    e, n = word_errors(words, heard)
                    errors[name]["whisper"][0] += e
                    errors[name]["whisper"][1] += n
            progress.update(task, advance=1)

    def rate_of(pair):
        return round(100.0 * pair[0] / pair[1], 1) if pair[1] else None

    result = {"bundle": str(args.bundle), "manifest": str(args.manifest), "utterances": len(rows),
              "wer": {name: {judge: rate_of(pair) for judge, pair in judges.items()} for name, judges in errors.items()},
              "phoneme_error_rate_free": rate_of(phone_errors) if phonemes else None}
    table = Table(title=f"{args.bundle}: {len(rows)} utterances of {Path(args.manifest).stem}, true text forced")
    table.add_column("condition")
    table.add_column("Whisper WER", justify="right")
    table.add_column("frame-CTC WER", justify="right")
    for name in conditions:
        whisper_wer = result["wer"][name]["whisper"]
        table.add_row(name, "-" if args.no_whisper else f"{whisper_wer}%", f"{result['wer'][name]['ctc']}%")
    console = Console()
    console.print(table)
    if phonemes:
        console.print(f"phoneme error rate of the free-running phonemes: {result['phoneme_error_rate_free']}%")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
