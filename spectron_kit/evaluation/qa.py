"""Zero-shot spoken question answering (SPECTRON.md section 5): hear a question, write and speak an answer.

The model hears the question audio as its prompt and writes, in one pass, the
question's transcript, its answer text and the answer's spectrogram. The
first words of its text (as many as the gold question has) are its
transcript, the rest its answer text. An answer is correct when a gold
answer occurs in it (:func:`spectron_kit.evaluation.metrics.answer_is_correct`:
case, punctuation, articles and number words normalised, "Four" == "4"),
scored on the text answer and on the ASR transcript of the spoken answer.
"""
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from spectron_kit.evaluation import metrics as M

#: the paper's Table 2 (accuracy, %), SPECTRON.md section 5
PAPER_QA = {
    "llama_questions": {"Spectron (1B)": 22.9, "SpeechGPT (7B)": 21.6, "AudioLM": 7.0, "GSLM": 4.0,
                        "TWIST (7B)": 0.5},
    "web_questions": {"Spectron (1B)": 6.1, "SpeechGPT (7B)": 6.5, "AudioLM": 2.3, "GSLM": 1.5,
                      "TWIST (7B)": 1.1},
}


@torch.no_grad()
def evaluate_qa(model, rows, transcriber, answer_seconds=3.0, batch_size=4, do_sample=False, seed=1234,
                n_resamples=1000, out_dir=None, num_samples=10, progress=True, speak=True):
    """Answer every question of a QA manifest and score text and spoken answers.

    Arguments:
        model: a SpectronModel (with a vocoder, for the spoken answers).
        rows: QA manifest rows (``id, path, question, answers``).
        transcriber: a ``transcriber`` component for the spoken answers.
        answer_seconds: length of the spoken answer.
        batch_size: questions per ``generate`` call.
        do_sample: sample the text instead of greedy decoding.
        seed: torch seed (sampling) and bootstrap seed.
        n_resamples: bootstrap resamples of the 95% intervals.
        out_dir: where ``answers/<id>.wav`` of the first ``num_samples`` questions go (None: nowhere).
        num_samples: how many spoken answers to keep.
        speak: False scores the text answers only (no frames, vocoder or ASR: the
            speech accuracy is None), e.g. for the knowledge-retention curves.

    Returns:
        dict: ``records`` (one per question), ``accuracy``
        (``{"text": (acc, low, high), "speech": ..., "floor": ...}``), ``question_wer`` (float),
        ``floor_answer`` (str) and ``seconds``; the floor gives every question the gold answer most
        questions share.
    """
    from spectron_kit.audio import load_audio, save_audio
    from spectron_kit.data.manifest import track
    from spectron_kit.evaluation.continuation import split_model_text

    if speak and model.vocoder is None:
        raise ValueError("the bundle has no vocoder: spoken answers cannot be made; rebuild it with a vocoder "
                         "or score the text answers only (speak=False)")
    torch.manual_seed(seed)
    rate = model.frontend.spec.sample_rate
    records, started = [], time.time()
    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    for batch in track(batches, description="questions", enabled=progress):
        wavs = [load_audio(row["path"], rate) for row in batch]
        prompt = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True).to(model.device)
        lengths = torch.tensor([len(w) for w in wavs], device=model.device)
        if speak:
            out = model.generate(prompt, lengths, max_seconds=answer_seconds, do_sample=do_sample)
            spoken = [w.detach().cpu().float().numpy() for w in out.waveforms]
            heard = transcriber.transcribe(spoken, out.sample_rate)
        else:  # text only: one frame of speech, not vocoded
            out = model.generate(prompt, lengths, num_frames=1, stop="budget", do_sample=do_sample, vocode=False)
            spoken, heard = None, [None] * len(batch)
        for i, row in enumerate(batch):
            question_words = M.normalize_text(row["question"]).split()
            transcript, answer = split_model_text(out.text[i], len(question_words))
            answer_text = " ".join(answer)
            asr = M.normalize_text(heard[i]) if speak else None
            counts = M.word_error_counts(question_words, transcript, normalize=False)
            record = {"id": row["id"], "question": row["question"], "answers": list(row["answers"]),
                      "model_text": out.text[i], "model_transcript": " ".join(transcript),
                      "answer_text": answer_text, "asr_spoken_answer": asr,
                      "text_correct": M.answer_is_correct(answer_text, row["answers"]),
                      "speech_correct": M.answer_is_correct(asr, row["answers"]) if speak else None,
                      "transcript_edits": counts["edits"], "transcript_words": counts["n_ref"],
                      "spoken_seconds": len(spoken[i]) / out.sample_rate if speak else 0.0}
            if speak and out_dir is not None and len(records) < num_samples:
                path = Path(out_dir) / "answers" / f"{row['id']}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                save_audio(str(path), spoken[i], out.sample_rate)
                record["spoken_answer_wav"] = str(path)
            records.append(record)
    accuracy = {kind: M.bootstrap_ci(np.array([float(r[f"{kind}_correct"]) for r in records]),
                                     n_resamples=n_resamples, seed=seed)
                if records and (speak or kind == "text") else (None, None, None)
                for kind in ("text", "speech")}
    # floor: one answer for every question, the gold answer most questions share
    counts = {}
    for r in records:
        for gold in {M.normalize_answer(g) for g in r["answers"]}:
            counts[gold] = counts.get(gold, 0) + 1
    common = max(sorted(counts), key=counts.get) if counts else ""
    floor = (M.bootstrap_ci(np.array([float(M.answer_is_correct(common, r["answers"])) for r in records]),
                            n_resamples=n_resamples, seed=seed) if records else (None, None, None))
    accuracy["floor"] = floor
    edits = sum(r["transcript_edits"] for r in records)
    words = sum(r["transcript_words"] for r in records)
    return {"records": records, "accuracy": accuracy, "question_wer": edits / words if words else None,
            "floor_answer": common, "seconds": time.time() - started}


