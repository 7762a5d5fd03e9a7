"""Scorers: every metric of the continuation protocol as a registered component (kind ``scorer``).

A scorer sees one batch of the protocol (:class:`ScoringBatch`: the audio and
frames of every condition, the prompts, the words each condition should say,
the manifest rows) and returns one record per utterance, ``{condition: value}``.
``evaluate_continuation`` merges them into each utterance's ``speech`` record,
aggregates every scorer the same way (:func:`aggregate_scores`: per condition,
a mean or a ratio of sums with a 95% bootstrap interval; ``results.json`` ->
``speech``) and the report prints one table over all of them. The paper's own
metrics are scorers like any other:

========================  ============  =================================================
name                      key           what
========================  ============  =================================================
``asr_wer``               wer           ASR WER against the words the audio should say
``asr_perplexity``        perplexity    text-LM perplexity of the ASR transcript
``speaker_similarity``    speaker_sim   cosine(prompt, audio) of speaker embeddings,
                                        plus the other-speaker floor
``predicted_mos``         mos           predicted naturalness
``frame_distance``        frame_l1      mean absolute difference to the true continuation's frames
``frame_ctc_wer``         frame_wer     WER of the mini CTC recogniser reading the frames
========================  ============  =================================================

A new metric is one registered class and one line in ``evaluate.yaml``'s
``scorers`` list (a plugin registers it through ``register_scorers``). The
scorer contract (``docs/COMPONENTS.md``):

- ``score(batch) -> list[dict[condition, value]]``: one dict per utterance; a
  value is a number, None (not measurable: left out and not counted), or a
  dict holding ``key`` plus details kept in the record (e.g. the transcript).
- attributes ``label``, ``better`` ("lower", "higher" or "" for context),
  ``key`` (the value's name; default the registry name), ``percent`` (report
  as a percentage), ``aggregate``: ``"mean"`` (default) or ``"ratio"``: the
  corpus value is ``sum(record[numerator]) / sum(record[denominator])``
  (WER, perplexity), optionally passed through ``transform`` (``math.exp``);
  utterances whose denominator is 0 are left out and counted in a note
  naming ``unit`` ("3 with no reference words left out").
- ``needs_audio = False`` for a scorer that reads frames only: when no scorer
  needs audio, nothing is vocoded (``audio`` is empty) and the conditions
  are those made of frames.
- optional ``start()`` before the first batch and ``finish(seed) ->
  list[dict[condition, value]]`` after the last, one dict per evaluated
  utterance in order: for baselines that need the whole test set (the
  other-speaker floor of speaker similarity).
- constructor arguments named like the evaluation components
  (``transcriber``, ``lm_scorer``, ``speaker_encoder``, ``mos_predictor``) are
  given those components (:func:`build_scorers`).

Example:
    >>> import numpy as np, torch
    >>> batch = ScoringBatch(sample_rate=16000, conditions=("vocoded", "generated"),
    ...     audio={"vocoded": [np.zeros(160)], "generated": [np.zeros(320)]},
    ...     frames={"vocoded": [torch.zeros(4, 2)], "generated": [torch.ones(6, 2)]},
    ...     reference_frames=[torch.zeros(4, 2)], prompts=[np.zeros(10)],
    ...     texts={"vocoded": [["a"]], "generated": [["b"]]}, rows=[{"id": "u1"}], model_text=["a b"])
    >>> FrameDistance().score(batch)
    [{'vocoded': 0.0, 'generated': 1.0}]
"""
import dataclasses
import inspect
import math
import random

import numpy as np
import torch

from spectron_kit.evaluation import metrics as M
from spectron_kit.hookspecs import hookimpl

__all__ = ["ScoringBatch", "AsrWer", "AsrPerplexity", "SpeakerSimilarity", "PredictedMos", "FrameDistance", "FrameCtcWer",
           "EVALUATION_COMPONENTS", "build_scorers", "scorer_name",
           "scorer_key", "scorer_info", "check_scorers", "aggregate_scores", "choose_other_speaker"]

#: evaluation components a scorer may ask for by naming them in its constructor
EVALUATION_COMPONENTS = ("transcriber", "lm_scorer", "speaker_encoder", "mos_predictor")
#: audio shorter than this (seconds) has no speaker embedding or MOS
MIN_SCORED_SECONDS = 0.1


