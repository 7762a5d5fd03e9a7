#!/usr/bin/env python3
"""The overfit check: can the decoder learn to speak N training utterances of one voice?

    python tools/overfit.py                                  # 16 utterances of voice 101, 12 minutes
    python tools/overfit.py --utterances 8 --minutes 5 -- --interleave_phonemes=False
    python tools/overfit.py --debug                          # a smoke test in seconds (tiny corpus and models)

A model that cannot say a few sentences it is trained on, full batch, will
not say unseen ones: this separates "the pathway cannot speak" from "the
model has not learnt the general mapping yet". Steps (each reuses what
exists, so a rerun resumes):

1. the mini setup's corpus and pre-trained parts, and the CTC recogniser of the frames
   (``recipes/LibriLight/pretrain.py`` on ``spectron_mini_ctc.yaml``);
2. a LibriSpeech-layout folder (``<out>/data/overfit``) linking the first N
   training utterances of the voice, with their transcripts and word/phoneme timings;
3. ``train.py`` on exactly those utterances, full batch, for ``--minutes``
   (the same utterances are its valid set), with any recipe overrides given
   after ``--``;
4. ``evaluate.py`` on the same utterances: reference audio, vocoded
   reference, teacher-forced and generated speech (Whisper WER, the in-domain
   CTC recogniser on the frames, speaker similarity);
5. a table (printed, and ``<out>/overfit.md`` / ``overfit.json``) with the
   teacher-forced spectrogram loss beside the "repeat the previous true
   frame" predictor's on the same frames, in the same units.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "LibriLight"
MINI_YAML = RECIPE / "hparams" / "spectron_mini.yaml"
CTC_YAML = RECIPE / "hparams" / "spectron_mini_ctc.yaml"
EVAL_YAML = RECIPE / "hparams" / "evaluate.yaml"
sys.path.insert(0, str(RECIPE))


def run(command, log):
    """Run one step (its output to the console and ``log``); a failure stops the tool with its exit code."""
    print("+ " + " ".join(str(c) for c in command), flush=True)
    with open(log, "a", encoding="utf-8") as out:
        process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, cwd=ROOT)
        for line in process.stdout:
            out.write(line)
            if line.startswith(("error:", "epoch ", "held-out", "model:")):
                print("  " + line.rstrip(), flush=True)
        code = process.wait()
    if code:
        sys.exit(f"error: step failed with exit code {code} (its output: {log})")


def debug_overrides():
    """The recipe's ``--debug`` sizes (tiny corpus and models in their own folders) as command-line overrides."""
    import train as recipe_train

    def text(value):
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
        return str(value)

    return [f"--{key}={text(value)}" for key, value in recipe_train.DEBUG_OVERRIDES.items()
            if key not in ("output_folder", "batch_size", "number_of_epochs", "max_valid_utterances")]


def merged(*override_lists):
    """Command-line overrides with one value per key: the last list's value wins (the data of the check)."""
    values = {}
    for overrides in override_lists:
        for item in overrides:
            values[item.split("=", 1)[0]] = item
    return list(values.values())


def mini_settings(overrides):
    """The mini recipe's resolved settings (folders, seed), as train.py would load them."""
    import train as recipe_train

    _, _, _, hparams, _ = recipe_train.load_run([str(MINI_YAML), *overrides])
    return hparams


