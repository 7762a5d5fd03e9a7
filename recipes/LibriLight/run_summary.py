"""After training: the held-out prompt-transcript WER, sample continuations, and the run's summary on the
console."""
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from spectron_kit.audio import to_samples
from spectron_kit.data.manifest import load_segment

console = Console()


def prompt_transcript_wer(model, rows, hparams, limit=None):
    """WER of the model's transcript of each prompt against the aligned prompt words.

    Returns ``(wer or None, examples, skipped)``: None when no row has aligned
    prompt words (nothing was measured), ``skipped`` the rows without them.
    """
    from spectron_kit.evaluation.metrics import word_errors

    rate = hparams["sample_rate"]
    prompt = to_samples(hparams["prompt_seconds"], rate)
    edits = words = 0
    examples = []
    skipped = sum(1 for r in rows if not r["prompt_text"])
    rows = [r for r in rows if r["prompt_text"]][:limit]
    for start in range(0, len(rows), 8):
        chunk = rows[start:start + 8]
        wavs = [load_segment(r, rate)[:prompt] for r in chunk]
        out = model.generate(torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True).to(model.device),
                             torch.tensor([len(w) for w in wavs]), num_frames=0, vocode=False)
        for row, text in zip(chunk, out.text):
            ref = row["prompt_text"].split()
            hyp = text.split()[: len(ref)]
            e, n = word_errors(" ".join(ref), " ".join(hyp))
            edits, words = edits + e, words + n
            examples.append({"id": row["id"], "prompt_words": " ".join(ref), "model_text": text,
                             "reference_text": row["text"]})
    return (edits / words if words else None), examples, skipped


def write_samples(model, rows, hparams):
    """Prompt / reference / teacher-forced / generated audio, spectrogram PNG and text for a few utterances.

    The reference is cut at ``max_continuation_seconds``, the length the model
    was trained to speak; the PNG draws every panel on one colour scale.
    """
    from spectron_kit.evaluation.samples import write_sample

    folder = Path(hparams["samples_folder"])
    rate = hparams["sample_rate"]
    prompt = to_samples(hparams["prompt_seconds"], rate)
    longest = to_samples(hparams["max_continuation_seconds"], rate)
    written = []
    for row in rows[: hparams["num_samples"]]:
        wav = load_segment(row, rate)
        prompt_wav, reference = wav[:prompt], wav[prompt: prompt + longest]
        ref_feats, _ = model.frontend(reference[None].to(model.device))
        torch.manual_seed(hparams["seed"])
        out = model.generate(prompt_wav.to(model.device), num_frames=ref_feats.shape[1])
        forced = model.teacher_forced_frames(prompt_wav[None], torch.tensor([len(prompt_wav)]), [row["text"]],
                                             reference[None], torch.tensor([len(reference)]),
                                             phone_times=[row.get("phone_times", "")])[0]
        prompt_feats, _ = model.frontend(prompt_wav[None].to(model.device))
        audio = {"prompt": prompt_wav, "reference": reference, "teacher_forced": model.vocode([forced])[0],
                 "generated": out.waveforms[0]}  # the frontend's rate is the vocoder's (checked when built)
        write_sample(folder, row["id"], audio, out.sample_rate,
                     [("prompt", prompt_feats[0]), ("reference continuation", ref_feats[0]),
                      ("teacher-forced (true text and previous frames)", forced),
                      ("generated continuation", out.frames[0])],
                     frame_rate=model.frame_rate, title=out.text[0][:110])
        (folder / f"{row['id']}_text.txt").write_text(f"reference: {row['text']}\nmodel:     {out.text[0]}\n")
        written.append({"id": row["id"], "reference": row["text"], "model_text": out.text[0]})
    return written


def held_out_prompt_wer(model, test_rows, hparams):
    """The summary's held-out prompt transcript WER: over all test splits (word-weighted) and per split; None
    (n/a) where no utterance has aligned prompt words."""
    measured = {name: prompt_transcript_wer(model, [r for r in test_rows if r["split"] == name], hparams)
                for name in hparams["test_splits"]}
    by_split = {name: (wer, ex) for name, (wer, ex, _) in measured.items()}
    words = {name: sum(len(e["prompt_words"].split()) for e in ex) for name, (_, ex) in by_split.items()}
    test_wer = (sum(wer * words[name] for name, (wer, _) in by_split.items() if wer is not None)
                / sum(words.values())) if sum(words.values()) else None
    examples = [e for _, ex in by_split.values() for e in ex]
    return {"test_prompt_transcript_wer": test_wer, "test_examples": examples[:10], "test_utterances": len(examples),
            "test_utterances_without_prompt_alignment": sum(skipped for _, _, skipped in measured.values()),
            "test_prompt_transcript_wer_by_split": ({name: wer for name, (wer, _) in by_split.items()}
                                                    if len(by_split) > 1 else {}),
            "test_utterances_by_split": {name: len(ex) for name, (_, ex) in by_split.items()}}


def print_summary(summary, terms, hparams):
    """The end of a run on the console: the valid loss table, the held-out prompt WER, where things are."""
    final, step0 = summary["valid_final"], summary["valid_step0"]
    table = Table(title="valid loss terms")
    for column in ("term", "step 0", "final", "step 0 / final"):
        table.add_column(column)
    for term in terms:
        if term in final:
            before = step0.get(term)
            table.add_row(term, f"{before:.3f}" if before is not None else "-", f"{final[term]:.3f}",
                          f"{before / final[term]:.1f}x" if before and final[term] else "-")
    console.print(table)

    def percent(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    unaligned, counts = summary["test_utterances_without_prompt_alignment"], summary["test_utterances_by_split"]
    console.print(f"held-out prompt transcript WER: {percent(summary['test_prompt_transcript_wer'])} "
                  f"({summary['test_utterances']} test utterances"
                  + "".join(f"; {name} {percent(wer)} ({counts[name]})"
                            for name, wer in summary["test_prompt_transcript_wer_by_split"].items())
                  + (f"; {unaligned} without word alignments of the prompt, not scored" if unaligned else "") + ")")
    for example in summary["test_examples"][:3]:
        console.print(f"  prompt words: {example['prompt_words']}\n  model text:   {example['model_text']}")
    console.print(f"bundle: {hparams['bundle_folder']}  samples: {hparams['samples_folder']}  "
                  f"({summary['seconds'] / 60:.1f} min in all)")