@dataclasses.dataclass
class ScoringBatch:
    """What a scorer sees of one batch (lists are per utterance, in batch order).

    Attributes:
        sample_rate: of every waveform.
        conditions: the conditions of the protocol, e.g. ``("reference", "vocoded",
            "teacher_forced", "generated", "flat")``.
        audio: condition -> waveforms (float numpy).
        frames: condition -> feature frames ``[T, n_mels]`` (conditions made from frames).
        reference_frames: frames of the true continuation.
        prompts: prompt waveforms.
        texts: condition -> the words the condition should say (the reference
            continuation, or the model's own text for the generated speech).
        rows: the manifest rows.
        model_text: the model's whole text (prompt transcript + continuation).
    """

    sample_rate: int
    conditions: tuple
    audio: dict
    frames: dict
    reference_frames: list
    prompts: list
    texts: dict
    rows: list
    model_text: list
    cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def transcripts(self, transcriber):
        """Condition -> normalised ASR transcripts, computed once per batch and transcriber.

        Scorers that read the same transcriber (WER and perplexity) share one transcription.
        """
        key = ("transcripts", id(transcriber))
        if key not in self.cache:
            self.cache[key] = {cond: [M.normalize_text(t) for t in transcriber.transcribe(wavs, self.sample_rate)]
                               for cond, wavs in self.audio.items()}
        return self.cache[key]

    def map_scored(self, cond, fn):
        """``fn(waveforms)`` on the ``cond`` audio long enough for an embedding or a MOS (one call), per utterance.

        Returns one result per utterance in batch order, None for audio under
        :data:`MIN_SCORED_SECONDS`.
        """
        items = [i for i, wav in enumerate(self.audio[cond]) if wav.size >= self.sample_rate * MIN_SCORED_SECONDS]
        out = [None] * len(self.audio[cond])
        if items:
            for i, value in zip(items, fn([self.audio[cond][i] for i in items])):
                out[i] = value
        return out


class AsrWer:
    """ASR WER of each condition against the words it should say.

    The reference continuation's words for the reference audio, the vocoded
    reference, the teacher-forced frames and the floor; the model's own text
    continuation for its generated speech (does the speech say what the text says).
    The record keeps the transcript (``asr``) and the expected words.
    """

    key = "wer"
    label = "ASR WER vs the text it should say"
    better = "lower"
    percent = True
    aggregate, numerator, denominator, unit = "ratio", "wer_edits", "wer_ref_words", "reference words"

    def __init__(self, transcriber):
        self.transcriber = transcriber

    def score(self, batch):
        heard = batch.transcripts(self.transcriber)
        out = [{} for _ in batch.rows]
        for cond in batch.conditions:
            for i, text in enumerate(heard[cond]):
                expected = batch.texts[cond][i]
                edits, n_ref = M.word_errors(expected, text.split(), normalize=False)
                out[i][cond] = {"wer": edits / n_ref if n_ref else None, "wer_edits": edits,
                                "wer_ref_words": n_ref, "asr": text, "expected": " ".join(expected)}
        return out


class AsrPerplexity:
    """Text-LM perplexity of each condition's ASR transcript (the paper's Table 1 metric).

    Per utterance the summed NLL and the token count; the corpus value is
    ``exp(sum NLL / sum tokens)``. An empty transcript (nothing heard) has no
    perplexity: it is left out of the corpus value and counted in its note, so
    a condition where nothing is heard gets no perplexity at all.
    """

    key = "perplexity"
    label = "perplexity of the ASR transcript"
    better = "lower"
    aggregate, numerator, denominator, unit = "ratio", "lm_nll", "lm_tokens", "words in the ASR transcript"
    transform = staticmethod(math.exp)

    def __init__(self, transcriber, lm_scorer):
        self.transcriber, self.lm_scorer = transcriber, lm_scorer

    def score(self, batch):
        heard = batch.transcripts(self.transcriber)
        out = [{} for _ in batch.rows]
        for cond in batch.conditions:
            texts = heard[cond]
            scored = self.lm_scorer.score([t for t in texts if t.strip()])
            for i, text in enumerate(texts):
                if not text.strip():  # nothing heard: no perplexity (it would be the LM's end-of-text cost),
                    out[i][cond] = {"perplexity": None, "lm_nll": 0.0, "lm_tokens": 0, "empty_transcript": True}
                    continue          # left out of the corpus value and counted in its note
                s = scored.pop(0)
                nll, n_tok = float(s["nll"]), int(s["n_tokens"])
                out[i][cond] = {"perplexity": math.exp(nll / n_tok) if n_tok else None,
                                "lm_nll": nll, "lm_tokens": n_tok}
        return out


