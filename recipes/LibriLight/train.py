#!/usr/bin/env python3
"""Spectron speech-continuation training (Libri-Light, or the embedded mini corpus).

Mini setup (offline, 2 CPU cores, about 12 min measured; makes its own corpus and pre-trained parts):
    python recipes/LibriLight/train.py recipes/LibriLight/hparams/spectron_mini.yaml

Paper configuration (GPU, Libri-Light with pseudo-transcripts, LibriSpeech dev/test):
    python recipes/LibriLight/train.py recipes/LibriLight/hparams/spectron.yaml \
        --data_folder=/data/LibriLight --transcripts=/data/librilight_pseudo.tsv \
        --librispeech_folder=/data/LibriSpeech

Any YAML key can be overridden (``--lr=3e-4``); SpeechBrain run options apply
(``--device=cuda:0 --precision=bf16``). Rerunning the same command resumes
from the last (intra-epoch) checkpoint. At the end the run leaves an inference
bundle (``bundle_folder``), sample continuations (``samples_folder``) and
``summary.json``.
"""
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import speechbrain as sb
import torch
from rich.console import Console
from rich.table import Table
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.seed import seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import check_required_keys, validate_run  # noqa: E402
from librilight_prepare import prepare  # noqa: E402
from mini_prepare import DEBUG_OVERRIDES, pretrain_if_missing  # noqa: E402,F401  (train.DEBUG_OVERRIDES: tools)

from spectron_kit.alignment import diagonal_centres, step_times, token_centres, token_spans  # noqa: E402
from spectron_kit.audio import to_samples  # noqa: E402
from spectron_kit.data.manifest import (  # noqa: E402
    filter_for_continuation, load_segment, parse_phone_times, parse_word_times, read_manifest, to_speechbrain_data,
    validate_manifest)
from spectron_kit.features import FeatureSpec  # noqa: E402
from spectron_kit.model_config import SpectronConfig  # noqa: E402
from spectron_kit.losses import lengths_to_mask  # noqa: E402
from spectron_kit.model import SpectronModel  # noqa: E402
from spectron_kit.phonemes import continuation_events, vocabulary_from_rows  # noqa: E402
from spectron_kit.plotting import plot_loss_curves  # noqa: E402
from spectron_kit.progress import progress_bar  # noqa: E402
from spectron_kit.recipe import (  # noqa: E402
    INTERRUPTED, RandomState, RecipeConfigError, TrainingClock, TrainingDiverged, check_output_folder,
    check_resume_settings, exit_on_config_error, load_recipe, lock_run_folder, nonfinite_weights,
    release_run_folder, reuse_freed_memory, set_aside_broken_checkpoints, yaml_defaults)
from spectron_kit.recipe.runtime import init_distributed  # noqa: E402

logger = logging.getLogger(__name__)
console = Console()


def absolute_lengths(padded):
    """SpeechBrain PaddedData (relative lengths) -> absolute integer lengths."""
    return torch.round(padded.lengths * padded.data.shape[1]).long()