def link_utterances(hparams, speaker, count, folder):
    """A LibriSpeech-layout split of the first ``count`` training utterances of ``speaker`` (symlinks)."""
    from spectron_kit.data.manifest import read_manifest

    rows = [r for name in hparams["train_splits"]
            for r in read_manifest(Path(hparams["manifest_folder"]) / f"{name}.csv") if str(r["speaker"]) == speaker]
    if len(rows) < count:
        sys.exit(f"error: --speaker {speaker} has {len(rows)} training utterances; ask for at most that many "
                 f"(--utterances) or pick another voice (the training speakers are 101-112)")
    rows = sorted(rows, key=lambda r: r["id"])[:count]
    if folder.exists():
        shutil.rmtree(folder)
    chosen = {}
    for row in rows:
        chosen.setdefault(Path(row["path"]).parent, []).append(row["id"])
    for source, ids in chosen.items():
        target = folder / source.parent.name / source.name
        target.mkdir(parents=True)
        for utt in ids:
            os.symlink(source / f"{utt}.flac", target / f"{utt}.flac")
        for pattern in ("*.trans.txt", "*.words.json", "*.phones.json"):
            for table in source.glob(pattern):
                if table.name.endswith(".txt"):
                    lines = [line for line in table.read_text().splitlines() if line.split(" ", 1)[0] in ids]
                    (target / table.name).write_text("\n".join(lines) + "\n")
                else:
                    data = json.loads(table.read_text())
                    (target / table.name).write_text(json.dumps({k: v for k, v in data.items() if k in ids}))
    return [r["id"] for r in rows]


def repeat_previous_loss(bundle, folder, prompt_seconds, max_seconds):
    """L_s of "repeat the previous true frame" on the utterances' continuations, in the bundle's decoder units."""
    import torch

    from spectron_kit.audio import load_audio, to_samples
    from spectron_kit.losses import spectrogram_loss
    from spectron_kit.model import SpectronModel

    model = SpectronModel.from_pretrained(bundle)
    rate = model.frontend.spec.sample_rate
    preds, targets, lengths = [], [], []
    for path in sorted(folder.rglob("*.flac")):
        wav = torch.as_tensor(load_audio(path, rate))
        cont = wav[to_samples(prompt_seconds, rate):][: to_samples(max_seconds, rate)]
        frames = model.to_decoder_units(model.frontend(cont[None])[0][0].float())
        targets.append(frames[1:])
        preds.append(frames[:-1])
        lengths.append(len(frames) - 1)
    pad = torch.nn.utils.rnn.pad_sequence
    loss = spectrogram_loss(pad(preds, batch_first=True), pad(targets, batch_first=True), torch.tensor(lengths))
    return float(loss)