class SpeakerSimilarity:
    """Cosine similarity between the speaker embeddings of the prompt and of each condition's audio.

    ``finish`` adds the floor ``other_speaker``: each prompt against the
    reference continuation of an utterance of another speaker, drawn with the
    evaluation seed among the evaluated utterances (:func:`choose_other_speaker`).
    Audio shorter than 0.1 s gets None.
    """

    key = "speaker_sim"
    label = "speaker similarity to the prompt"
    better = "higher"

    def __init__(self, speaker_encoder):
        self.speaker_encoder = speaker_encoder
        self._seen = []  # (utterance id, speaker, prompt embedding, reference embedding or None) per utterance

    def start(self):
        self._seen = []

    def score(self, batch):
        sr = batch.sample_rate
        prompts = np.asarray(self.speaker_encoder.embed(batch.prompts, sr))
        out = [{} for _ in batch.rows]
        refs = [None] * len(batch.rows)
        for cond in batch.conditions:
            embs = batch.map_scored(cond, lambda wavs: np.asarray(self.speaker_encoder.embed(wavs, sr)))
            for i, emb in enumerate(embs):
                out[i][cond] = None if emb is None else float(M.cosine_similarity(prompts[i], emb))
            if cond == "reference":
                refs = embs
        for i, row in enumerate(batch.rows):
            self._seen.append((row.get("id"), str(row.get("speaker", "")), prompts[i], refs[i]))
        return out

    def finish(self, seed=0):
        seen, self._seen = self._seen, []
        others = choose_other_speaker([speaker for _, speaker, _, _ in seen], seed)
        out = []
        for i, j in enumerate(others):
            if j is None or seen[j][3] is None:
                out.append({})
                continue
            out.append({"other_speaker": {"speaker_sim": float(M.cosine_similarity(seen[i][2], seen[j][3])),
                                          "other_id": seen[j][0]}})
        return out


class PredictedMos:
    """A MOS predictor's naturalness score of each condition's audio (audio under 0.1 s gets None)."""

    key = "mos"
    better = "higher"

    def __init__(self, mos_predictor):
        self.mos_predictor = mos_predictor
        label = str(getattr(mos_predictor, "label", "") or "predicted MOS")
        self.label = label if "predicted" in label.lower() else f"predicted MOS ({label})"

    def score(self, batch):
        out = [{} for _ in batch.rows]
        for cond in batch.conditions:
            values = batch.map_scored(cond, lambda wavs: self.mos_predictor.predict(wavs, batch.sample_rate))
            for i, v in enumerate(values):
                out[i][cond] = None if v is None or math.isnan(float(v)) else float(v)
        return out


class FrameDistance:
    """Mean absolute difference between a condition's frames and the true continuation's frames.

    Normalised log-mel units, over the frames both have. 0 for the vocoded
    reference (its frames are the reference's); it tells how far teacher-forced
    and generated frames are from the truth (``tools/reconstruction_baselines.py``
    relates such distances to intelligibility).
    """

    key = "frame_l1"
    label = "frame L1 to the true continuation (normalised log-mel)"
    better = "lower"
    needs_audio = False

    def score(self, batch):
        out = []
        for i, ref in enumerate(batch.reference_frames):
            record = {}
            for cond in batch.conditions:
                frames = batch.frames.get(cond)
                if frames is None:
                    continue
                got = torch.as_tensor(frames[i]).float()
                n = min(len(got), len(ref))
                record[cond] = float((got[:n] - torch.as_tensor(ref[:n]).float()).abs().mean()) if n else None
            out.append(record)
        return out


