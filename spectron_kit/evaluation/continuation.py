"""Speech-continuation evaluation (SPECTRON.md section 5; the paper's Table 1/3).

For every utterance of a manifest the first ``prompt_seconds`` of audio are the
prompt and the rest is the reference continuation. The model reads the prompt
and, in one decoding pass, writes the prompt's transcript, its text
continuation, then spectrogram frames that the vocoder turns into audio.

This module makes the audio of every condition (:data:`CONDITIONS`: the
reference continuation, the vocoder on the reference frames, the model's
teacher-forced frames, its free-running generation, and a floor: the
reference's mean frame repeated) for the same utterances, and hands each batch
to the scorers (:mod:`spectron_kit.evaluation.scorers`): ASR WER against the
words the audio should say, text-LM perplexity of the ASR transcript, speaker
similarity to the prompt (with the other-speaker floor), predicted MOS, frame
distance, and any registered metric. It measures itself only what is not
about the audio: (d) the WER of the model's own transcript of the prompt and
(f) generation speed (frames per second, real-time factor).

:func:`~spectron_kit.evaluation.scorers.aggregate_scores` turns every scorer
into per-condition corpus values; :func:`aggregate_records` gives the paper's
Table 1 view (log-perplexity, speaker similarity with its two baselines, MOS
of the generation, text/speech WER, prompt WER, speed), all with 95%
bootstrap intervals (resampling utterances; speed resamples batches).

The reference transcript of the prompt (d) is ``row["prompt_text"]`` when the
manifest has it (word alignments); otherwise it is approximated by the first
``k = round(n_words * prompt_seconds / duration)`` words of the whole
transcript, i.e. assuming a constant speaking rate over the utterance. That
approximation can be off by a word or two at the boundary, which inflates the
prompt WER a little; results record which source was used per utterance.

Example:
    >>> reference_prompt_words({"text": "a b c d e f", "duration": 6.0}, 3.0)
    (['a', 'b', 'c'], 'proportional')
    >>> split_model_text("A b, c d e", 3)
    (['a', 'b', 'c'], ['d', 'e'])
"""
import logging
import math
import random
import re
import time
from pathlib import Path

import numpy as np
import torch

from spectron_kit.audio import to_samples
from spectron_kit.evaluation import metrics as M
from spectron_kit.evaluation.scorers import (EVALUATION_COMPONENTS, MIN_SCORED_SECONDS, ScoringBatch,
                                             aggregate_entry, aggregate_scores, check_scorers, scorer_info, scorer_key,
                                             scorer_name)
from spectron_kit.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "LENGTH_RULES",
    "MIN_CONTINUATION_SECONDS",
    "PROTOCOL_CONTROLS",
    "check_protocol",
    "reference_prompt_words",
    "split_model_text",
    "select_rows",
    "evaluate_continuation",
    "aggregate_records",
    "continuation_words",
    "CONDITIONS",
    "CONDITION_LABELS",
    "component_description",
    "lm_context_length",
    "frames_that_fit",
]

#: how many frames the model generates: as many as the reference continuation,
#: a fixed number of seconds, or until its learned stop head fires
LENGTH_RULES = ("reference", "fixed", "stop")
#: utterances shorter than prompt + this are skipped (and counted)
MIN_CONTINUATION_SECONDS = 0.5