def table(summary):
    """Markdown lines of the overfit check's numbers."""
    speech = summary["speech"]

    def cell(cond, key, percent=False):
        entry = speech.get(cond, {}).get(key)
        if entry is None:
            return "-"
        return f"{100 * entry['value']:.1f}%" if percent else f"{entry['value']:.3f}"

    lines = [f"# Overfit check: {summary['utterances']} utterances of voice {summary['speaker']}, "
             f"{summary['training_minutes']:.1f} training minutes ({summary['steps']} steps)", "",
             f"Teacher-forced L_s on these utterances: **{summary['train_spec']:.3f}**; the "
             f"\"repeat the previous true frame\" predictor: {summary['repeat_spec']:.3f} (same frames, same units)."
             f" Overrides: `{' '.join(summary['overrides']) or '(none)'}`.", "",
             "| audio | Whisper WER | in-domain CTC WER (frames) | speaker similarity |",
             "| --- | ---: | ---: | ---: |"]
    for cond, label in (("reference", "(a) reference"), ("vocoded", "(b) vocoded reference"),
                        ("teacher_forced", "(c) teacher-forced"), ("generated", "(d) generated (vs its own text)"),
                        ("flat", "floor: mean frame"), ("other_speaker", "floor: another speaker")):
        lines.append(f"| {label} | {cell(cond, 'wer', True)} | {cell(cond, 'frame_wer', True)} | "
                     f"{cell(cond, 'speaker_sim')} |")
    return lines + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Recipe overrides for train.py go after --, e.g. -- --lr=0.002")
    parser.add_argument("--utterances", type=int, default=16, help="training utterances of the voice (default 16)")
    parser.add_argument("--speaker", default="101", help="the voice (a training speaker id, default 101)")
    parser.add_argument("--minutes", type=float, default=12.0, help="training minutes (default 12)")
    parser.add_argument("--out", default=None, help="output folder (default results/overfit/<speaker>x<utterances>)")
    parser.add_argument("--debug", action="store_true", help="tiny corpus and models (the recipe's --debug sizes)")
    parser.add_argument("--no-whisper", action="store_true", help="score frames only (in-domain CTC): seconds")
    args, overrides = parser.parse_known_args(argv)
    overrides = [o for o in overrides if o != "--"]
    if args.utterances < 1 or args.minutes <= 0:
        sys.exit("error: --utterances must be >= 1 and --minutes > 0")
    out = Path(args.out or f"results/overfit{'_debug' if args.debug else ''}/{args.speaker}x{args.utterances}")
    out.mkdir(parents=True, exist_ok=True)
    log = out / "overfit.log"
    python = sys.executable

    if args.debug:  # the user's overrides still win
        overrides = merged(debug_overrides(), overrides)
    # 1. the corpus and the pre-trained parts; spectron_mini_ctc.yaml also pre-trains the CTC recogniser that is
    # this check's in-domain yardstick (frame_ctc_wer; the mini setup itself hears with Whisper tiny.en)
    run([python, RECIPE / "pretrain.py", CTC_YAML, *overrides], log)
    hparams = mini_settings(overrides)
    # 2. the utterances
    data = (out / "data").resolve()
    ids = link_utterances(hparams, str(args.speaker), args.utterances, data / "overfit")
    # 3. training on them, full batch; an epoch repeats them so that validation and checkpoints are not every step
    repeats = 25
    run_dir = out / "run"
    fixed = ["--mini_corpus=False", f"--data_folder={data}", f"--librispeech_folder={data}",
             f"--manifest_folder={data}/manifests", "--train_splits=[overfit]", "--valid_splits=[overfit]",
             "--test_splits=[overfit]", f"--max_valid_utterances={args.utterances}",
             f"--batch_size={args.utterances}", f"--train_repeats={repeats}", "--number_of_epochs=1000",
             f"--max_training_minutes={args.minutes}",
             f"--pretrained_folder={Path(hparams['pretrained_folder']).resolve()}", f"--output_folder={run_dir}",
             f"--warmup_steps={min(100, 10 * repeats)}", "--num_samples=2"]
    run([python, RECIPE / "train.py", MINI_YAML, *merged(overrides, fixed)], log)
    summary = json.loads((run_dir / "summary.json").read_text())
    # 4. evaluation of the same utterances
    ctc = Path(hparams["pretrained_folder"]) / "ctc"
    evaluate = [python, RECIPE / "evaluate.py", EVAL_YAML, f"--model_dir={run_dir / 'bundle'}",
                f"--test_folder={data / 'overfit'}", f"--lm_scorer_source={hparams['lm_source']}",
                f"--frame_ctc_source={ctc}", f"--output_folder={out / 'eval'}", f"--num_samples={args.utterances}"]
    if args.no_whisper:
        evaluate.append("--scorers=[frame_distance]")
    run(evaluate, log)
    result = json.loads((out / "eval" / "results.json").read_text())
    # 5. the yardstick and the table
    record = {"speaker": str(args.speaker), "utterances": len(ids), "ids": ids, "overrides": overrides,
              "training_minutes": summary["training_minutes"],
              "steps": summary.get("optimizer_steps") or math.ceil(summary["training_minutes"]),
              "train_spec": summary["valid_final"]["spec"],
              "repeat_spec": repeat_previous_loss(run_dir / "bundle", data / "overfit", hparams["prompt_seconds"],
                                                  hparams["max_continuation_seconds"]),
              "speech": result["speech"]}
    (out / "overfit.json").write_text(json.dumps(record, indent=2))
    lines = table(record)
    (out / "overfit.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return record


if __name__ == "__main__":
    main()