class FrameCtcWer:
    """WER of an in-domain CTC recogniser reading each condition's frames directly (no vocoder, no ASR model).

    The mini recipe's own character CTC model (the encoder's pre-training,
    ``<pretrained_folder>/ctc``) transcribes the frames of the vocoded
    reference (the true frames: its ceiling), the teacher-forced and the
    generated frames and the flat floor: a yardstick that runs in seconds, for
    judging a change before the slower vocoder + Whisper protocol. Its
    recogniser was trained on 3 s prompts of the training voices.

    Arguments:
        source: the folder written by the encoder pre-training (``ctc_config.json``).
    """

    key = "frame_wer"
    label = "in-domain CTC WER of the frames"
    better = "lower"
    percent = True
    aggregate, numerator, denominator, unit = "ratio", "frame_wer_edits", "frame_wer_ref_words", "reference words"
    needs_audio = False

    def __init__(self, source):
        from spectron_kit.ctc import CTCSpeechRecognizer

        if not source:
            raise ValueError("scorer frame_ctc_wer needs the CTC recogniser's folder: set frame_ctc_source "
                             "(the mini setup's is data/mini_corpus/pretrained/<seed>/ctc)")
        self.source = str(source)
        self.recognizer = CTCSpeechRecognizer.from_pretrained(source)

    def score(self, batch):
        out = [{} for _ in batch.rows]
        for cond, frames in batch.frames.items():
            if cond not in batch.conditions:
                continue
            for i, text in enumerate(self.recognizer.transcribe_features(frames)):
                expected, heard = batch.texts[cond][i], M.normalize_text(text)
                edits, n_ref = M.word_errors(expected, heard.split(), normalize=False)
                out[i][cond] = {"frame_wer": edits / n_ref if n_ref else None, "frame_wer_edits": edits,
                                "frame_wer_ref_words": n_ref, "frame_asr": heard}
        return out


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


# ---------------------------------------------------------------------------
# building and describing scorers


def scorer_name(scorer):
    """The registry name of a scorer (its class name when it was not built through the registry)."""
    spec = getattr(scorer, "spectron_spec", None)
    return spec.name if spec is not None else type(scorer).__name__


def scorer_key(scorer):
    """The name of a scorer's value in records and results (``key``, else its registry name)."""
    return getattr(scorer, "key", None) or scorer_name(scorer)


def scorer_info(scorer):
    """What the report needs of a scorer: ``{name, key, label, better, percent, aggregate}``."""
    key = scorer_key(scorer)
    return {"name": scorer_name(scorer), "key": key, "label": str(getattr(scorer, "label", key)),
            "better": str(getattr(scorer, "better", "") or ""), "percent": bool(getattr(scorer, "percent", False)),
            "aggregate": str(getattr(scorer, "aggregate", "mean"))}


def check_scorers(scorers):
    """Check the scorers before any audio is made: methods, aggregation and distinct keys.

    Raises:
        ValueError: naming the scorer and what it lacks (one line).
    """
    seen = {}
    for scorer in scorers:
        name, key = scorer_name(scorer), scorer_key(scorer)
        if not callable(getattr(scorer, "score", None)):
            raise ValueError(f"scorer {name!r} has no score(batch) method; see docs/COMPONENTS.md (scorer)")
        how = getattr(scorer, "aggregate", "mean")
        if how not in ("mean", "ratio"):
            raise ValueError(f"scorer {name!r} has aggregate={how!r}; use 'mean' or 'ratio'")
        if how == "ratio" and not (getattr(scorer, "numerator", None) and getattr(scorer, "denominator", None)):
            raise ValueError(f"scorer {name!r} aggregates as a ratio but names no numerator/denominator fields")
        if key in seen:
            raise ValueError(f"scorers {seen[key]!r} and {name!r} both write {key!r}; give one another `key`")
        seen[key] = name


def build_scorers(names, options=None, **components):
    """Build registered scorers by name, giving each the evaluation components its constructor names.

    Arguments:
        names: scorer names (``evaluate.yaml``'s ``scorers``), or already built scorers.
        options: ``{scorer name: {argument: value}}`` for their other constructor
            arguments (``evaluate.yaml``'s ``scorer_options``); options of scorers not listed are ignored.
        **components: ``transcriber=``, ``lm_scorer=``, ``speaker_encoder=``, ``mos_predictor=``.

    Returns:
        list of scorers.

    Raises:
        ValueError: a scorer needs a component that was not given (one line naming both).

    Example:
        >>> [scorer_name(s) for s in build_scorers(["frame_distance"])]
        ['frame_distance']
    """
    from spectron_kit.registry import get_registry

    registry = get_registry()
    out = []
    for name in names or ():
        if not isinstance(name, str):
            out.append(name)
            continue
        factory = registry.get("scorer", name).factory
        params = inspect.signature(factory).parameters
        kwargs = {}
        for param in params.values():
            if param.name in EVALUATION_COMPONENTS:
                if components.get(param.name) is not None:
                    kwargs[param.name] = components[param.name]
                elif param.default is inspect.Parameter.empty:
                    raise ValueError(f"scorer {name!r} needs a {param.name}; set `{param.name}` in the "
                                     "evaluation YAML or leave the scorer out of `scorers`")
        for key, value in ((options or {}).get(name) or {}).items():
            if key not in params:
                raise ValueError(f"scorer {name!r} takes no option {key!r}; its arguments: "
                                 f"{', '.join(p for p in params if p not in EVALUATION_COMPONENTS) or 'none'}")
            kwargs[key] = value
        out.append(registry.build("scorer", name, **kwargs))
    check_scorers(out)
    return out


