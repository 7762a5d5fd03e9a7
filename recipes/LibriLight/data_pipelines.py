"""The data side of the LibriLight recipe: one split's rows, and the SpeechBrain pipelines of a
continuation item (prompt audio or its cached encoding, continuation audio, tokens, alignments, phoneme
events). ``train.dataio_prepare`` puts them together by what the loss terms require."""
import logging
import math
import random
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from spectron_kit.alignment import diagonal_centres, step_times, token_centres, token_spans
from spectron_kit.audio import narrowband, to_samples
from spectron_kit.data.manifest import (filter_for_continuation, load_segment, parse_phone_times, parse_word_times,
                                        read_manifest, start_at_word, to_speechbrain_data, validate_manifest)
from spectron_kit.features import FeatureSpec
from spectron_kit.phonemes import continuation_events
from spectron_kit.recipe import RecipeConfigError

logger = logging.getLogger(__name__)

NARROW_RATE = 8000  # the channel of narrow-band training prompts (telephone, 8 kHz recordings)


def prompt_audio(row, rate, samples):
    """A row's prompt: its first ``samples`` at ``rate``, through the row's ``prompt_rate`` channel when set."""
    wav = load_segment(row, target_sr=rate)[:samples]
    return narrowband(wav, rate, row["prompt_rate"]) if row.get("prompt_rate") else wav


#: data fields a loss term may require that are not per utterance: text-only batches (``text_rehearsal``)
REHEARSAL_FIELDS = ("rehearsal_tokens",)


