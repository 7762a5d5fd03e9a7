#!/usr/bin/env python3
"""Does a bundle hear real people? Its prompt transcripts on real and synthetic voices, beside Whisper tiny.en.

    python tools/hearing.py --model results/spectron_mini/1234/bundle --output results/hearing/main_job \\
        --fsdd ../shared/data/fsdd --librispeech ../shared/data/librispeech_samples \\
        --mini-corpus data/mini_corpus

Prompt sets (each one that is given; a folder that is absent is skipped with a message):

- ``fsdd``: real people counting: the Free Spoken Digit Dataset's six speakers' digits joined into counts
  up and down of about 3 s (``spectron_kit.data.counting``; written under ``<output>/fsdd_prompts``).
  Transcript WER, and how often the text continuation goes on with the next numbers.
- ``librispeech``: real read speech: the first 3 s of LibriSpeech test-other utterances (four per
  speaker). The reference is the first words of the transcript in proportion to 3 s of the duration (no
  word alignments): its words are outside the mini LM's text, so the character error rate is the number
  to read.
- ``test_seen`` / ``test``: the mini corpus's espeak-ng voices (held-out sentences in the training voices;
  unseen voices), 120 utterances drawn with seed 1234 as ``evaluate.py`` draws them: the in-domain number.

Every row is reported beside Whisper tiny.en's transcript of the same audio (the hearing ceiling: a real
pre-trained ASR model) and the prior floor (the bundle's first words for a prompt of faint noise: what
its LM writes without hearing). Writes ``results.json``, ``results.md`` and ``per_prompt.csv``.
"""
import argparse
import csv
import datetime
import json
import shlex
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
console = Console()


def fsdd_prompts(folder, out_dir, rate, prompt_seconds):
    from spectron_kit.audio import load_audio
    from spectron_kit.data.counting import write_counting_prompts
    from spectron_kit.evaluation.hearing import Prompt

    rows = write_counting_prompts(folder, out_dir, max_seconds=prompt_seconds, sample_rate=rate)
    return [Prompt(r["id"], load_audio(r["path"], rate), r["text"], r["speaker"], r["next_words"]) for r in rows]


def librispeech_prompts(folder, rate, prompt_seconds, per_speaker=4):
    from spectron_kit.audio import load_audio, to_samples
    from spectron_kit.evaluation.continuation import reference_prompt_words
    from spectron_kit.evaluation.hearing import Prompt

    split = Path(folder) / "test-other"
    table = split / "transcripts.txt"
    if not table.is_file():
        raise FileNotFoundError(f"{split} has no transcripts.txt; pass the folder holding test-other/")
    texts = dict(line.split(" ", 1) for line in table.read_text().splitlines() if line.strip())
    prompts, taken = [], {}
    for utt in sorted(texts):
        speaker = utt.split("-")[0]
        path = next(split.glob(f"{speaker}/{utt}.flac"), None)
        if path is None or taken.get(speaker, 0) >= per_speaker:
            continue
        wav = load_audio(path, rate)
        duration = len(wav) / rate
        if duration < prompt_seconds + 0.5:  # the evaluation's rule: a prompt and a continuation
            continue
        words, _ = reference_prompt_words({"text": texts[utt], "duration": duration}, prompt_seconds)
        prompts.append(Prompt(utt, wav[: to_samples(prompt_seconds, rate)], " ".join(words), speaker))
        taken[speaker] = taken.get(speaker, 0) + 1
    return prompts


def mini_prompts(corpus, split, rate, prompt_seconds, num, seed):
    from spectron_kit.audio import to_samples
    from spectron_kit.data.manifest import load_segment, read_manifest
    from spectron_kit.evaluation.continuation import reference_prompt_words, select_rows
    from spectron_kit.evaluation.hearing import Prompt

    manifest = Path(corpus) / "manifests" / f"{split}.csv"
    rows, _ = select_rows(read_manifest(manifest), prompt_seconds, num, seed)
    prompts = []
    for row in rows:
        words, _ = reference_prompt_words(row, prompt_seconds)
        wav = load_segment(row, rate)[: to_samples(prompt_seconds, rate)]
        prompts.append(Prompt(row["id"], wav, " ".join(words), str(row.get("speaker", ""))))
    return prompts