@torch.no_grad()
def answer_written_questions(lm, rows, max_new_tokens=16, n_resamples=1000, seed=1234):
    """A text LM's answers to the written questions (greedy), scored like the spoken ones.

    The knowledge-retention upper bound: what the LM knows when it reads the
    question instead of hearing it. Works for a pre-trained text LM and for the
    LM inside a Spectron bundle (``model.lm``; text-only prompts are outside what
    Spectron trains it on, so read that as what its weights still hold).

    Arguments:
        lm: an :class:`spectron_kit.lm.HFCausalLM` with a tokenizer.
        rows: records with ``question`` and ``answers``.
        max_new_tokens: answer budget.
    Returns:
        ``{"records": [{id, question, answers, answer_text, text_correct}], "accuracy": (acc, low, high)}``.
    """
    model = lm.model
    was_training = model.training
    model.eval()
    records = []
    try:
        for row in rows:
            ids = [lm.sos_id] + list(lm.encode(M.normalize_text(row["question"])))
            start = len(ids)
            for _ in range(max_new_tokens):
                logits = model(input_ids=torch.tensor([ids], device=next(model.parameters()).device)).logits
                token = int(logits[0, -1].argmax())
                if token == lm.eos_id:
                    break
                ids.append(token)
            answer = lm.decode(ids[start:])
            records.append({"id": row.get("id", str(len(records))), "question": row["question"],
                            "answers": list(row["answers"]), "answer_text": answer,
                            "text_correct": M.answer_is_correct(answer, row["answers"])})
    finally:
        model.train(was_training)
    accuracy = (M.bootstrap_ci(np.array([float(r["text_correct"]) for r in records]), n_resamples=n_resamples,
                               seed=seed) if records else (None, None, None))
    return {"records": records, "accuracy": accuracy}


def write_qa_report(result, out_dir, dataset, setup):
    """``results.json``, ``per_question.csv`` and ``results.md`` (with the paper's numbers) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = result["records"]
    (out_dir / "results.json").write_text(json.dumps({**result, "setup": setup, "dataset": dataset}, indent=2))
    with open(out_dir / "per_question.csv", "w", newline="") as f:
        columns = ["id", "question", "answers", "model_transcript", "answer_text", "asr_spoken_answer",
                   "text_correct", "speech_correct"]
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({**r, "answers": " | ".join(r["answers"])})

    def pct(triple):
        value, low, high = triple
        return "-" if value is None else f"{100 * value:.1f}% [{100 * low:.1f}%, {100 * high:.1f}%]"

    lines = [f"# Spoken QA: {dataset}", "", f"- model: `{setup.get('model')}`", f"- questions: {len(records)}",
             f"- command: `{setup.get('command', '')}`", "",
             "| | accuracy [95% CI] |", "| --- | ---: |",
             f"| text answer (the model's written answer) | {pct(result['accuracy']['text'])} |",
             f"| spoken answer (ASR transcript of the answer audio) | {pct(result['accuracy']['speech'])} |"]
    if result["accuracy"].get("floor"):
        lines.append(f"| floor: the same answer ({result.get('floor_answer', '')!r}, the most common gold answer) "
                     f"for every question | {pct(result['accuracy']['floor'])} |")
    if result.get("question_wer") is not None:
        lines.append(f"| WER of the model's question transcript | {100 * result['question_wer']:.1f}% |")
    paper = PAPER_QA.get(dataset)
    if paper:
        lines += ["", "Paper (Table 2, accuracy %): " + ", ".join(f"{k} {v}" for k, v in paper.items()) + "."]
    lines += ["", "An answer is correct when a gold answer occurs in it (case, punctuation, articles and number "
              "words normalised). Intervals: percentile bootstrap over questions."]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    return {"json": out_dir / "results.json", "csv": out_dir / "per_question.csv", "markdown": out_dir / "results.md"}
