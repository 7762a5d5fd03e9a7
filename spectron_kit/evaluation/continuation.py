"""Speech-continuation evaluation (SPECTRON.md section 5; the paper's Table 1/3).

For every utterance of a manifest the first ``prompt_seconds`` of audio are the
prompt and the rest is the reference continuation. The model reads the prompt
and, in one decoding pass, writes the prompt's transcript, its text
continuation, then spectrogram frames that the vocoder turns into audio.

Per utterance this module measures:

(a) the text-LM negative log-likelihood of the ASR transcript of the generated
    continuation (log-perplexity = NLL per token, and perplexity);
(b) speaker similarity cosine(prompt, generated), next to two baselines
    computed the same way: cosine(prompt, reference continuation) and
    cosine(prompt, the reference continuation of a random other speaker);
(c) predicted MOS of the generated and of the reference continuation;
(d) WER of the model's own transcript of the prompt;
(e) WER between the ASR transcript of the generated speech and the model's
    own text continuation (does the speech say what the text says);
(f) generation speed (frames per second, real-time factor).

and :func:`aggregate_records` turns the records into corpus values with 95%
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

from spectron_kit.evaluation import metrics as M

logger = logging.getLogger(__name__)

__all__ = [
    "LENGTH_RULES",
    "MIN_CONTINUATION_SECONDS",
    "PROTOCOL_CONTROLS",
    "check_protocol",
    "reference_prompt_words",
    "split_model_text",
    "choose_other_speaker",
    "select_rows",
    "evaluate_continuation",
    "aggregate_records",
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
                                 "a number of seconds > 0, or null (as much as fits in the LM context)"),
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


def choose_other_speaker(speakers, seed=0):
    """For each item, pick another item spoken by a different speaker.

    Arguments:
        speakers: speaker id per item (``""`` or ``None`` = unknown: such
            items neither get nor serve as a baseline).
        seed: seed of the ``random.Random`` that picks, so the choice is
            reproducible.

    Returns:
        list with, per item, the index of the chosen item, or ``None`` when no
        item of a different (known) speaker exists.

    Example:
        >>> choose_other_speaker(["a", "a", "b"], seed=0)
        [2, 2, 0]
        >>> choose_other_speaker(["a", "a"])
        [None, None]
    """
    rng = random.Random(seed)
    known = [i for i, s in enumerate(speakers) if s not in ("", None)]
    out = []
    for i, spk in enumerate(speakers):
        if spk in ("", None):
            out.append(None)
            continue
        candidates = [j for j in known if speakers[j] != spk]
        out.append(rng.choice(candidates) if candidates else None)
    return out


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
    eligible = [r for r in rows
                if float(r["duration"]) >= float(prompt_seconds) + min_continuation_seconds - 1e-9]
    n_short = len(rows) - len(eligible)
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


def _mos_label(predictor):
    label = str(getattr(predictor, "label", "") or "predicted MOS")
    return label if "predicted" in label.lower() else f"predicted MOS ({label})"


def _safe_name(utt_id):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(utt_id)) or "utt"


def _np(wav):
    if wav is None:
        return np.zeros(0, dtype=np.float32)
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().float().numpy()
    return np.asarray(wav, dtype=np.float32).reshape(-1)


def _load(row, sample_rate):
    try:
        from spectron_kit.data.manifest import load_segment
    except ImportError:  # pragma: no cover - manifest helpers missing
        from spectron_kit.audio import load_audio

        return load_audio(row["path"], sample_rate, float(row.get("start", 0) or 0), float(row.get("end", -1)))
    return load_segment(row, sample_rate)


def _n_frames(model, n_samples):
    """Frames the frontend makes of ``n_samples`` (without computing them)."""
    if not n_samples:
        return 0
    if hasattr(model.frontend, "num_frames"):
        return int(model.frontend.num_frames(int(n_samples)))
    return int(n_samples) // int(model.frontend.spec.hop_length) + 1


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


def _progress(enabled, total, description):
    """A rich progress bar (or a no-op stand-in)."""
    if not enabled:
        class _Off:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def advance(self, n=1):
                pass

        return _Off()
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    class _Bar:
        def __enter__(self):
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn())
            self.progress.__enter__()
            self.task = self.progress.add_task(description, total=total)
            return self

        def __exit__(self, *exc):
            return self.progress.__exit__(*exc)

        def advance(self, n=1):
            self.progress.advance(self.task, n)

    return _Bar()


# ---------------------------------------------------------------------------
# the evaluation loop


@torch.no_grad()
def evaluate_continuation(model, rows, *, transcriber, lm_scorer, speaker_encoder, mos_predictor,
                          prompt_seconds=3.0, length_rule="reference", fixed_seconds=None,
                          max_continuation_seconds=None, num_utterances=None, seed=0, do_sample=False, temperature=1.0, top_k=0,
                          top_p=1.0, batch_size=4, out_dir, num_samples=None, n_resamples=1000,
                          progress=True):
    """Run the speech-continuation protocol on manifest rows.

    Arguments:
        model: a ``SpectronModel`` with a vocoder (e.g. from ``from_pretrained``).
        rows: manifest rows (``spectron_kit.data.manifest.read_manifest``).
        transcriber, lm_scorer, speaker_encoder, mos_predictor: evaluation
            components (``docs/COMPONENTS.md``).
        prompt_seconds: prompt length (paper: 3 s).
        length_rule: "reference" (as many frames as the reference
            continuation), "fixed" (``fixed_seconds`` of frames) or "stop"
            (the model's stop head, capped at ``fixed_seconds`` or, when that
            is None, the model's ``max_seconds``).
        fixed_seconds: length for the "fixed" rule, cap for "stop".
        max_continuation_seconds: cut reference continuations (and the
            frame budget) to this length. Whatever the value, no item is given
            more frames than fit in the LM context after its prefix and a full
            text budget; a reference continuation longer than its budget is
            cut to the same length, so references and generations compare like
            for like (the count is in ``counts["truncated"]``).
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
        ``records`` (one dict per utterance), ``batches`` (timing per
        ``generate`` call), ``aggregates`` (see :func:`aggregate_records`)
        and ``counts`` (rows given, skipped as too short, evaluated, ...).
    """
    check_protocol(prompt_seconds=prompt_seconds, length_rule=length_rule, fixed_seconds=fixed_seconds,
                   max_continuation_seconds=max_continuation_seconds, num_utterances=num_utterances, num_samples=num_samples, seed=seed, do_sample=do_sample,
                   temperature=temperature, top_k=top_k, top_p=top_p, batch_size=batch_size,
                   n_resamples=n_resamples)
    if length_rule == "fixed" and fixed_seconds is None:
        raise ValueError("length_rule='fixed' needs fixed_seconds (e.g. fixed_seconds=4.0)")
    if length_rule == "stop" and getattr(model, "stop_head", None) is None:
        raise ValueError("length_rule='stop' needs a model trained with a stop head; "
                         "use length_rule='reference' or 'fixed'")
    if model.vocoder is None:
        raise ValueError("the model has no vocoder, so no audio can be evaluated; load it with "
                         "SpectronModel.from_pretrained(dir, vocoder=build('vocoder', ...))")
    out_dir = Path(out_dir)
    samples_dir = out_dir / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    selected, n_short = select_rows(rows, prompt_seconds, num_utterances, seed)
    if n_short:
        logger.info("skipped %d of %d utterances shorter than the %.1f s prompt + %.1f s",
                    n_short, len(rows), prompt_seconds, MIN_CONTINUATION_SECONDS)
    if not selected:
        raise ValueError(f"no utterance is at least {prompt_seconds + MIN_CONTINUATION_SECONDS:g} s long "
                         f"({len(rows)} given); use longer utterances or a shorter prompt_seconds")

    sr = model.frontend.spec.sample_rate
    frame_rate = float(model.frame_rate)
    stop = "stop_head" if length_rule == "stop" else "budget"
    cap_seconds = fixed_seconds if fixed_seconds is not None else model.max_seconds
    mos_label = _mos_label(mos_predictor)
    records, batches = [], []
    prompt_embs, gen_embs, ref_embs = [], [], []
    n_prompt = int(round(prompt_seconds * sr))
    hop = int(model.frontend.spec.hop_length)
    n_truncated = 0

    with _progress(progress, len(selected), "continuation") as bar:
        for b, start in enumerate(range(0, len(selected), batch_size)):
            chunk = selected[start:start + batch_size]
            wavs = [_load(row, sr) for row in chunk]
            prompts = [w[:n_prompt] for w in wavs]
            refs = [w[n_prompt:] for w in wavs]
            prompt_wav = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True)
            prompt_lens = torch.tensor([len(p) for p in prompts], dtype=torch.long)
            _, prefix_lens = model.encode_prompt(prompt_wav.to(model.device), prompt_lens.to(model.device))
            limits = frames_that_fit(model, prefix_lens.tolist())
            if max_continuation_seconds is not None:
                limits = [min(n, int(round(max_continuation_seconds * frame_rate))) for n in limits]
            truncated = [False] * len(chunk)
            for i, limit in enumerate(limits):
                if _n_frames(model, len(refs[i])) > limit:  # cut to `limit` frames
                    refs[i] = refs[i][: max(limit - 1, 0) * hop]
                    truncated[i] = True
                    n_truncated += 1
            ref_frames = [_frames(model, r) for r in refs]
            prompt_frames = [_frames(model, p) for p in prompts]
            if length_rule == "reference":
                budget = [len(f) for f in ref_frames]
            else:
                budget = [min(int(round(cap_seconds * frame_rate)), n) for n in limits]
            torch.manual_seed(int(seed) + b)
            t0 = time.perf_counter()
            out = model.generate(prompt_wav, prompt_lens, num_frames=torch.tensor(budget), stop=stop,
                                 do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
            wall = time.perf_counter() - t0
            gen_sr = int(out.sample_rate)
            gens = [_np(w) for w in (out.waveforms or [None] * len(chunk))]
            timing = dict(out.timing)
            timing.update(batch=b, items=len(chunk), wall_s=wall,
                          audio_s=sum(len(f) for f in out.frames) / frame_rate)
            batches.append(timing)

            # evaluation components, batched over this chunk
            ref_np = [_np(r) for r in refs]
            prompt_np = [_np(p) for p in prompts]
            asr = transcriber.transcribe(gens, gen_sr)
            scores = lm_scorer.score([M.normalize_text(t) for t in asr])
            nonempty = [i for i, g in enumerate(gens) if g.size >= gen_sr // 10]
            emb_p = np.asarray(speaker_encoder.embed(prompt_np, sr))
            emb_r = np.asarray(speaker_encoder.embed(ref_np, sr))
            emb_g = np.full_like(emb_p, np.nan)
            if nonempty:
                emb_g[nonempty] = np.asarray(speaker_encoder.embed([gens[i] for i in nonempty], gen_sr))
            mos_g = [float("nan")] * len(chunk)
            if nonempty:
                for i, v in zip(nonempty, mos_predictor.predict([gens[i] for i in nonempty], gen_sr)):
                    mos_g[i] = float(v)
            mos_r = [float(v) for v in mos_predictor.predict(ref_np, sr)]

            for i, row in enumerate(chunk):
                ref_prompt, ref_source = reference_prompt_words(row, prompt_seconds)
                hyp_prompt, model_cont = split_model_text(out.text[i], len(ref_prompt))
                p_counts = M.word_error_counts(ref_prompt, hyp_prompt, normalize=False)
                asr_words = M.normalize_text(asr[i]).split()
                c_counts = M.word_error_counts(model_cont, asr_words, normalize=False)
                nll, n_tok = float(scores[i]["nll"]), int(scores[i]["n_tokens"])
                sim_g = float(M.cosine_similarity(emb_p[i], emb_g[i])) if i in nonempty else None
                record = {
                    "id": row["id"], "speaker": str(row.get("speaker", "")), "batch": b,
                    "duration": float(row["duration"]),
                    "prompt_seconds": len(prompts[i]) / sr, "reference_seconds": len(refs[i]) / sr,
                    "generated_seconds": len(gens[i]) / gen_sr if gen_sr else 0.0,
                    "reference_frames": len(ref_frames[i]), "generated_frames": len(out.frames[i]),
                    "reference_truncated": truncated[i],
                    "stopped_by": out.stopped_by[i],
                    "reference_text": M.normalize_text(row.get("text", "")),
                    "reference_prompt_text": " ".join(ref_prompt), "reference_prompt_source": ref_source,
                    "model_text": out.text[i],
                    "model_prompt_transcript": " ".join(hyp_prompt),
                    "model_continuation_text": " ".join(model_cont),
                    "asr_generated": " ".join(asr_words),
                    "lm_nll": nll, "lm_tokens": n_tok,
                    "log_perplexity": nll / n_tok if n_tok else None,
                    "perplexity": math.exp(nll / n_tok) if n_tok else None,
                    "speaker_sim_generated": sim_g,
                    "speaker_sim_reference": float(M.cosine_similarity(emb_p[i], emb_r[i])),
                    "speaker_sim_other_speaker": None, "other_speaker_id": None,
                    "mos_generated": None if math.isnan(mos_g[i]) else mos_g[i],
                    "mos_reference": None if math.isnan(mos_r[i]) else mos_r[i],
                    "prompt_wer_edits": p_counts["edits"], "prompt_wer_ref_words": p_counts["n_ref"],
                    "prompt_wer": p_counts["edits"] / p_counts["n_ref"] if p_counts["n_ref"] else None,
                    "text_speech_wer_edits": c_counts["edits"],
                    "text_speech_wer_ref_words": c_counts["n_ref"],
                    "text_speech_wer": c_counts["edits"] / c_counts["n_ref"] if c_counts["n_ref"] else None,
                    "samples": {},
                }
                if num_samples is None or len(records) < num_samples:
                    record["samples"] = _save_samples(samples_dir, row["id"], prompts[i], refs[i], gens[i], sr,
                                                      gen_sr, prompt_frames[i], ref_frames[i], out.frames[i],
                                                      frame_rate)
                records.append(record)
                prompt_embs.append(emb_p[i])
                ref_embs.append(emb_r[i])
                gen_embs.append(emb_g[i])
            bar.advance(len(chunk))

    # (b) baseline: the prompt against another speaker's reference continuation
    others = choose_other_speaker([r["speaker"] for r in records], seed)
    n_no_other = 0
    for i, j in enumerate(others):
        if j is None:
            n_no_other += 1
            continue
        records[i]["other_speaker_id"] = records[j]["id"]
        records[i]["speaker_sim_other_speaker"] = float(M.cosine_similarity(prompt_embs[i], ref_embs[j]))
    if n_no_other:
        logger.warning("%d utterances have no utterance of a different (known) speaker to compare with; "
                       "their other-speaker baseline is left out", n_no_other)

    config = {"prompt_seconds": prompt_seconds, "length_rule": length_rule, "fixed_seconds": fixed_seconds,
              "max_continuation_seconds": max_continuation_seconds, "lm_context": lm_context_length(model),
              "num_utterances": num_utterances, "num_samples": num_samples, "seed": seed,
              "do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p,
              "batch_size": batch_size, "n_resamples": n_resamples, "stop": stop,
              "frame_budget_seconds": None if length_rule == "reference" else cap_seconds,
              "min_continuation_seconds": MIN_CONTINUATION_SECONDS,
              "components": {"transcriber": component_description(transcriber),
                             "lm_scorer": component_description(lm_scorer),
                             "speaker_encoder": component_description(speaker_encoder),
                             "mos_predictor": component_description(mos_predictor)},
              "mos_label": mos_label,
              "model": {"sample_rate": sr, "frame_rate": frame_rate, "reduction_factor": model.r,
                        "parameters": model.num_parameters()}}
    counts = {"rows": len(rows), "too_short": n_short, "evaluated": len(records), "truncated": n_truncated,
              "prompt_text_from_alignments": sum(r["reference_prompt_source"] == "prompt_text" for r in records),
              "no_other_speaker": n_no_other,
              "empty_generation": sum(r["speaker_sim_generated"] is None for r in records)}
    aggregates = aggregate_records(records, batches, seed=seed, n_resamples=n_resamples, mos_label=mos_label)
    return {"config": config, "records": records, "batches": batches, "aggregates": aggregates,
            "counts": counts}


def _save_samples(folder, utt_id, prompt, ref, gen, sr, gen_sr, prompt_frames, ref_frames, gen_frames,
                  frame_rate):
    """Write prompt/reference/generated wavs and a spectrogram PNG; return paths relative to out_dir."""
    from spectron_kit.audio import save_audio
    from spectron_kit.plotting import plot_spectrograms

    name = _safe_name(utt_id)
    paths = {"prompt": f"{name}_prompt.wav", "reference": f"{name}_reference.wav",
             "generated": f"{name}_generated.wav", "spectrogram": f"{name}_spectrogram.png"}
    save_audio(folder / paths["prompt"], prompt, sr)
    save_audio(folder / paths["reference"], ref, sr)
    save_audio(folder / paths["generated"], gen if len(gen) else np.zeros(1, np.float32), gen_sr)
    panels = [("prompt", prompt_frames), ("reference continuation", ref_frames),
              ("generated continuation", gen_frames)]
    if any(len(f) for _, f in panels):
        plot_spectrograms(panels, folder / paths["spectrogram"], frame_rate=frame_rate, title=str(utt_id))
    else:
        del paths["spectrogram"]
    return {k: f"samples/{v}" for k, v in paths.items()}


# ---------------------------------------------------------------------------
# aggregation


def _values(records, key):
    return [float(r[key]) for r in records if r.get(key) is not None and not math.isnan(float(r[key]))]


def _entry(label, est, low, high, n, better, note=""):
    return {"label": label, "value": est, "low": low, "high": high, "n": n, "better": better, "note": note}


def aggregate_records(records, batches=(), seed=0, n_resamples=1000, confidence=0.95,
                      mos_label="predicted MOS"):
    """Corpus values with percentile-bootstrap intervals from per-utterance records.

    Ratios (corpus log-perplexity, WERs) resample utterances and recompute
    the ratio of sums; means resample utterances; speed resamples batches.

    Arguments:
        records: per-utterance dicts from :func:`evaluate_continuation`.
        batches: timing dicts per ``generate`` call.
        seed: bootstrap seed.
        n_resamples: bootstrap resamples.
        confidence: interval coverage.
        mos_label: label of the MOS predictor (always "predicted ...").

    Returns:
        dict metric key -> ``{label, value, low, high, n, better, note}``
        (``better`` is "lower", "higher" or "" for baselines and context);
        metrics with no usable values are left out.

    Example:
        >>> recs = [{"lm_nll": 4.0, "lm_tokens": 2, "prompt_wer_edits": 1, "prompt_wer_ref_words": 4},
        ...         {"lm_nll": 2.0, "lm_tokens": 2, "prompt_wer_edits": 0, "prompt_wer_ref_words": 4}]
        >>> agg = aggregate_records(recs)
        >>> agg["log_perplexity"]["value"], agg["prompt_wer"]["value"], agg["prompt_wer"]["n"]
        (1.5, 0.125, 2)
    """
    kw = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    out = {}
    lm = [r for r in records if r.get("lm_tokens")]
    if lm:
        nll = [float(r["lm_nll"]) for r in lm]
        tok = [int(r["lm_tokens"]) for r in lm]
        est, lo, hi = M.bootstrap_ratio_ci(nll, tok, **kw)
        out["log_perplexity"] = _entry("log-perplexity of ASR transcript (NLL/token, corpus)",
                                       est, lo, hi, len(lm), "lower")
        out["perplexity"] = _entry("perplexity of ASR transcript (corpus)", math.exp(est), math.exp(lo),
                                   math.exp(hi), len(lm), "lower")
        per = [a / b for a, b in zip(nll, tok)]
        out["mean_log_perplexity"] = _entry("log-perplexity, mean over utterances",
                                            *M.bootstrap_ci(per, **kw), len(lm), "lower")
        out["mean_perplexity"] = _entry("perplexity, mean over utterances",
                                        *M.bootstrap_ci(np.exp(per), **kw), len(lm), "lower")
    for key, label, better in (
            ("speaker_sim_generated", "speaker similarity: prompt vs generated", "higher"),
            ("speaker_sim_reference", "baseline: prompt vs ground-truth continuation", ""),
            ("speaker_sim_other_speaker", "baseline: prompt vs another speaker's continuation", ""),
            ("mos_generated", f"{mos_label}: generated", "higher"),
            ("mos_reference", f"{mos_label}: reference continuation", "")):
        values = _values(records, key)
        if values:
            out[key] = _entry(label, *M.bootstrap_ci(values, **kw), len(values), better)
    for key, label in (("prompt_wer", "WER of the model's prompt transcript"),
                       ("text_speech_wer", "WER of ASR(generated speech) vs the model's text continuation")):
        usable = [r for r in records if r.get(f"{key}_edits") is not None]
        den = [int(r[f"{key}_ref_words"]) for r in usable]
        if sum(den):
            num = [int(r[f"{key}_edits"]) for r in usable]
            kept = [i for i, d in enumerate(den) if d > 0]
            est, lo, hi = M.bootstrap_ratio_ci([num[i] for i in kept], [den[i] for i in kept], **kw)
            note = "" if len(kept) == len(usable) else f"{len(usable) - len(kept)} with no reference words left out"
            out[key] = _entry(label, est, lo, hi, len(kept), "lower", note)
    timed = [b for b in batches if b.get("frames") and b.get("frames_s", 0) > 0]
    if timed:
        est, lo, hi = M.bootstrap_ratio_ci([b["frames"] for b in timed], [b["frames_s"] for b in timed], **kw)
        out["frames_per_second"] = _entry("generation speed, frames/s (n = batches)", est, lo, hi, len(timed),
                                          "higher")
        est, lo, hi = M.bootstrap_ratio_ci([b["total_s"] for b in timed], [b["audio_s"] for b in timed], **kw)
        out["real_time_factor"] = _entry("real-time factor, compute s / audio s (n = batches)", est, lo, hi,
                                         len(timed), "lower")
    return out