def _machine(info):
    return f"{info.get('cpu_count')} CPU cores ({info.get('processor')}), {info.get('accelerator', '')}"


def percent(entry):
    if not entry:
        return "-"
    return f"{100 * entry['value']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]"


def summary_rows(results):
    """(set, prompts, model WER, Whisper WER, model/Whisper, prior floor WER, model CER, Whisper CER, floor CER,
    counts on)."""
    out = []
    for name, result in results.items():
        s = result["summary"]
        model, ceiling, floor = s["model"], s.get("transcriber"), s["prior_floor"]
        ratio = (f"{model['wer']['value'] / ceiling['wer']['value']:.2f}x"
                 if ceiling and ceiling["wer"] and ceiling["wer"]["value"] > 0 else "-")
        count = model.get("counts_on")
        counted = (f"{100 * count['value']:.0f}% of {count['n']} ({count['heard_right']} heard right"
                   + (f", {100 * count['given_heard_right']:.0f}% of them)" if count["given_heard_right"] is not None
                      else ")")) if count else "-"
        out.append([name, str(model["n"]), percent(model["wer"]), percent(ceiling["wer"]) if ceiling else "-", ratio,
                    percent(floor["wer"]), percent(model["cer"]), percent(ceiling["cer"]) if ceiling else "-",
                    percent(floor["cer"]), counted])
    return out


HEADER = ["prompts", "n", "model WER", "Whisper tiny.en WER (ceiling)", "model / Whisper", "prior floor WER",
          "model CER", "Whisper CER", "prior floor CER", "counts on"]


def read_report(out):
    """``(results, meta)`` of an earlier run in ``out`` (its results.json and per_prompt.csv), to write its
    results.md again (``--report-only``) without running the model."""
    saved = json.loads((out / "results.json").read_text())
    results = {name: {"summary": entry["summary"], "prior_text": entry["prior_text"], "rows": []}
               for name, entry in saved["sets"].items()}
    with open(out / "per_prompt.csv", newline="") as f:
        for row in csv.DictReader(f):
            record = {"id": row["id"], "speaker": row["speaker"], "reference": row["reference"],
                      "model_text": row["model_text"], "model_transcript": row["model_transcript"]}
            if row["transcriber_text"] or row["transcriber_wer"]:
                record["transcriber_text"] = row["transcriber_text"]
            results[row["set"]]["rows"].append(record)
    return results, saved["meta"]


def write_report(out, results, meta, data=True):
    """results.md, and with ``data`` results.json and per_prompt.csv."""
    out.mkdir(parents=True, exist_ok=True)
    if data:
        write_data(out, results, meta)
    write_markdown(out, results, meta)


def write_data(out, results, meta):
    (out / "results.json").write_text(json.dumps({"meta": meta, "sets": {
        name: {"summary": r["summary"], "prior_text": r["prior_text"]} for name, r in results.items()}}, indent=2))
    with open(out / "per_prompt.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "id", "speaker", "reference", "model_transcript", "model_text", "model_wer",
                         "transcriber_text", "transcriber_wer", "next_words", "counts_on"])
        for name, result in results.items():
            for r in result["rows"]:
                edits = lambda key: (f"{r[key][0] / r[key][1]:.3f}" if key in r and r[key][1] else "")  # noqa: E731
                writer.writerow([name, r["id"], r["speaker"], r["reference"], r["model_transcript"], r["model_text"],
                                 edits("model"), r.get("transcriber_text", ""), edits("transcriber"),
                                 r.get("next_words", ""), r.get("counts_on", "")])