#: protocol control -> (accepted Python types, check, what a valid value looks like)
PROTOCOL_CONTROLS = {
    "prompt_seconds": ((int, float), lambda v: v > 0, "a number of seconds > 0, e.g. 3.0"),
    "length_rule": ((str,), lambda v: v in LENGTH_RULES, "one of " + ", ".join(LENGTH_RULES)),
    "fixed_seconds": ((int, float, type(None)), lambda v: v is None or v > 0,
                      "a number of seconds > 0 (or null)"),
    "max_continuation_seconds": ((int, float, type(None)), lambda v: v is None or v > 0,
                                 "a number of seconds > 0, or null (the length the model was trained on)"),
    "num_utterances": ((int, type(None)), lambda v: v is None or v > 0, "a positive integer or null (all)"),
    "num_samples": ((int, type(None)), lambda v: v is None or v >= 0,
                    "an integer >= 0 or null (all)"),
    "seed": ((int,), lambda v: True, "an integer"),
    "do_sample": ((bool,), lambda v: True, "true or false"),
    "temperature": ((int, float), lambda v: v > 0, "a number > 0"),
    "top_k": ((int,), lambda v: v >= 0, "an integer >= 0 (0 = off)"),
    "top_p": ((int, float), lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "batch_size": ((int,), lambda v: v > 0, "a positive integer"),
    "n_resamples": ((int,), lambda v: v > 0, "a positive integer"),
}


def check_protocol(**controls):
    """Check protocol controls (types and ranges) before any work starts.

    Arguments:
        **controls: any of :data:`PROTOCOL_CONTROLS` (``prompt_seconds=3.0``,
            ``length_rule="reference"``...). Unknown names are ignored here
            (the recipe checks names against its YAML).

    Returns:
        None. Raises ``ValueError`` naming the first bad value and what it
        should look like.

    Example:
        >>> check_protocol(prompt_seconds=3.0, length_rule="fixed", fixed_seconds=4)
        >>> check_protocol(top_p=1.5)
        Traceback (most recent call last):
        ...
        ValueError: top_p=1.5 is invalid; use a number in (0, 1]
    """
    for name, value in controls.items():
        if name not in PROTOCOL_CONTROLS:
            continue
        types, ok, hint = PROTOCOL_CONTROLS[name]
        type_ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not type_ok or not ok(value):
            raise ValueError(f"{name}={value!r} is invalid; use {hint}")
    if controls.get("length_rule") == "fixed" and "fixed_seconds" in controls \
            and controls["fixed_seconds"] is None:
        raise ValueError("length_rule='fixed' needs fixed_seconds (e.g. fixed_seconds=4.0)")


# ---------------------------------------------------------------------------
# helpers with hand-checkable behaviour


def reference_prompt_words(row, prompt_seconds):
    """The words spoken in the prompt, as the reference for the prompt WER.

    Arguments:
        row: manifest row with ``text``, ``duration`` and optionally
            ``prompt_text``.
        prompt_seconds: prompt length.

    Returns:
        ``(words, source)``: normalised words and ``"prompt_text"`` when the
        row has a non-empty ``prompt_text`` (from word alignments; it must have
        been prepared with the same ``prompt_seconds``), else
        ``"proportional"``: the first ``round(n * prompt_seconds / duration)``
        of the ``n`` words of ``text`` (constant speaking rate assumed).

    Example:
        >>> reference_prompt_words({"text": "One two three four five", "duration": 5.0}, 3.0)
        (['one', 'two', 'three'], 'proportional')
        >>> reference_prompt_words({"text": "a b c", "prompt_text": "A B", "duration": 4.0}, 3.0)
        (['a', 'b'], 'prompt_text')
    """
    prompt_text = M.normalize_text(row.get("prompt_text") or "")
    if prompt_text:
        return prompt_text.split(), "prompt_text"
    words = M.normalize_text(row.get("text") or "").split()
    duration = float(row.get("duration") or 0.0)
    if not words or duration <= 0:
        return [], "proportional"
    k = int(round(len(words) * min(float(prompt_seconds) / duration, 1.0)))
    return words[:k], "proportional"


def split_model_text(text, n_prompt_words):
    """Split the model's text into its prompt transcript and its continuation.

    The model writes the prompt transcript and the continuation as one
    string; the first ``n_prompt_words`` words (as many as the reference
    prompt transcript has) are taken as its transcript of the prompt.

    Arguments:
        text: the model's decoded text.
        n_prompt_words: number of words in the reference prompt transcript.

    Returns:
        ``(prompt_words, continuation_words)``, normalised word lists.

    Example:
        >>> split_model_text("the cat sat on the mat", 2)
        (['the', 'cat'], ['sat', 'on', 'the', 'mat'])
        >>> split_model_text("hi", 3)
        (['hi'], [])
    """
    words = M.normalize_text(text or "").split()
    n = max(int(n_prompt_words), 0)
    return words[:n], words[n:]


def select_rows(rows, prompt_seconds, num_utterances=None, seed=0,
                min_continuation_seconds=MIN_CONTINUATION_SECONDS):
    """Drop utterances too short for a prompt plus a continuation, then subsample.

    Arguments:
        rows: manifest rows (need ``duration``).
        prompt_seconds: prompt length.
        num_utterances: keep this many eligible rows, drawn at random with
            ``seed`` (kept in manifest order); None keeps all.
        seed: seed of the draw.
        min_continuation_seconds: shortest continuation kept.

    Returns:
        ``(kept_rows, n_too_short)``.

    Example:
        >>> rows = [{"id": "a", "duration": 3.2}, {"id": "b", "duration": 5.0}]
        >>> [r["id"] for r in select_rows(rows, 3.0)[0]], select_rows(rows, 3.0)[1]
        (['b'], 1)
    """
    from spectron_kit.data.manifest import filter_for_continuation

    # the one eligibility rule of the toolkit, with the evaluation's own minimum (the paper's 0.5 s)
    eligible, n_short = filter_for_continuation(rows, prompt_seconds, min_continuation_seconds)
    if num_utterances is not None and num_utterances < len(eligible):
        picked = sorted(random.Random(seed).sample(range(len(eligible)), int(num_utterances)))
        eligible = [eligible[i] for i in picked]
    return eligible, n_short


def component_description(component):
    """``"kind name(kwargs)"`` for a component built through the registry, else its class name.

    Arguments:
        component: any evaluation component.

    Returns:
        str.
    """
    spec = getattr(component, "spectron_spec", None)
    if spec is None:
        return type(component).__name__
    args = ", ".join(f"{k}={v!r}" for k, v in spec.kwargs.items())
    return f"{spec.name}({args})" if args else spec.name


def _safe_name(utt_id):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(utt_id)) or "utt"


def _np(wav):
    if wav is None:
        return np.zeros(0, dtype=np.float32)
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().float().numpy()
    return np.asarray(wav, dtype=np.float32).reshape(-1)


def _load(row, sample_rate):
    from spectron_kit.data.manifest import load_segment

    return load_segment(row, sample_rate)


def _n_frames(model, n_samples):
    """Frames the frontend makes of ``n_samples`` (without computing them; the FeatureSpec's rule)."""
    return int(model.frontend.spec.num_frames(int(n_samples))) if n_samples else 0


def _frames(model, wav):
    """Log-mel frames [T, F] of one waveform through the model's frontend."""
    if wav.numel() == 0:
        return torch.zeros(0, model.n_mels)
    feats, lens = model.frontend(wav[None].to(model.device), torch.tensor([wav.numel()], device=model.device))
    return feats[0, : int(lens[0])].detach().float().cpu()


