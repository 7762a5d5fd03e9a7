"""Hearing: what a bundle writes as the transcript of prompts, against what a real ASR model hears in them.

A prompt set is a list of :class:`Prompt` (3 s of audio, the words spoken in it, and for counts the
numbers that come next). :func:`measure_hearing` runs the bundle once per prompt (text only) and scores:

- its transcript, by the evaluation's rule (its first words, as many as the reference has): word and
  character error rates;
- the yardsticks beside it: the transcriber's own transcript of the same audio (Whisper tiny.en: the
  hearing ceiling a real pre-trained ASR model reaches) and the *prior floor*: the bundle's first words
  for a prompt of faint noise, scored against every reference (what its LM writes without hearing);
- for counts, how often the continuation's first words are the next numbers (``counts_on``).
"""
import dataclasses

import numpy as np
import torch

from spectron_kit.audio import to_samples
from spectron_kit.evaluation.metrics import normalize_text, word_error_counts
from spectron_kit.evaluation.stats import bootstrap_ratio_ci


@dataclasses.dataclass
class Prompt:
    """One prompt: ``wav`` (float tensor at the model's rate), the words spoken, and for counts the next ones."""

    id: str
    wav: torch.Tensor
    words: str
    speaker: str = ""
    next_words: str = ""


def error_counts(reference, hypothesis):
    """``(word edits, reference words, character edits, reference characters)`` of two normalised texts.

    Example:
        >>> error_counts("four five six", "for five six")
        (1, 3, 1, 13)
    """
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    words = word_error_counts(ref.split(), hyp.split(), normalize=False)
    chars = word_error_counts(list(ref), list(hyp), normalize=False)
    return words["edits"], words["n_ref"], chars["edits"], chars["n_ref"]


def model_texts(model, wavs, batch_size=8):
    """The bundle's text (transcript then continuation) for each waveform; no speech is generated."""
    texts = []
    for start in range(0, len(wavs), batch_size):
        chunk = wavs[start:start + batch_size]
        batch = torch.nn.utils.rnn.pad_sequence(list(chunk), batch_first=True).to(model.device)
        lengths = torch.tensor([len(w) for w in chunk], device=model.device)
        with torch.no_grad():
            texts += model.generate(batch, lengths, num_frames=0, vocode=False).text
    return texts


def _rate(edits, totals, seed):
    """A ratio of sums with its 95% bootstrap interval (over prompts), or None without references."""
    if not sum(totals):
        return None
    value, low, high = bootstrap_ratio_ci(edits, totals, seed=seed)
    return {"value": value, "low": low, "high": high}


def measure_hearing(model, prompts, transcriber=None, seed=0, progress=None):
    """Score a bundle's transcripts of ``prompts`` beside the transcriber's and the prior floor.

    Arguments:
        model: a ``SpectronModel`` (eval mode).
        prompts: list of :class:`Prompt` at the model's sample rate.
        transcriber: a registered ``transcriber`` (``transcribe(wavs, rate)``) or None (no ceiling row).
        seed: bootstrap seed (and the floor's noise).
        progress: optional callable ``progress(stage)`` for the caller's display.

    Returns:
        ``{"rows": per-prompt dicts, "summary": {row name: {"wer", "cer", ...}}}`` where the row names are
        ``model``, ``transcriber`` and ``prior_floor``; ``counts_on`` (for prompts with ``next_words``) is the
        fraction of the model's continuations that start with them, with how many of those prompts it heard
        right.
    """
    from spectron_kit.data.counting import counts_on
    from spectron_kit.evaluation.continuation import split_model_text

    rate = int(model.frontend.spec.sample_rate)
    wavs = [p.wav.float() for p in prompts]
    if progress:
        progress("model")
    texts = model_texts(model, wavs)
    if progress:
        progress("prior floor")
    samples = to_samples(model.prompt_seconds, rate)  # a whole prompt of faint noise
    noise = torch.from_numpy((1e-3 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32))
    prior_text = model_texts(model, [noise])[0]
    heard = None
    if transcriber is not None:
        if progress:
            progress("transcriber")
        heard = transcriber.transcribe([w.numpy() for w in wavs], rate)
    rows = []
    for i, prompt in enumerate(prompts):
        n_words = len(normalize_text(prompt.words).split())
        transcript, continuation = split_model_text(texts[i], n_words)
        prior, _ = split_model_text(prior_text, n_words)
        row = {"id": prompt.id, "speaker": prompt.speaker, "reference": normalize_text(prompt.words),
               "model_text": texts[i], "model_transcript": " ".join(transcript),
               "model": error_counts(prompt.words, " ".join(transcript)),
               "prior_floor": error_counts(prompt.words, " ".join(prior))}
        if heard is not None:
            row["transcriber_text"] = heard[i]
            row["transcriber"] = error_counts(prompt.words, heard[i])
        if prompt.next_words:
            row["next_words"] = prompt.next_words
            row["counts_on"] = counts_on(continuation, normalize_text(prompt.next_words))
            row["heard_right"] = row["model"][0] == 0
        rows.append(row)
    summary = {}
    for name in ("model", "transcriber", "prior_floor"):
        scored = [r[name] for r in rows if name in r]
        if not scored:
            continue
        summary[name] = {"wer": _rate([s[0] for s in scored], [s[1] for s in scored], seed),
                         "cer": _rate([s[2] for s in scored], [s[3] for s in scored], seed), "n": len(scored)}
    counted = [r for r in rows if "counts_on" in r]
    if counted:
        right = [r for r in counted if r["heard_right"]]
        summary["model"]["counts_on"] = {
            "value": sum(r["counts_on"] for r in counted) / len(counted), "n": len(counted),
            "heard_right": len(right),
            "given_heard_right": (sum(r["counts_on"] for r in right) / len(right)) if right else None}
    return {"rows": rows, "summary": summary, "prior_text": prior_text}