class TextRehearsal:
    """Text-only batches for the ``text_rehearsal`` term: random lines of a text file (the LM's own text),
    tokenised with the model's tokenizer, drawn with their own seeded generator.

    Arguments:
        path: a text file, one sentence per line (the mini setup: the LM's pre-training text).
        tokenizer: the model's LM tokenizer (``encode(text) -> ids``).
        batch_size: sentences per batch.
        seed: the generator's seed.
        max_tokens: longer sentences are cut.
    """

    def __init__(self, path, tokenizer, batch_size, seed, max_tokens=64):
        try:
            lines = [line.strip().lower() for line in Path(path).read_text().splitlines() if line.strip()]
        except OSError as err:
            raise RecipeConfigError(f"--rehearsal_text={path}: cannot read it ({err.strerror}); give a text file, "
                                    "one sentence per line") from None
        if not lines:
            raise RecipeConfigError(f"--rehearsal_text={path}: no sentence in it; give a text file, one per line")
        self.lines, self.tokenizer = lines, tokenizer
        self.batch_size, self.max_tokens = int(batch_size), int(max_tokens)
        self.generator = torch.Generator().manual_seed(int(seed))
        logger.info("text rehearsal: %d sentences from %s, %d per batch", len(lines), path, self.batch_size)

    def batch(self):
        """``(tokens [B, N] padded with 0, lengths [B])``."""
        picks = torch.randint(len(self.lines), (self.batch_size,), generator=self.generator).tolist()
        ids = [list(self.tokenizer.encode(self.lines[i]))[: self.max_tokens] for i in picks]
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        tokens = torch.zeros(len(ids), max(1, int(lengths.max())), dtype=torch.long)
        for row, x in enumerate(ids):
            tokens[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        return tokens, lengths


def load_rows(hparams, manifests, names, limit, repeats=1, speakers=None, shifted=0, narrowband=0.0):
    """One split's items: the rows of manifests ``names`` with valid audio, long enough for a continuation and
    transcribed (the others counted in the log); the first ``limit``; only ``speakers`` (a lever); each
    ``repeats`` times an epoch (ids ``<id>#<k>``; ``utterance`` names the audio's own id); with ``shifted``
    (a fraction), that share of the aligned rows starts at a later word (:func:`with_shifted_prompts`); with
    ``narrowband`` (a fraction), that share of the prompts passes through an 8 kHz channel (``prompt_rate``,
    :func:`prompt_audio`; 0 for the others).
    Returns ``(DynamicItemDataset, rows)``."""
    rows = []
    for name in names:
        rows += [dict(row, split=name) for row in read_manifest(manifests[name])]
    if speakers:  # fewer training voices (a lever): only these speakers' utterances
        wanted = {str(s) for s in speakers}
        rows = [row for row in rows if str(row["speaker"]) in wanted]
        if not rows:
            raise RecipeConfigError(f"--train_speakers={list(speakers)}: no training utterance of these "
                                    "speakers; name speakers of the training manifests")
    rows, _ = validate_manifest(rows, target_sr=hparams["sample_rate"], progress=False)  # logs its own counts
    rows, _ = filter_for_continuation(rows, hparams["prompt_seconds"], hparams["min_continuation_seconds"])
    transcribed = [r for r in rows if r["text"]]
    if len(transcribed) < len(rows):
        logger.info("skipped %d of %d utterances without a transcript (pseudo-label them with "
                    "tools/pseudo_label.py)", len(rows) - len(transcribed), len(rows))
    rows = transcribed[: int(limit)] if limit else transcribed
    if shifted:
        rows = with_shifted_prompts(rows, shifted, hparams["prompt_seconds"],
                                    hparams["min_continuation_seconds"], hparams["seed"])
    rows = [dict(row, prompt_rate=NARROW_RATE if narrowband and random.Random(f"{hparams['seed']}:band:{row['id']}")
                 .random() < float(narrowband) else 0) for row in rows]
    if narrowband:
        logger.info("narrow-band prompts: %d of %d through an %d Hz channel",
                    sum(1 for r in rows if r["prompt_rate"]), len(rows), NARROW_RATE)
    items = [dict(row, id=f"{row['id']}#{k}" if repeats > 1 else row["id"], utterance=row["id"])
             for row in rows for k in range(repeats)]
    return DynamicItemDataset(to_speechbrain_data(items)), rows


def with_shifted_prompts(rows, fraction, prompt_seconds, min_continuation_seconds, seed):
    """``rows`` with about ``fraction`` of the rows that have word timings replaced by the same utterance
    started at a later word (drawn per row with ``seed``) whose rest still holds a prompt and a continuation:
    prompts that begin mid-sentence, as a person's recording may
    (``spectron_kit.data.manifest.start_at_word``). As many rows as before (the same training cost); the
    count replaced is logged."""
    out, replaced = [], 0
    need = float(prompt_seconds) + float(min_continuation_seconds)
    for row in rows:
        rng = random.Random(f"{seed}:{row['id']}")
        times = parse_word_times(row.get("word_times", ""), n_words=len(str(row["text"]).split()))
        later = [j for j in range(1, len(times or ())) if float(row["duration"]) - times[j][0] + 0.1 >= need]
        if later and rng.random() < float(fraction):
            out.append(start_at_word(row, rng.choice(later), prompt_seconds))
            replaced += 1
        else:
            out.append(row)
    logger.info("shifted prompts: %d of %d rows start at a later word", replaced, len(rows))
    return out


class ContinuationPipelines:
    """The SpeechBrain dynamic-item pipelines of a continuation item: the prompt (audio, or its cached
    encoding) and the continuation's audio, the transcript's tokens, the alignments, the phoneme events."""

    def __init__(self, hparams, tokenizer, phone_vocab=None, prompt_cache=None):
        self.hparams, self.tokenizer = hparams, tokenizer
        self.phone_vocab, self.prompt_cache = phone_vocab, prompt_cache
        self.rate = hparams["sample_rate"]
        self.prompt_samples = to_samples(hparams["prompt_seconds"], self.rate)
        self.max_cont = to_samples(hparams["max_continuation_seconds"], self.rate)
        self.spec = FeatureSpec.from_dict(dict(hparams["feature_spec"]))
        self.r = hparams["reduction_factor"]

    def continuation_samples(self, duration):
        """Samples of an utterance's continuation window (cut at ``max_continuation_seconds``)."""
        return min(to_samples(duration, self.rate) - self.prompt_samples, self.max_cont)

    def audio(self):
        @sb.utils.data_pipeline.takes("path", "start", "end", "prompt_rate")
        @sb.utils.data_pipeline.provides("prompt_wav", "cont_wav")
        def audio_pipeline(path, start, end, prompt_rate):
            wav = load_segment({"path": path, "start": start, "end": end}, target_sr=self.rate)
            prompt = wav[:self.prompt_samples]
            yield narrowband(prompt, self.rate, prompt_rate) if prompt_rate else prompt
            yield wav[self.prompt_samples: self.prompt_samples + self.max_cont]
        return audio_pipeline

    def encoded(self):
        @sb.utils.data_pipeline.takes("utterance", "path", "start", "end")
        @sb.utils.data_pipeline.provides("prompt_encoded", "cont_wav")
        def encoded_pipeline(utt_id, path, start, end):
            """With a fixed encoder: the prompt's cached encoding, and only the continuation's audio."""
            yield self.prompt_cache[utt_id]
            longest = self.max_cont / self.rate
            cont_start = float(start) + self.prompt_samples / self.rate
            cont_end = cont_start + longest if float(end) < 0 else min(float(end), cont_start + longest)
            yield load_segment({"path": path, "start": cont_start, "end": cont_end}, target_sr=self.rate)[
                :self.max_cont]
        return encoded_pipeline

    def text(self):
        @sb.utils.data_pipeline.takes("text")
        @sb.utils.data_pipeline.provides("tokens")
        def text_pipeline(text):
            return torch.LongTensor(self.tokenizer.encode(text))
        return text_pipeline

    def alignment(self):
        hparams, tokenizer, spec, r = self.hparams, self.tokenizer, self.spec, self.r

        @sb.utils.data_pipeline.takes("text", "word_times", "duration")
        @sb.utils.data_pipeline.provides("attention_centres", "attention_sigma")
        def alignment_pipeline(text, word_times, duration):
            """Token spoken at each frame step: from word timings when known, else the diagonal prior."""
            words = text.split()
            spans = token_spans(tokenizer, words)
            n_tokens = spans[-1][1] if spans else 0
            steps = math.ceil(spec.num_frames(max(self.continuation_samples(duration), 0)) / r)
            times = step_times(steps, r, spec.hop_seconds, hparams["prompt_seconds"])
            timing = parse_word_times(word_times, n_words=len(words))
            if timing is not None and n_tokens == len(tokenizer.encode(text)):
                yield torch.tensor(token_centres(timing, spans, times))
                yield torch.tensor([float(hparams["guided_attention_sigma"])])
            else:
                yield torch.tensor(diagonal_centres(n_tokens, duration, times))
                yield torch.tensor([float(hparams["guided_attention_g"]) * max(n_tokens, 1)])
        return alignment_pipeline

    def phonemes(self):
        @sb.utils.data_pipeline.takes("phone_times", "duration")
        @sb.utils.data_pipeline.provides("phones", "phone_groups", "phone_ends")
        def phone_pipeline(phone_times, duration):
            """The phonemes of the continuation window and the groups each owns (spectron_kit.phonemes)."""
            ids, groups, ends = continuation_events(parse_phone_times(phone_times), self.phone_vocab, self.spec,
                                                    self.r, self.hparams["prompt_seconds"],
                                                    self.continuation_samples(duration))
            yield torch.LongTensor(ids)
            yield torch.LongTensor(groups)
            yield torch.LongTensor([int(ends)])
        return phone_pipeline