def lm_context_length(model):
    """Positions the model's decoder LM can attend over (None when it states no limit).

    Arguments:
        model: a ``SpectronModel``.

    Returns:
        int or None (from ``n_positions`` / ``max_position_embeddings`` of
        the LM's config).
    """
    config = getattr(getattr(model.lm, "model", None), "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def frames_that_fit(model, prefix_lengths):
    """Most frames per item that fit in the LM context after the prefix and a full text budget.

    One item occupies ``prefix + 1 (<sos>) + text tokens + frame groups``
    positions; the text may use the whole ``max_text_tokens`` budget.

    Arguments:
        model: a ``SpectronModel``.
        prefix_lengths: speech-prefix length per item (``encode_prompt``).

    Returns:
        list of int frame counts (a very large number when the LM states no
        context limit).
    """
    context = lm_context_length(model)
    if context is None:
        return [10 ** 9] * len(prefix_lengths)
    return [max(context - int(p) - 2 - model.max_text_tokens, 0) * model.r for p in prefix_lengths]


# ---------------------------------------------------------------------------
# the evaluation loop

#: the audio every speech metric is measured on, in report order: three
#: ceilings, the model's free-running speech, and a floor
CONDITIONS = ("reference", "vocoded", "teacher_forced", "generated", "flat")
CONDITION_LABELS = {
    "reference": "(a) reference continuation audio",
    "vocoded": "(b) vocoder on the reference frames (vocoder ceiling)",
    "teacher_forced": "(c) model, teacher-forced (true text and previous frames), vocoded",
    "generated": "(d) model, free-running generation",
    "flat": "floor: the reference's mean frame at every step, vocoded",
    "other_speaker": "floor: another speaker's reference continuation (speaker similarity)",
}
#: what the ASR transcript of each condition is compared with
CONDITION_TEXT = {"reference": "reference", "vocoded": "reference", "teacher_forced": "reference",
                  "generated": "model", "flat": "reference"}


def continuation_words(row, prompt_seconds, end_seconds=None):
    """The words spoken in the continuation (after the prompt, before ``end_seconds``).

    Arguments:
        row: manifest row (``text``, ``duration``, optional ``prompt_text`` and ``word_times``).
        prompt_seconds: prompt length.
        end_seconds: where the evaluated continuation ends (None: the utterance end).

    Returns:
        ``(words, source)``: with word timings (``"word_times"``), the words
        after the prompt words whose middle lies before ``end_seconds``;
        otherwise the words after the prompt words, cut in proportion to the
        time kept (``"proportional"``, constant speaking rate).

    Example:
        >>> row = {"text": "a b c d e f", "duration": 6.0}
        >>> continuation_words(row, 3.0)
        (['d', 'e', 'f'], 'proportional')
        >>> continuation_words(row, 3.0, end_seconds=5.0)
        (['d', 'e'], 'proportional')
        >>> continuation_words(dict(row, word_times="0:1 1:2 2:3 3:4 4:5 5:6", prompt_text="a b c"), 3.0, 4.4)
        (['d'], 'word_times')
    """
    from spectron_kit.data.manifest import parse_word_times

    words = M.normalize_text(row.get("text") or "").split()
    prompt, _ = reference_prompt_words(row, prompt_seconds)
    rest = words[len(prompt):]
    duration = float(row.get("duration") or 0.0)
    end = duration if end_seconds is None else min(float(end_seconds), duration)
    times = parse_word_times(row.get("word_times", ""), n_words=len(words))
    if times is not None:
        kept = [w for w, (a, b) in zip(rest, times[len(prompt):]) if (a + b) / 2 < end]
        return kept, "word_times"
    if end >= duration - 1e-9 or duration <= prompt_seconds:
        return rest, "proportional"
    share = (end - prompt_seconds) / (duration - prompt_seconds)
    return rest[: int(round(len(rest) * max(share, 0.0)))], "proportional"


def spoken_words(words, written, counts=None):
    """The words of a cut generation that were spoken before the cut: the rule :func:`continuation_words`
    applies to a cut reference (a word counts when its middle lies before the cut), in phonemes.

    A model that writes its speech as phonemes (``interleave_phonemes``) records the phonemes it spoke
    before its frame budget ran out (``written``); word ``k`` counts when the phonemes spoken reach the
    middle of its phonemes in espeak-ng's reading of the text (:func:`~spectron_kit.data.espeak.
    phonemes_per_word`).

    Arguments:
        words: the model's continuation words.
        written: the phonemes it spoke (pauses, names starting with ``_``, are not counted).
        counts: phonemes per word (None: read the words with espeak-ng).

    Returns:
        ``(words, source)``: the words spoken and ``"phonemes"``, or all the words and ``"whole"`` when the
        counts do not match the words (espeak-ng split them differently).

    Example:
        >>> spoken_words(["a", "big", "cat"], ["@", "b", "I", "g", "k"], counts=[1, 3, 3])
        (['a', 'big'], 'phonemes')
    """
    if not words:
        return [], "phonemes"
    if counts is None:
        from spectron_kit.data.espeak import phonemes_per_word

        read = phonemes_per_word(" ".join(words))
        if len(read) != len(words):
            return list(words), "whole"
        counts = [n for _, n in read]
    spoken = sum(1 for p in written if not str(p).startswith("_"))
    kept, before = [], 0
    for word, n in zip(words, counts):
        if before + n / 2 >= spoken:
            break
        kept.append(word)
        before += n
    return kept, "phonemes"


def _lost_words_to_the_cut(record):
    """A generation cut by its budget before it said its whole text (scored on the words it spoke)."""
    return record.get("model_spoken_source") == "phonemes" and \
        record["model_spoken_text"] != record["model_continuation_text"]


def _flat_frames(frames):
    """The mean frame repeated: what a model that ignores time would say."""
    if len(frames) == 0:
        return frames
    return frames.mean(dim=0, keepdim=True).expand_as(frames).clone()


def _batch_material(model, chunk, sr, n_prompt, limit_seconds, frame_rate, stop, budget_rule, cap_seconds,
                    sampling, seed, need_audio=True):
    """Generate one batch and collect every condition's audio and frames.

    Without ``need_audio`` (every scorer reads frames only) nothing is vocoded
    and ``audio`` is empty.

    Returns a dict of per-item lists: ``prompts``, ``refs``, ``truncated``,
    ``frames`` (condition -> frames), ``audio`` (condition -> waveform), the
    generation output ``out`` and its ``timing``.
    """
    spec = model.frontend.spec
    wavs = [_load(row, sr) for row in chunk]
    prompts = [w[:n_prompt] for w in wavs]
    refs = [w[n_prompt:] for w in wavs]
    prompt_wav = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True)
    prompt_lens = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    _, prefix_lens = model.encode_prompt(prompt_wav.to(model.device), prompt_lens.to(model.device))
    limits = frames_that_fit(model, prefix_lens.tolist())
    if limit_seconds is not None:
        limits = [min(n, to_samples(limit_seconds, frame_rate)) for n in limits]
    truncated = [False] * len(chunk)
    for i, limit in enumerate(limits):
        if _n_frames(model, len(refs[i])) > limit:  # cut to `limit` frames
            refs[i] = refs[i][: spec.num_samples(int(limit))]
            truncated[i] = True
    ref_frames = [_frames(model, r) for r in refs]
    if budget_rule == "reference":
        budget = [len(f) for f in ref_frames]
    else:
        budget = [min(to_samples(cap_seconds, frame_rate), n) for n in limits]
    torch.manual_seed(int(seed))
    t0 = time.perf_counter()
    out = model.generate(prompt_wav, prompt_lens, num_frames=torch.tensor(budget), stop=stop, vocode=need_audio,
                         **sampling)
    wall = time.perf_counter() - t0
    cont_wav = torch.nn.utils.rnn.pad_sequence(refs, batch_first=True)
    cont_lens = torch.tensor([len(r) for r in refs], dtype=torch.long)
    torch.manual_seed(int(seed))
    forced = model.teacher_forced_frames(prompt_wav, prompt_lens, [row.get("text", "") for row in chunk],
                                         cont_wav, cont_lens, phone_times=[row.get("phone_times", "") for row in chunk])
    frames = {"vocoded": ref_frames, "teacher_forced": forced, "generated": out.frames,
              "flat": [_flat_frames(f) for f in ref_frames]}
    audio = {}
    if need_audio:
        audio = {"reference": [_np(r) for r in refs],
                 "generated": [_np(w) for w in (out.waveforms or [None] * len(chunk))]}
        for cond in ("vocoded", "teacher_forced", "flat"):
            audio[cond] = [_np(w) for w in model.vocode(frames[cond])]
    return {"prompts": prompts, "refs": refs, "truncated": truncated, "ref_frames": ref_frames, "frame_rate": frame_rate,
            "prompt_frames": [_frames(model, p) for p in prompts],
            "frames": frames, "audio": audio, "out": out, "wall": wall}