def write_markdown(out, results, meta):
    lines = [f"# Hearing: {meta['model']}", "",
             f"{meta['date']}, {meta['hardware']}; `{meta['command']}`", "",
             "Transcript of each 3 s prompt by the evaluation's rule (the model's first words, as many as the "
             "reference has); 95% bootstrap intervals over prompts. Ceiling: Whisper tiny.en's transcript of the "
             "same audio. Floor: the model's first words for faint noise, against every reference.", "",
             "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    for name, result in results.items():
        lines += ["", f"## {name}: examples", "", f"prior floor (faint noise): \"{result['prior_text']}\"", ""]
        for r in result["rows"][:4]:
            lines.append(f"- `{r['id']}` said \"{r['reference']}\"; model: \"{r['model_text']}\""
                         + (f"; Whisper: \"{r['transcriber_text']}\"" if "transcriber_text" in r else ""))
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", required=True, help="bundle folder")
    parser.add_argument("--output", required=True, help="folder for results.json, results.md, per_prompt.csv")
    parser.add_argument("--fsdd", default=str(SHARED / "fsdd"), help="Free Spoken Digit Dataset folder")
    parser.add_argument("--librispeech", default=str(SHARED / "librispeech_samples"),
                        help="folder holding LibriSpeech test-other/ with transcripts.txt")
    parser.add_argument("--mini-corpus", default=str(REPO / "data" / "mini_corpus"), help="mini corpus folder")
    parser.add_argument("--splits", nargs="*", default=["test_seen", "test"], help="mini corpus splits")
    parser.add_argument("--num-utterances", type=int, default=120, help="mini corpus utterances per split")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--no-transcriber", action="store_true", help="leave out the Whisper tiny.en ceiling")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--report-only", action="store_true",
                        help="write results.md again from the results.json and per_prompt.csv in --output")
    args = parser.parse_args(argv)
    if args.report_only:
        results, meta = read_report(Path(args.output))
        write_report(Path(args.output), results, meta, data=False)
        console.print(f"written: {args.output}/results.md")
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    from spectron_kit.evaluation.hearing import measure_hearing
    from spectron_kit.evaluation.report import hardware_info
    from spectron_kit.model import SpectronModel
    from spectron_kit.registry import build

    from spectron_kit.recipe import RecipeConfigError, lock_run_folder
    out = Path(args.output)
    try:  # one measurement per folder: two would mix their per_prompt.csv and results.json
        lock_run_folder(out, key="output", what="hearing measurement")
    except RecipeConfigError as err:
        sys.exit(f"error: {err}")
    model = SpectronModel.from_pretrained(args.model).eval()
    rate, seconds = int(model.frontend.spec.sample_rate), float(model.prompt_seconds)
    sets = {}
    if Path(args.fsdd).is_dir():
        sets["fsdd"] = lambda: fsdd_prompts(args.fsdd, out / "fsdd_prompts", rate, seconds)
    else:
        console.print(f"no FSDD folder at {args.fsdd}: the real counting prompts are skipped")
    if Path(args.librispeech).is_dir():
        sets["librispeech"] = lambda: librispeech_prompts(args.librispeech, rate, seconds)
    else:
        console.print(f"no LibriSpeech folder at {args.librispeech}: the real read-speech prompts are skipped")
    for split in args.splits:
        if (Path(args.mini_corpus) / "manifests" / f"{split}.csv").is_file():
            sets[split] = (lambda s=split: mini_prompts(args.mini_corpus, s, rate, seconds, args.num_utterances,
                                                        args.seed))
        else:
            console.print(f"no {split}.csv under {args.mini_corpus}/manifests: that split is skipped")
    if not sets:
        sys.exit("no prompt set found: pass --fsdd, --librispeech or --mini-corpus with an existing folder")
    transcriber = None if args.no_transcriber else build("transcriber", "whisper")
    results = {}
    for name, make in sets.items():
        prompts = make()
        console.print(f"[bold]{name}[/]: {len(prompts)} prompts")
        results[name] = measure_hearing(model, prompts, transcriber, seed=args.seed,
                                        progress=lambda stage, n=name: console.print(f"  {n}: {stage}"))
    meta = {"model": args.model, "date": datetime.date.today().isoformat(),
            "hardware": _machine(hardware_info()), "command": shlex.join(["python", "tools/hearing.py",
                                                                                   *sys.argv[1:]])}
    write_report(out, results, meta)
    table = Table(title=f"hearing: {args.model}")
    for column in HEADER:
        table.add_column(column)
    for row in summary_rows(results):
        table.add_row(*row)
    console.print(table)
    console.print(f"written: {out}/results.md, results.json, per_prompt.csv")


if __name__ == "__main__":
    main()