# ---------------------------------------------------------------------------
# aggregation


def aggregate_entry(label, est, low, high, n, better, note=""):
    """One row of an evaluation's aggregates: a labelled estimate with its interval and count."""
    return {"label": label, "value": est, "low": low, "high": high, "n": n, "better": better, "note": note}


def _number(value):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def aggregate_scores(records, scorers, conditions=(), seed=0, n_resamples=1000, confidence=0.95):
    """Every scorer on every condition, the same way: a corpus value with a percentile-bootstrap interval.

    A ``"mean"`` scorer: the mean over utterances whose value is not None. A
    ``"ratio"`` scorer: ``sum(numerator) / sum(denominator)`` over utterances
    with a positive denominator, resampling utterances and recomputing the
    ratio, then ``transform`` (e.g. ``exp`` for perplexity).

    Arguments:
        records: per-utterance dicts with ``speech``: condition -> ``{key: value, details...}``.
        scorers: the scorers that made them.
        conditions: report order of the conditions (others follow in the order seen).
        seed, n_resamples, confidence: bootstrap settings.

    Returns:
        dict condition -> key -> ``{label, value, low, high, n, better, note}``.

    Example:
        >>> recs = [{"speech": {"reference": {"wer": 0.25, "wer_edits": 1, "wer_ref_words": 4}}}]
        >>> agg = aggregate_scores(recs, [AsrWer(None)], n_resamples=10)
        >>> agg["reference"]["wer"]["value"], agg["reference"]["wer"]["n"]
        (0.25, 1)
    """
    kw = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    seen = dict.fromkeys(list(conditions) + [c for r in records for c in r.get("speech", {})])
    out = {}
    for cond in seen:
        items = [r["speech"][cond] for r in records if cond in r.get("speech", {})]
        entries = {}
        for scorer in scorers:
            info = scorer_info(scorer)
            key = info["key"]
            mine = [m for m in items if key in m]
            note = ""
            if info["aggregate"] == "ratio":
                used = [m for m in mine if m.get(scorer.denominator)]
                if not used:
                    continue
                if len(used) < len(mine):
                    unit = getattr(scorer, "unit", scorer.denominator)
                    note = f"{len(mine) - len(used)} with no {unit} left out"
                est, lo, hi = M.bootstrap_ratio_ci([float(m[scorer.numerator]) for m in used],
                                                   [float(m[scorer.denominator]) for m in used], **kw)
                transform = getattr(scorer, "transform", None)
                if transform is not None:
                    est, lo, hi = transform(est), transform(lo), transform(hi)
                n = len(used)
            else:
                values = [v for v in (_number(m[key]) for m in mine) if v is not None]
                if not values:
                    continue
                est, lo, hi = M.bootstrap_ci(values, **kw)
                n = len(values)
            entries[key] = aggregate_entry(info["label"], est, lo, hi, n, info["better"], note)
        if entries:
            out[cond] = entries
    return out


@hookimpl
def register_scorers(register):
    register("asr_wer", AsrWer, description="ASR WER of every condition vs the words it should say")
    register("asr_perplexity", AsrPerplexity,
             description="text-LM perplexity of every condition's ASR transcript (paper Table 1)")
    register("speaker_similarity", SpeakerSimilarity,
             description="cosine(prompt, audio) speaker similarity, plus the other-speaker floor")
    register("predicted_mos", PredictedMos, description="a MOS predictor's naturalness score per condition")
    register("frame_ctc_wer", FrameCtcWer,
             description="WER of the mini recipe's CTC recogniser reading the frames directly (fast, in-domain)")
    register("frame_distance", FrameDistance,
             description="mean |frames - true continuation frames| per condition (normalised log-mel)")