@torch.no_grad()
def evaluate_continuation(model, rows, *, scorers, prompt_seconds=3.0, length_rule="reference", fixed_seconds=None,
                          max_continuation_seconds=None, num_utterances=None, seed=0, do_sample=False,
                          temperature=1.0, top_k=0, top_p=1.0, batch_size=4, out_dir, num_samples=None,
                          n_resamples=1000, progress=True):
    """Run the speech-continuation protocol on manifest rows.

    Every metric (the scorers: ASR WER against the text the audio should say,
    text-LM perplexity of the ASR transcript, speaker similarity to the
    prompt, predicted MOS, frame distance, any registered one) is measured on the same utterances for each of
    :data:`CONDITIONS`: (a) the reference continuation audio, (b) the vocoder
    on the reference frames, (c) the model's teacher-forced frames, (d) its
    free-running generation, and a floor (the reference's mean frame at every
    step). (c) vs (d) separates alignment from exposure bias; (b) vs (d) is
    what the model still loses.

    Arguments:
        model: a ``SpectronModel`` with a vocoder (e.g. from ``from_pretrained``).
        rows: manifest rows (``spectron_kit.data.manifest.read_manifest``).
        scorers: the metrics, ``scorer`` components
            (:mod:`spectron_kit.evaluation.scorers`; the paper's, as evaluate.yaml
            lists them: ``build_scorers(["asr_wer", "asr_perplexity", "speaker_similarity",
            "predicted_mos"], transcriber=..., lm_scorer=..., speaker_encoder=..., mos_predictor=...)``):
            each scores every condition of every batch.
        prompt_seconds: prompt length (paper: 3 s).
        length_rule: "reference" (as many frames as the reference
            continuation), "fixed" (``fixed_seconds`` of frames) or "stop"
            (the model's stop head, capped at ``fixed_seconds`` or, when that
            is None, the model's ``max_seconds``).
        fixed_seconds: length for the "fixed" rule, cap for "stop".
        max_continuation_seconds: cut reference continuations (and the frame
            budget) to this length; None uses the model's ``max_seconds``,
            the continuation length it was trained on, so that evaluation
            does not ask for longer speech than training showed. No item is
            given more frames than fit in the LM context after its prefix and
            a full text budget; a cut continuation keeps the words spoken
            before the cut as its reference text (``counts["truncated"]``).
        num_utterances: evaluate a seeded random subset of this size (None: all).
        seed: seeds the subset, the other-speaker baseline (drawn among the
            evaluated utterances of other speakers), the bootstrap and
            ``torch.manual_seed(seed + batch_index)`` before each batch.
        do_sample, temperature, top_k, top_p: text decoding (greedy by default).
        batch_size: prompts per ``generate`` call.
        out_dir: folder for ``samples/`` (wavs and spectrogram PNGs).
        num_samples: save audio and a spectrogram for the first this many
            utterances (None: all, 0: none).
        n_resamples: bootstrap resamples for the intervals.
        progress: show a rich progress bar.

    Returns:
        dict with ``config`` (the protocol and component descriptions),
        ``records`` (one dict per utterance, with ``speech``: condition ->
        metrics), ``batches`` (timing per ``generate`` call), ``aggregates``
        (the paper's Table 1 view, see :func:`aggregate_records`), ``speech``
        (every scorer on every condition, see
        :func:`~spectron_kit.evaluation.scorers.aggregate_scores`) and ``counts``.
    """
    protocol = dict(prompt_seconds=prompt_seconds, length_rule=length_rule, fixed_seconds=fixed_seconds,
                    max_continuation_seconds=max_continuation_seconds, num_utterances=num_utterances,
                    num_samples=num_samples, seed=seed, do_sample=do_sample, temperature=temperature,
                    top_k=top_k, top_p=top_p, batch_size=batch_size, n_resamples=n_resamples)
    scorers = list(scorers)
    _check_request(model, scorers, protocol)
    samples_dir = Path(out_dir) / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    selected, n_short = _usable_rows(rows, prompt_seconds, num_utterances, seed)
    sr = model.frontend.spec.sample_rate
    frame_rate = float(model.frame_rate)
    stop = "stop_head" if length_rule == "stop" else "budget"
    cap_seconds = fixed_seconds if fixed_seconds is not None else model.max_seconds
    limit_seconds = max_continuation_seconds if max_continuation_seconds is not None else model.max_seconds
    sampling = {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    records, batches = [], []
    n_prompt = to_samples(prompt_seconds, sr)
    need_audio = any(getattr(scorer, "needs_audio", True) for scorer in scorers)
    for scorer in scorers:
        if callable(getattr(scorer, "start", None)):
            scorer.start()

    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("continuation", total=len(selected))
        for b, start in enumerate(range(0, len(selected), batch_size)):
            chunk = selected[start:start + batch_size]
            got = _batch_material(model, chunk, sr, n_prompt, limit_seconds, frame_rate, stop, length_rule,
                                  cap_seconds, sampling, seed + b, need_audio)
            timing = dict(got["out"].timing)
            timing.update(batch=b, items=len(chunk), wall_s=got["wall"],
                          audio_s=sum(len(f) for f in got["out"].frames) / frame_rate)
            batches.append(timing)
            fresh = _score_batch(chunk, b, got, scorers, prompt_seconds, sr)
            for i, (row, record) in enumerate(zip(chunk, fresh)):
                if num_samples is None or len(records) < num_samples:
                    record["samples"] = _save_samples(samples_dir, row["id"], got, i, sr, frame_rate)
                records.append(record)
            bar.advance(task, len(chunk))

    n_no_other = _finish_records(records, scorers, seed)
    config = _run_config(model, scorers, protocol, stop=stop, continuation_limit_seconds=limit_seconds,
                         frame_budget_seconds=None if length_rule == "reference" else cap_seconds)
    mos_label = config["mos_label"]
    counts = {"rows": len(rows), "too_short": n_short, "evaluated": len(records),
              "truncated": sum(r["reference_truncated"] for r in records),
              "generation_cut": sum(_lost_words_to_the_cut(r) for r in records),
              "prompt_text_from_alignments": sum(r["reference_prompt_source"] == "prompt_text" for r in records),
              "no_other_speaker": n_no_other,
              "empty_generation": sum(r["generated_seconds"] < MIN_SCORED_SECONDS for r in records)}
    speech = aggregate_scores(records, scorers, CONDITIONS, seed=seed, n_resamples=n_resamples)
    aggregates = aggregate_records(records, batches, speech, seed=seed, n_resamples=n_resamples, mos_label=mos_label)
    return {"config": config, "records": records, "batches": batches, "aggregates": aggregates,
            "speech": speech, "counts": counts}


def _usable_rows(rows, prompt_seconds, num_utterances, seed):
    """:func:`select_rows` with the skipped count in the log; a ValueError when no row is long enough."""
    selected, n_short = select_rows(rows, prompt_seconds, num_utterances, seed)
    if n_short:
        logger.info("skipped %d of %d utterances shorter than the %.1f s prompt + %.1f s",
                    n_short, len(rows), prompt_seconds, MIN_CONTINUATION_SECONDS)
    if not selected:
        raise ValueError(f"no utterance is at least {prompt_seconds + MIN_CONTINUATION_SECONDS:g} s long "
                         f"({len(rows)} given); use longer utterances or a shorter prompt_seconds")
    return selected, n_short


def _finish_records(records, scorers, seed):
    """The scorers' baselines drawn over the whole test set (e.g. the other-speaker floor), then the paper's
    view of every record. Returns how many utterances had no other speaker to compare with."""
    for scorer in scorers:
        if callable(getattr(scorer, "finish", None)):
            _merge(records, scorer, scorer.finish(seed), "finish(seed)")
    for record in records:
        _paper_view(record)
    n_no_other = sum(r["speaker_sim_other_speaker"] is None for r in records) \
        if any(scorer_key(sc) == "speaker_sim" for sc in scorers) else 0
    if n_no_other:
        logger.warning("%d utterances have no utterance of a different (known) speaker to compare with; "
                       "their other-speaker baseline is left out", n_no_other)
    return n_no_other


def _check_request(model, scorers, protocol):
    """One ``ValueError`` naming what cannot work: the protocol's values, a stop rule without a stop head, a
    model without a vocoder or with one for other audio, a scorer without ``score``."""
    check_protocol(**protocol)
    if protocol["length_rule"] == "stop" and getattr(model, "stop_head", None) is None:
        raise ValueError("length_rule='stop' needs a model trained with a stop head; "
                         "use length_rule='reference' or 'fixed'")
    if model.vocoder is None:
        raise ValueError("the model has no vocoder, so no audio can be evaluated; load it with "
                         "SpectronModel.from_pretrained(dir, vocoder=build('vocoder', ...))")
    sr = model.frontend.spec.sample_rate
    if int(model.vocoder.sample_rate) != sr:
        raise ValueError(f"the vocoder makes {model.vocoder.sample_rate} Hz audio but the features are "
                         f"{sr} Hz; use a vocoder built for the model's feature spec")
    check_scorers(scorers)


def _score_batch(chunk, b, got, scorers, prompt_seconds, sr):
    """The records of one batch: the texts each condition should say (the model's own continuation for the
    generated audio, the reference's words for the rest), then every scorer on every condition."""
    out = got["out"]
    ref_words, model_words, prompt_parts, whole = [], [], [], []
    for i, row in enumerate(chunk):
        ref_prompt, ref_source = reference_prompt_words(row, prompt_seconds)
        hyp_prompt, model_cont = split_model_text(out.text[i], len(ref_prompt))
        end = prompt_seconds + len(got["refs"][i]) / sr
        ref_words.append(continuation_words(row, prompt_seconds, end)[0])
        whole.append(model_cont)
        spoken, source = model_cont, "whole"  # a generation cut by its budget says the words before the cut
        if out.stopped_by[i] == "budget" and out.phonemes:
            spoken, source = spoken_words(model_cont, out.phonemes[i])
        model_words.append(spoken)
        prompt_parts.append((ref_prompt, ref_source, hyp_prompt, source))
    texts = {cond: (model_words if CONDITION_TEXT[cond] == "model" else ref_words) for cond in CONDITIONS}
    batch = ScoringBatch(sample_rate=sr, conditions=tuple(got["audio"] or got["frames"]), audio=got["audio"],
                         frames=got["frames"], reference_frames=got["ref_frames"],
                         prompts=[_np(p) for p in got["prompts"]], texts=texts, rows=list(chunk),
                         model_text=list(out.text))
    fresh = [_record(row, i, b, got, texts, prompt_parts[i], sr, whole[i]) for i, row in enumerate(chunk)]
    for scorer in scorers:
        _merge(fresh, scorer, scorer.score(batch), "score(batch)")
    for record in fresh:  # the generation also against the model's whole continuation (cut or not)
        gen = record["speech"].get("generated", {})
        if "asr" in gen:
            edits, n = M.word_errors(record["model_continuation_text"], gen["asr"])
            gen.update(wer_whole_edits=edits, wer_whole_ref_words=n, wer_whole=edits / n if n else None)
    return fresh


def _run_config(model, scorers, protocol, **derived):
    """The ``config`` of a result: the protocol, what it derived, the components used, the model's shape."""
    infos = [scorer_info(sc) for sc in scorers]
    used = {}
    for scorer in scorers:
        for name in EVALUATION_COMPONENTS:
            if getattr(scorer, name, None) is not None:
                used.setdefault(name, component_description(getattr(scorer, name)))
    return {**protocol, **derived, "model_max_seconds": model.max_seconds, "lm_context": lm_context_length(model),
            "min_continuation_seconds": MIN_CONTINUATION_SECONDS,
            "components": dict(used, vocoder=component_description(model.vocoder),
                               scorers=[component_description(sc) for sc in scorers]),
            "scorers": infos, "mos_label": next((i["label"] for i in infos if i["key"] == "mos"), "predicted MOS"),
            "model": {"sample_rate": model.frontend.spec.sample_rate, "frame_rate": float(model.frame_rate),
                      "reduction_factor": model.r, "parameters": model.num_parameters()}}


def _record(row, i, b, got, texts, prompt_part, sr, whole):
    """One utterance's record: lengths, texts and the prompt WER (the scorers add ``speech``)."""
    ref_prompt, ref_source, hyp_prompt, spoken_source = prompt_part
    out = got["out"]
    p_edits, p_ref = M.word_errors(ref_prompt, hyp_prompt, normalize=False)
    return {
        "id": row["id"], "speaker": str(row.get("speaker", "")), "batch": b,
        "duration": float(row["duration"]),
        "prompt_seconds": len(got["prompts"][i]) / sr, "reference_seconds": len(got["refs"][i]) / sr,
        "generated_seconds": (got["audio"]["generated"][i].size / sr if got["audio"]
                              else len(out.frames[i]) / float(got["frame_rate"])),
        "reference_frames": len(got["ref_frames"][i]), "generated_frames": len(out.frames[i]),
        "reference_truncated": got["truncated"][i], "stopped_by": out.stopped_by[i],
        "model_phonemes": " ".join(out.phonemes[i]) if out.phonemes else "",
        "reference_text": M.normalize_text(row.get("text", "")),
        "reference_prompt_text": " ".join(ref_prompt), "reference_prompt_source": ref_source,
        "reference_continuation_text": " ".join(texts["reference"][i]),
        "model_text": out.text[i], "model_prompt_transcript": " ".join(hyp_prompt),
        "model_continuation_text": " ".join(whole),
        "model_spoken_text": " ".join(texts["generated"][i]), "model_spoken_source": spoken_source,
        "prompt_wer_edits": p_edits, "prompt_wer_ref_words": p_ref,
        "prompt_wer": p_edits / p_ref if p_ref else None,
        "speech": ({cond: {"seconds": wavs[i].size / sr} for cond, wavs in got["audio"].items()}
                   or {cond: {"seconds": len(frames[i]) / float(got["frame_rate"])}
                       for cond, frames in got["frames"].items()}),
        "samples": {},
    }


def _merge(records, scorer, values, call):
    """Merge a scorer's ``{condition: value}`` per utterance into each record's ``speech``."""
    name, key = scorer_name(scorer), scorer_key(scorer)
    if len(values) != len(records):
        raise ValueError(f"scorer {name!r} {call} returned {len(values)} records for {len(records)} utterances; "
                         "return one {condition: value} dict per utterance")
    for record, per_condition in zip(records, values):
        for cond, value in per_condition.items():
            entry = record["speech"].setdefault(cond, {})
            if isinstance(value, dict):
                if key not in value:
                    raise ValueError(f"scorer {name!r} returned a dict without its key {key!r} for {cond!r}; "
                                     f"return a number, None, or a dict holding {key!r}")
                entry.update(value)
            else:
                entry[key] = value


def _paper_view(record):
    """The paper's Table 1 quantities of one utterance under their own keys (from the built-in scorers)."""
    speech = record["speech"]
    gen, ref, other = speech.get("generated", {}), speech.get("reference", {}), speech.get("other_speaker", {})
    n_tok = gen.get("lm_tokens")
    record.update({
        "asr_generated": gen.get("asr"), "lm_nll": gen.get("lm_nll"), "lm_tokens": n_tok,
        "log_perplexity": gen["lm_nll"] / n_tok if n_tok else None, "perplexity": gen.get("perplexity"),
        "speaker_sim_generated": gen.get("speaker_sim"), "speaker_sim_reference": ref.get("speaker_sim"),
        "speaker_sim_other_speaker": other.get("speaker_sim"), "other_speaker_id": other.get("other_id"),
        "mos_generated": gen.get("mos"), "mos_reference": ref.get("mos"),
        "text_speech_wer_edits": gen.get("wer_edits"), "text_speech_wer_ref_words": gen.get("wer_ref_words"),
        "text_speech_wer": gen.get("wer")})


def _save_samples(folder, utt_id, got, i, sr, frame_rate):
    """Write every condition's wav and one spectrogram PNG (shared colour scale); paths relative to out_dir."""
    from spectron_kit.evaluation.samples import write_sample

    audio = {"prompt": got["prompts"][i], **{cond: wavs[i] for cond, wavs in got["audio"].items()}}
    panels = [("prompt", got["prompt_frames"][i]), ("(a) reference continuation", got["ref_frames"][i]),
              ("(c) teacher-forced (true text and previous frames)", got["frames"]["teacher_forced"][i]),
              ("(d) generated continuation", got["frames"]["generated"][i])]
    paths = write_sample(folder, _safe_name(utt_id), audio, sr, panels, frame_rate, title=str(utt_id))
    return {k: f"samples/{v}" for k, v in paths.items()}


# ---------------------------------------------------------------------------
# aggregation


#: the paper's Table 1 view of the scorers' aggregates: key -> (condition, scorer key, label, better)
PAPER_VIEW = {
    "perplexity": ("generated", "perplexity", "perplexity of ASR transcript (corpus)", "lower"),
    "speaker_sim_generated": ("generated", "speaker_sim", "speaker similarity: prompt vs generated", "higher"),
    "speaker_sim_reference": ("reference", "speaker_sim", "baseline: prompt vs ground-truth continuation", ""),
    "speaker_sim_other_speaker": ("other_speaker", "speaker_sim",
                                  "baseline: prompt vs another speaker's continuation", ""),
    "mos_generated": ("generated", "mos", "{mos}: generated", "higher"),
    "mos_reference": ("reference", "mos", "{mos}: reference continuation", ""),
    "text_speech_wer": ("generated", "wer", "WER of ASR(generated speech) vs the model's text continuation "
                        "(spoken before the cut)", "lower"),
}


def aggregate_records(records, batches=(), speech=None, seed=0, n_resamples=1000, confidence=0.95,
                      mos_label="predicted MOS"):
    """The paper's Table 1 view, with what the protocol measures itself (prompt WER, speed).

    The speech metrics are read from the scorers' aggregates (``speech``,
    :func:`~spectron_kit.evaluation.scorers.aggregate_scores`), relabelled
    (:data:`PAPER_VIEW`); the corpus log-perplexity is the log of the
    generated speech's perplexity and its bounds. Measured here with
    percentile-bootstrap intervals: the per-utterance mean (log-)perplexity,
    the prompt WER (ratio of sums over utterances) and the speed (over batches).

    Arguments:
        records: per-utterance dicts from :func:`evaluate_continuation`.
        batches: timing dicts per ``generate`` call.
        speech: condition -> scorer key -> entry (None: no speech metrics).
        seed, n_resamples, confidence: bootstrap settings.
        mos_label: label of the MOS predictor (always "predicted ...").

    Returns:
        dict metric key -> ``{label, value, low, high, n, better, note}``
        (``better`` is "lower", "higher" or "" for baselines and context);
        metrics with no usable values are left out.

    Example:
        >>> recs = [{"prompt_wer_edits": 1, "prompt_wer_ref_words": 4},
        ...         {"prompt_wer_edits": 0, "prompt_wer_ref_words": 4}]
        >>> speech = {"generated": {"perplexity": aggregate_entry("", 8.0, 4.0, 16.0, 2, "lower")}}
        >>> agg = aggregate_records(recs, speech=speech)
        >>> agg["log_perplexity"]["value"] == math.log(8.0), agg["prompt_wer"]["value"], agg["prompt_wer"]["n"]
        (True, 0.125, 2)
    """
    kw = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    speech = speech or {}
    view = {}
    for key, (cond, metric, label, better) in PAPER_VIEW.items():
        entry = speech.get(cond, {}).get(metric)
        if entry is not None:
            view[key] = dict(entry, label=label.format(mos=mos_label), better=better)
    out = {}
    if "perplexity" in view:
        p = view["perplexity"]
        out["log_perplexity"] = aggregate_entry("log-perplexity of ASR transcript (NLL/token, corpus)",
                                                math.log(p["value"]), math.log(p["low"]), math.log(p["high"]),
                                                p["n"], "lower", p.get("note", ""))
        out["perplexity"] = view.pop("perplexity")
    lm = [r for r in records if r.get("lm_tokens")]
    if lm:
        per = [float(r["lm_nll"]) / int(r["lm_tokens"]) for r in lm]
        out["mean_log_perplexity"] = aggregate_entry("log-perplexity, mean over utterances",
                                                     *M.bootstrap_ci(per, **kw), len(lm), "lower")
        out["mean_perplexity"] = aggregate_entry("perplexity, mean over utterances",
                                                 *M.bootstrap_ci(np.exp(per), **kw), len(lm), "lower")
    out.update({k: v for k, v in view.items() if k != "text_speech_wer"})
    usable = [r for r in records if r.get("prompt_wer_edits") is not None]
    kept = [r for r in usable if int(r["prompt_wer_ref_words"]) > 0]
    if kept:
        est, lo, hi = M.bootstrap_ratio_ci([int(r["prompt_wer_edits"]) for r in kept],
                                           [int(r["prompt_wer_ref_words"]) for r in kept], **kw)
        note = "" if len(kept) == len(usable) else f"{len(usable) - len(kept)} with no reference words left out"
        out["prompt_wer"] = aggregate_entry("WER of the model's prompt transcript", est, lo, hi, len(kept), "lower",
                                            note)
    if "text_speech_wer" in view:
        out["text_speech_wer"] = view["text_speech_wer"]
        cut = [r for r in records if _lost_words_to_the_cut(r)]
        if cut:
            note = (f"{len(cut)} generations cut by their budget: the words spoken before the cut (as for a "
                    "cut reference)")
            out["text_speech_wer"] = dict(out["text_speech_wer"], note="; ".join(
                n for n in (out["text_speech_wer"].get("note"), note) if n))
        whole = [r["speech"]["generated"] for r in records
                 if (r["speech"].get("generated") or {}).get("wer_whole_ref_words")]
        if whole:
            est, lo, hi = M.bootstrap_ratio_ci([g["wer_whole_edits"] for g in whole],
                                               [g["wer_whole_ref_words"] for g in whole], **kw)
            out["text_speech_wer_whole"] = aggregate_entry(
                "WER of ASR(generated speech) vs the model's whole text continuation (words past a cut count "
                "as deleted)", est, lo, hi, len(whole), "lower")
    timed = [b for b in batches if b.get("frames") and b.get("frames_s", 0) > 0]
    if timed:
        est, lo, hi = M.bootstrap_ratio_ci([b["frames"] for b in timed], [b["frames_s"] for b in timed], **kw)
        out["frames_per_second"] = aggregate_entry("generation speed, frames/s (n = batches)", est, lo, hi,
                                                   len(timed), "higher")
        est, lo, hi = M.bootstrap_ratio_ci([b["total_s"] for b in timed], [b["audio_s"] for b in timed], **kw)
        out["real_time_factor"] = aggregate_entry("real-time factor, compute s / audio s (n = batches)", est, lo,
                                                  hi, len(timed), "lower")
    return out