class SpectronBrain(sb.Brain):
    """Trains SpectronModel on the YAML's objective (``loss``: a ``SpectronLoss`` table), every term logged."""

    def __init__(self, *args, objective=None, **kwargs):
        super().__init__(*args, **kwargs)
        # the YAML's !name:spectron_kit.build block, unless the caller built it already (for the data's needs)
        self.objective = objective if objective is not None else self.hparams.loss()
        self.model.check_objective(self.objective)

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        inputs = {"cont_wav": batch.cont_wav.data, "cont_lens": absolute_lengths(batch.cont_wav),
                  "tokens": batch.tokens.data, "token_lens": absolute_lengths(batch.tokens)}
        if hasattr(batch, "prompt_encoded"):  # cached output of a fixed encoder
            inputs.update(prompt_encoded=batch.prompt_encoded.data,
                          prompt_encoded_lens=absolute_lengths(batch.prompt_encoded))
        else:
            inputs.update(prompt_wav=batch.prompt_wav.data, prompt_lens=absolute_lengths(batch.prompt_wav))
        if hasattr(batch, "phones"):  # interleaved phonemes: ids and groups per phoneme of the continuation
            inputs.update(phones=batch.phones.data, phone_groups=batch.phone_groups.data,
                          phone_lens=absolute_lengths(batch.phones), phone_ends=batch.phone_ends.data[:, 0] > 0)
        if hasattr(batch, "attention_centres"):  # padded with NaN: no target there
            centres = batch.attention_centres
            valid = lengths_to_mask(absolute_lengths(centres), centres.data.shape[1])
            inputs["attention_centres"] = torch.where(valid, centres.data, torch.nan)
            inputs["attention_sigma"] = batch.attention_sigma.data[:, 0]
        predictions = self.modules.model(inputs, attention_layers=self.objective.attention_layers)
        return predictions, inputs

    @property
    def model(self):
        """The SpectronModel itself (``self.modules.model`` is wrapped in DDP when distributed)."""
        module = self.modules.model
        return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module

    def compute_objectives(self, predictions, batch, stage):
        predictions, inputs = predictions
        terms = self.objective(predictions, inputs)  # data fields a term reads (alignments) come from inputs
        for name in logged_terms(self.objective):
            if name in terms:
                self.term_sums[name] = self.term_sums.get(name, 0.0) + float(terms[name].detach())
        self.term_count += 1
        return terms["loss"]

    # -- optimiser and schedule -------------------------------------------------
    def init_optimizers(self):
        model = self.model
        encoder_ids = {id(p) for p in model.encoder.parameters()}
        encoder = [p for p in model.encoder.parameters() if p.requires_grad]
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
        lr = self.hparams.lr
        groups = [{"params": rest, "lr": lr}]
        if encoder:
            groups.append({"params": encoder, "lr": lr * self.hparams.encoder_lr_scale})
        # the YAML's optimiser (!name:torch.optim.AdamW ...) and schedule (!new:...WarmupCosine)
        self.optimizer = self.hparams.optimizer(groups)
        if getattr(self.hparams, "schedule_clock", "steps") == "minutes":  # the budget is max_training_minutes
            multiplier = self.hparams.lr_schedule.for_minutes(self.hparams.max_training_minutes, self.clock.minutes)
        else:
            total = max(1, self.hparams.number_of_epochs * self.steps_per_epoch)
            multiplier = self.hparams.lr_schedule.for_total(total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, multiplier)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("scheduler", self.scheduler)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:
            self.scheduler.step()
        self._advance(f"loss {float(loss.detach()):.3f}")
        self.save_due_snapshots()

    # -- checkpoints never hold non-finite weights ----------------------------------
    def _diverged(self, what, losses, kept):
        """The one-line error of a run that blew up: where, what, the losses, what was kept, the fix."""
        return TrainingDiverged(
            f"training diverged at step {self.step} of epoch {self.hparams.epoch_counter.current}: {what} "
            f"(losses: {_fmt(losses)}); {kept} in {self.hparams.save_folder} is kept: rerun with a lower --lr "
            f"(now {self.hparams.lr:g})")

    def refuse_nonfinite_weights(self, losses=None):
        """Stop (one line, exit 2) instead of checkpointing NaN/inf weights; the last good checkpoint stays."""
        bad = nonfinite_weights(self.model)
        if bad:
            raise self._diverged(f"{len(bad)} weight tensors are not finite (first: {bad[0]})",
                                 losses or self.stage_means(), "no checkpoint was written, the last good one")

    def _save_intra_epoch_ckpt(self):
        # SpeechBrain's private hook for the every-N-steps checkpoint (ckpt_interval_steps): the one place
        # where a mid-epoch save can be refused; Brain has no public hook before it (speechbrain 1.1.2)
        self.refuse_nonfinite_weights()
        super()._save_intra_epoch_ckpt()

    def check_loss_isfinite(self, loss):
        try:
            super().check_loss_isfinite(loss)
        except ValueError as err:
            if "not finite" not in str(err):
                raise
            raise self._diverged(f"the loss was not finite {self.nonfinite_count} times", self.stage_means(),
                                 "the last good checkpoint") from None

    def on_fit_start(self):
        super().on_fit_start()  # recovers the last checkpoint, and with it the training clock
        self.resumed_minutes = self.clock.seconds / 60.0  # what earlier runs trained (0.0 for a fresh run)
        passed = [m for m in self.hparams.snapshot_minutes or () if m < self.resumed_minutes
                  and not (Path(self.hparams.output_folder) / "snapshots" / f"{m:g}min").is_dir()]
        if passed:
            logger.info("snapshot minutes %s passed before this run resumed at %.1f training minutes: not written "
                        "(a snapshot holds the weights of its minute)", ", ".join(f"{m:g}" for m in passed),
                        self.resumed_minutes)

    def save_due_snapshots(self):
        """Write a bundle at each of ``snapshot_minutes`` of training (for the training-time curve), those
        reached in this run (a resumed run does not label its weights with a minute it started after)."""
        minutes, since = self.clock.minutes(), getattr(self, "resumed_minutes", 0.0)
        for mark in self.hparams.snapshot_minutes or ():
            if since <= mark <= minutes:
                self.save_snapshot(f"{mark:g}min")

    def save_snapshot(self, name):
        """A bundle in ``<output_folder>/snapshots/<name>`` (once) with its training time, epoch and step."""
        folder = Path(self.hparams.output_folder) / "snapshots" / name
        if folder.is_dir() or not sb.utils.distributed.if_main_process():
            return
        was_training = self.model.training
        self.model.save_pretrained(folder)
        self.model.train(was_training)
        epoch = self.hparams.epoch_counter.current
        minutes = self.clock.minutes()
        (folder / "training.json").write_text(json.dumps(
            {"training_minutes": minutes, "step": self.step, "epoch": epoch,
             "optimizer_steps": self.optimizer_step}))
        logger.info("snapshot %s after %.1f training minutes (epoch %d, step %d): %s", name, minutes, epoch,
                    self.step, folder)

    def evaluate_batch(self, batch, stage):
        loss = super().evaluate_batch(batch, stage)
        self._advance(f"loss {float(loss):.3f}")
        return loss

    # -- progress and logging ---------------------------------------------------
    def _advance(self, info):
        if getattr(self, "progress", None) is not None:
            self.progress.update(self.task, advance=1, info=info)

    def on_stage_start(self, stage, epoch=None):
        self.term_sums, self.term_count = {}, 0
        total = self.steps_per_epoch if stage == sb.Stage.TRAIN else self.valid_steps
        self.progress = progress_bar(info=True, console=console, disable=not sb.utils.distributed.if_main_process())
        label = {sb.Stage.TRAIN: "train", sb.Stage.VALID: "valid", sb.Stage.TEST: "test"}[stage]
        self.task = self.progress.add_task(f"epoch {epoch} {label}" if epoch is not None else label, total=total, info="",
                                           completed=self.step if stage == sb.Stage.TRAIN else 0)
        self.progress.start()

    def stage_means(self):
        """Mean of every logged term over the stage's batches (over all processes when distributed)."""
        names = list(self.term_sums)  # table order (the same in every process)
        sums = torch.tensor([self.term_sums[k] for k in names] + [float(self.term_count)], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        count = max(float(sums[-1]), 1.0)
        return {k: float(v) / count for k, v in zip(names, sums[:-1])}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        self.progress.stop()
        self.progress = None
        means = self.stage_means()
        if stage == sb.Stage.TRAIN:
            self.train_stats = means
            return
        if stage == sb.Stage.VALID:
            lr = self.optimizer.param_groups[0]["lr"]
            # log_stats runs in the main process only, but every process must call it (it ends in a broadcast)
            self.hparams.train_logger.log_stats({"epoch": epoch, "lr": lr}, train_stats=self.train_stats,
                                                valid_stats=means)
            if getattr(self, "tensorboard", None) is not None:
                self.tensorboard.log_stats({"epoch": epoch, "lr": lr}, train_stats=self.train_stats,
                                           valid_stats=means)
                if getattr(self.tensorboard, "writer", None) is not None:  # the main process holds the writer
                    self.tensorboard.writer.flush()
            if sb.utils.distributed.if_main_process():
                console.print(f"epoch {epoch}: lr {lr:.2e} | train " + _fmt(self.train_stats) + " | valid "
                              + _fmt(means))
                plot_loss_curves(self.hparams.train_log, Path(self.hparams.output_folder) / "loss_curves.png",
                                 title=f"{self.hparams.experiment}: loss terms per epoch")
            self.refuse_nonfinite_weights(means)
            key = selection_key(vars(self.hparams))
            self.checkpointer.save_and_keep_only(meta={**means, "epoch": epoch},
                                                 min_keys=[key] if key else None, num_to_keep=2)
            if epoch in (getattr(self.hparams, "snapshot_epochs", None) or ()):
                self.save_snapshot(f"epoch{epoch}")
            limit = self.hparams.max_training_minutes
            if limit is not None and self.clock.minutes() >= limit:
                counter = self.hparams.epoch_counter
                console.print(f"stopping after epoch {epoch}: {self.clock.minutes():.1f} training minutes "
                              f">= max_training_minutes {limit:g}")
                counter.current = counter.limit
        self.last_stats = means


def logged_terms(objective):
    """The total and every term of the objective's table, in table order."""
    return ("loss", *objective.weights)


def _fmt(stats):
    return " ".join(f"{k} {v:.3f}" for k, v in stats.items())


# ------------------------------------------------------------------------------- data
#: data fields a loss term may require (``LossTerm.requires``) and the pipeline that provides them
ALIGNMENT_FIELDS = ("attention_centres", "attention_sigma")


def dataio_prepare(hparams, manifests, tokenizer, encode=None, phone_vocab=None, needs=()):
    """Manifests -> SpeechBrain datasets yielding prompt/continuation audio and tokens.

    With ``encode`` (rows -> {id: encoder output [T', D]}, see
    :func:`encode_prompts`), train and valid items carry the prompt's cached
    encoding instead of its audio. With ``phone_vocab`` (a model that
    interleaves phonemes) items carry the phoneme events of their continuation.
    ``needs`` are the keys the objective's terms read (``SpectronLoss.requires``):
    items carry the data fields among them (:data:`ALIGNMENT_FIELDS`: the token
    spoken at each frame step, from word timings or the diagonal prior).
    """
    loaded = {split: load_rows(hparams, manifests, names, *more) for split, names, *more in (
        ("train", hparams["train_splits"], hparams["max_train_utterances"], hparams["train_repeats"],
         hparams["train_speakers"]),
        ("valid", hparams["valid_splits"], hparams["max_valid_utterances"]),
        ("test", hparams["test_splits"], None))}
    prompt_cache = encode(loaded["train"][1] + loaded["valid"][1]) if encode is not None else None
    pipelines = ContinuationPipelines(hparams, tokenizer, phone_vocab, prompt_cache)
    datasets = {}
    for split, (dataset, rows) in loaded.items():
        if prompt_cache is not None and split != "test":
            sb.dataio.dataset.add_dynamic_item([dataset], pipelines.encoded())
            keys = ["id", "prompt_encoded", "cont_wav", "tokens"]
        else:
            sb.dataio.dataset.add_dynamic_item([dataset], pipelines.audio())
            keys = ["id", "prompt_wav", "cont_wav", "tokens"]
        sb.dataio.dataset.add_dynamic_item([dataset], pipelines.text())
        if set(needs) & set(ALIGNMENT_FIELDS):  # a term reads alignments (guided attention, or a plugin's)
            sb.dataio.dataset.add_dynamic_item([dataset], pipelines.alignment())
            keys += list(ALIGNMENT_FIELDS)
        if phone_vocab is not None:
            sb.dataio.dataset.add_dynamic_item([dataset], pipelines.phonemes())
            keys += ["phones", "phone_groups", "phone_ends"]
        dataset.set_output_keys(keys)
        if hparams["sorting"] in ("ascending", "descending") and split == "train":
            dataset = dataset.filtered_sorted(sort_key="duration", reverse=hparams["sorting"] == "descending")
        datasets[split] = dataset
        datasets[split + "_rows"] = rows
        logger.info("%s: %d utterances (%.2f h)", split, len(rows), sum(r["duration"] for r in rows) / 3600)
    return datasets


def load_rows(hparams, manifests, names, limit, repeats=1, speakers=None):
    """One split's items: the rows of manifests ``names`` with valid audio, long enough for a continuation and
    transcribed (the others counted in the log); the first ``limit``; only ``speakers`` (a lever); each
    ``repeats`` times an epoch (ids ``<id>#<k>``; ``utterance`` names the audio's own id).
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
    items = [dict(row, id=f"{row['id']}#{k}" if repeats > 1 else row["id"], utterance=row["id"])
             for row in rows for k in range(repeats)]
    return DynamicItemDataset(to_speechbrain_data(items)), rows


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
        @sb.utils.data_pipeline.takes("path", "start", "end")
        @sb.utils.data_pipeline.provides("prompt_wav", "cont_wav")
        def audio_pipeline(path, start, end):
            wav = load_segment({"path": path, "start": start, "end": end}, target_sr=self.rate)
            yield wav[:self.prompt_samples]
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


# ------------------------------------------------------------------------------- setup
def prepare_data(hparams):
    """Make the mini corpus if asked, then write manifests. Returns {split: csv}."""
    splits = list(hparams["train_splits"]) + list(hparams["valid_splits"]) + list(hparams["test_splits"])
    if hparams["mini_corpus"]:
        from spectron_kit.data.minicorpus import ensure_mini_corpus

        run_on_main(ensure_mini_corpus, kwargs={"root": hparams["data_folder"], "size": hparams["mini_corpus_size"],
                                                "seed": hparams.get("pretrain_seed", hparams["seed"]),
                                                "workers": hparams["mini_corpus_workers"]})
        kwargs = {"save_folder": hparams["manifest_folder"], "librispeech_folder": hparams["data_folder"],
                  "librispeech_splits": splits, "prompt_seconds": hparams["prompt_seconds"]}
    else:
        librispeech = [s for s in splits if s not in hparams["librilight_subsets"]]
        kwargs = {"save_folder": hparams["manifest_folder"], "librilight_folder": hparams["data_folder"],
                  "librilight_subsets": hparams["librilight_subsets"], "transcripts": hparams["transcripts"],
                  "librispeech_folder": hparams["librispeech_folder"], "librispeech_splits": librispeech,
                  "prompt_seconds": hparams["prompt_seconds"]}
    run_on_main(prepare, kwargs=kwargs)
    return prepare(**kwargs)  # already done: returns the manifest paths


def encode_prompts(model, rows, hparams):
    """Encoder output of the prompt of every row, computed once: ``{id: [T', D]}``.

    Only valid for a fixed encoder (frozen, no prompt augmentation), whose
    output does not change during training; reading it back saves the
    encoder pass and the prompt audio of every step.
    """
    rate = hparams["sample_rate"]
    prompt = to_samples(hparams["prompt_seconds"], rate)
    cache = {}
    model.eval()
    with torch.no_grad(), progress_bar(console=console) as progress:
        task = progress.add_task("encoding prompts (fixed encoder)", total=len(rows))
        for start in range(0, len(rows), 32):
            chunk = rows[start:start + 32]
            wavs = [load_segment(r, rate)[:prompt] for r in chunk]
            wav = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True).to(model.device)
            lens = torch.tensor([len(w) for w in wavs], device=model.device)
            hidden, out_lens = model.encode_speech(wav, lens)
            for row, h, n in zip(chunk, hidden, out_lens):
                cache[row["id"]] = h[: int(n)].float().cpu()
            progress.update(task, advance=len(chunk))
    model.train()
    return cache


def phoneme_inventory(hparams, rows):
    """The phoneme names of the training rows (``interleave_phonemes``), else None."""
    if not hparams.get("interleave_phonemes"):
        return None
    try:
        return vocabulary_from_rows(rows).symbols[2:]
    except ValueError as err:
        raise RecipeConfigError(f"--interleave_phonemes=True: {err}") from None


def frame_statistics(model, rows, hparams, limit=256):
    """Per-bin mean and standard deviation of the continuation frames of ``limit`` rows spread over ``rows``."""
    rate = hparams["sample_rate"]
    prompt = to_samples(hparams["prompt_seconds"], rate)
    frames = []
    with torch.no_grad():
        for row in rows[:: max(1, len(rows) // limit)][:limit]:  # spread over the speakers
            wav = load_segment(row, rate)[prompt:]
            if len(wav):
                frames.append(model.frontend(wav[None].to(model.device))[0][0].double())
    if not frames:
        raise RecipeConfigError("--normalize_frames=True: no training continuation to take frame statistics from")
    frames = torch.cat(frames)                                   # [T, F]: a few hundred thousand values
    return frames.mean(0).float(), frames.std(0, correction=0).clamp(min=1e-3).float()


def build_model_for_data(hparams, manifests):
    """:func:`build_model` with what it reads from the training manifests: the phoneme vocabulary
    (``interleave_phonemes``) and the per-bin frame statistics (``normalize_frames``; a resumed run gets
    the same from its checkpoint)."""
    rows = ([row for name in hparams["train_splits"] for row in read_manifest(manifests[name])]
            if hparams.get("interleave_phonemes") or hparams.get("normalize_frames") else [])
    model = build_model(hparams, phoneme_inventory(hparams, rows))
    if model.normalize_frames:
        model.set_frame_stats(*frame_statistics(model, rows, hparams))
    return model


def build_model(hparams, phonemes=None):
    """Build every component from the YAML and assemble the model (validated before training); every model
    setting comes from its YAML key (``SpectronConfig.fields()``)."""
    return SpectronModel(
        frontend=hparams["frontend"](), encoder=hparams["encoder"](), lm=hparams["lm"](),
        prenet=hparams["prenet"], postnet=hparams["postnet"], vocoder=hparams["vocoder"](),
        config=SpectronConfig.from_hparams(hparams, phonemes=phonemes), prompt_augment=hparams["prompt_augment"])


# ------------------------------------------------------------------------------- after training
def selection_key(hparams):
    """The valid term that picks the best checkpoint and the bundle (``best_checkpoint_key``); None for
    ``last``: the newest checkpoint (a fine-tune whose teacher-forced terms may rise on purpose)."""
    key = hparams.get("best_checkpoint_key", "loss")
    return None if key == "last" else key


def valid_terms(brain, dataset, loader_kwargs, min_key=None):
    """Mean loss terms on a dataset through ``Brain.evaluate`` (``min_key``: from the best checkpoint first)."""
    kwargs = {k: v for k, v in loader_kwargs.items() if k != "ckpt_prefix"}  # fit() leaves one in its dict
    brain.evaluate(dataset, min_key=min_key, progressbar=False, test_loader_kwargs=kwargs)
    return brain.last_stats


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


def load_run(argv):
    """Command line -> ``(hparams_file, run_opts, overrides YAML, hparams, world_size)``, checked.

    Follows ``__base__`` chains, applies ``--debug`` sizes, starts distributed
    training when launched by torchrun, and refuses (one line) a key, a
    value or a component that cannot work, before anything is written.
    """
    def debug_and_distributed(hparams_file, overrides, typed, run_opts):
        if run_opts.debug and {**yaml_defaults(hparams_file), **overrides}.get("mini_corpus"):
            # tiny sizes win over the setup file's keys; what the user typed still wins over them
            overrides = {**overrides, **DEBUG_OVERRIDES, **typed}
            # the sizes are ours, so SpeechBrain's own debug mode (checkpoints in a temporary folder, 2 epochs
            # of 2 batches) is off: the debug run keeps checkpoints in its output folder, honours
            # --number_of_epochs and resumes like a real run
            run_opts = dataclasses.replace(run_opts, debug=False)
            console.print(f"debug run: tiny corpus and models in {overrides['data_folder']} and "
                          f"{overrides['output_folder']}")
        run_opts, _ = init_distributed(run_opts)
        return overrides, run_opts

    loaded = load_recipe(argv, hint="for a run without data, use recipes/LibriLight/hparams/spectron_mini.yaml",
                         adjust=debug_and_distributed, required=check_required_keys)
    hparams_file, run_opts, overrides, hparams = loaded.hparams_file, loaded.run_opts, loaded.overrides, loaded.hparams
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    validate_run(hparams)  # before anything is written, prepared or pre-trained
    check_output_folder(hparams["output_folder"])
    return hparams_file, run_opts, overrides, hparams, world_size


@exit_on_config_error
def main(argv=None):
    reuse_freed_memory()  # CPU steps otherwise spend a third of their time in page faults
    hparams_file, run_opts, overrides, hparams, world_size = load_run(argv if argv is not None else sys.argv[1:])
    if sb.utils.distributed.if_main_process():  # one run per output folder, before anything is written there
        lock_run_folder(hparams["output_folder"])
        check_resume_settings(hparams["output_folder"], hparams["save_folder"], hparams_file, overrides)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file,
                                   overrides=overrides)
    INTERRUPTED["where"] = (f"the last checkpoint is in {hparams['save_folder']}; rerun the same command to "
                            "resume from it")
    started = time.time()
    manifests = prepare_data(hparams)
    pretrain_if_missing(hparams, manifests)
    # the same start whether or not this run generated the corpus and pre-trained (which draw random numbers)
    seed_everything(hparams["seed"], verbose=False)
    model = build_model_for_data(hparams, manifests)
    console.print(f"model: {model.num_parameters() / 1e6:.2f} M parameters "
                  f"({model.num_parameters(trainable_only=True) / 1e6:.2f} M trainable)")
    encode = None
    if hparams["cache_prompt_encodings"] and model.encoder_is_fixed and model.encoder.input_kind != "waveform":
        encode = lambda rows: encode_prompts(model, rows, hparams)  # noqa: E731
    objective = hparams["loss"]()  # the YAML's objective: its terms say what the data must carry
    datasets = dataio_prepare(hparams, manifests, model.lm.tokenizer, encode, model.phone_vocab,
                              needs=objective.requires)
    brain, loaders = make_brain(hparams, model, run_opts, datasets, world_size, objective)
    step0_file = Path(hparams["output_folder"]) / "valid_step0.json"
    if not step0_file.is_file() and brain.checkpointer.find_checkpoint() is None:
        step0 = valid_terms(brain, datasets["valid"], loaders["valid_loader_kwargs"])
        if sb.utils.distributed.if_main_process():
            console.print("valid loss terms at step 0 (before training): " + _fmt(step0))
            step0_file.write_text(json.dumps(step0, indent=2))
    brain.clock.start()
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"], **loaders)
    train_seconds, training_minutes = time.time() - started, brain.clock.minutes()

    # best checkpoint -> bundle, samples, held-out prompt transcripts (the main process only)
    if world_size > 1:  # training is over: the rest runs in the main process alone, without collectives
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if not sb.utils.distributed.if_main_process():
            return None
    final = valid_terms(brain, datasets["valid"], loaders["valid_loader_kwargs"],  # the best checkpoint's
                        min_key=selection_key(hparams))
    model.eval()
    model.save_pretrained(hparams["bundle_folder"])
    samples = write_samples(model, datasets["valid_rows"], hparams)
    held_out = held_out_prompt_wer(model, datasets["test_rows"], hparams)
    step0 = json.loads(step0_file.read_text()) if step0_file.is_file() else {}
    summary = {"valid_step0": step0, "valid_final": final,
               "reduction": {k: step0[k] / final[k] for k in logged_terms(brain.objective)
                             if k in step0 and final.get(k)},
               **held_out, "samples": samples, "seconds": time.time() - started, "train_seconds": train_seconds,
               "optimizer_steps": int(getattr(brain, "optimizer_step", 0)), "training_minutes": training_minutes,
               "parameters": model.num_parameters(), "bundle": str(hparams["bundle_folder"])}
    (Path(hparams["output_folder"]) / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, logged_terms(brain.objective), hparams)
    release_run_folder(hparams["output_folder"])
    return summary


def make_brain(hparams, model, run_opts, datasets, world_size, objective=None):
    """The Brain with its checkpointer (model, epoch counter, training clock, RNG state) and the loader
    arguments of ``fit``. Returns ``(brain, {"train_loader_kwargs": ..., "valid_loader_kwargs": ...})``."""
    clock = TrainingClock()  # training time, saved in checkpoints so resumed runs add up
    checkpointer = sb.utils.checkpoints.Checkpointer(
        checkpoints_dir=hparams["save_folder"],
        recoverables={"model": model, "counter": hparams["epoch_counter"], "clock": clock, "rng": RandomState()},
        allow_partial_load=True)  # checkpoints of earlier versions lack the newer recoverables (rng, clock)
    set_aside_broken_checkpoints(checkpointer, log=lambda text: console.print(f"warning: {text}"))
    brain = SpectronBrain(modules={"model": model}, hparams=hparams, run_opts=run_opts, checkpointer=checkpointer,
                          objective=objective)
    brain.clock = clock
    brain.tensorboard = tensorboard_logger(hparams)
    # per process: the distributed sampler gives each of world_size processes ceil(N / world_size) items
    brain.steps_per_epoch = math.ceil(math.ceil(len(datasets["train"]) / world_size) / hparams["batch_size"])
    brain.valid_steps = math.ceil(len(datasets["valid"]) / hparams["batch_size"])
    # the loader draws its workers' base seed from its own generator, not the global one, so a run resumed
    # mid-epoch (global RNG restored from the checkpoint, then a new loader iterator) draws what an
    # uninterrupted run draws
    train_kwargs = {"batch_size": hparams["batch_size"], "shuffle": hparams["sorting"] == "random",
                    "generator": torch.Generator().manual_seed(hparams["seed"])}
    return brain, {"train_loader_kwargs": train_kwargs, "valid_loader_kwargs": {"batch_size": hparams["batch_size"]}}


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


def tensorboard_logger(hparams):
    """SpeechBrain's TensorBoard logger writing to ``<output_folder>/tensorboard`` (None when off or not installed)."""
    if not hparams.get("tensorboard"):
        return None
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        console.print("tensorboard is not installed: loss curves go to train_log.txt and loss_curves.png only "
                      "(pip install tensorboard, or --tensorboard=False to silence this)")
        return None
    from speechbrain.utils.train_logger import TensorboardLogger

    return TensorboardLogger(save_dir=str(Path(hparams["output_folder"]) / "tensorboard"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
