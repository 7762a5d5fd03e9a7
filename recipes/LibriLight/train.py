#!/usr/bin/env python3
"""Spectron speech-continuation training (Libri-Light, or the embedded mini corpus).

Mini setup (offline, 2 CPU cores, about 12 min measured; makes its own corpus and pre-trained parts):
    python recipes/LibriLight/train.py recipes/LibriLight/hparams/spectron_mini.yaml

Paper configuration (GPU, Libri-Light with pseudo-transcripts, LibriSpeech dev/test):
    python recipes/LibriLight/train.py recipes/LibriLight/hparams/spectron.yaml \\
        --data_folder=/data/LibriLight --transcripts=/data/librilight_pseudo.tsv \\
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
from speechbrain.utils.seed import seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import check_required_keys, validate_run  # noqa: E402
from data_pipelines import REHEARSAL_FIELDS, ContinuationPipelines, TextRehearsal, load_rows  # noqa: E402
from mini_prepare import DEBUG_OVERRIDES, pretrain_if_missing  # noqa: E402,F401  (train.DEBUG_OVERRIDES: tools)
from model_setup import build_model_for_data, encode_prompts, prepare_data  # noqa: E402  (tools use train.*)
from run_summary import held_out_prompt_wer, print_summary, write_samples  # noqa: E402

from spectron_kit.freezing import component_groups  # noqa: E402
from spectron_kit.losses import lengths_to_mask  # noqa: E402
from spectron_kit.plotting import plot_loss_curves  # noqa: E402
from spectron_kit.progress import progress_bar  # noqa: E402
from spectron_kit.recipe import (  # noqa: E402
    INTERRUPTED, RandomState, RecipeHelp, TrainingClock, TrainingDiverged, check_output_folder,
    check_resume_settings, command_line, exit_on_config_error, interrupts_deferred, load_recipe, lock_run_folder,
    nonfinite_weights,
    quiet_library_loggers, release_run_folder, reuse_freed_memory, set_aside_broken_checkpoints, yaml_defaults)
from spectron_kit.recipe.runtime import init_distributed  # noqa: E402

logger = logging.getLogger(__name__)
console = Console()
ABOUT = RecipeHelp.for_script(
    __file__, __doc__, default_yaml="hparams/spectron_mini.yaml",
    debug="with a mini-corpus YAML: a smoke run of the whole pipeline in about a minute - a tiny corpus in "
          "data/mini_corpus_debug, tiny pre-trained LM and encoder, tiny models, 1 epoch of batches of 4, "
          "written to results/debug/spectron_mini (the real run's folders are not touched; rerunning resumes "
          "it); keys you type still win. With another YAML: SpeechBrain's debug mode (a few batches, "
          "checkpoints in a temporary folder).")


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
        if getattr(self, "rehearsal", None) is not None:  # a term asked for text-only batches
            inputs["rehearsal_tokens"], inputs["rehearsal_lens"] = self.rehearsal.batch()
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
        settings = getattr(self.hparams, "parameter_groups", None)
        if settings is None:  # recipes written before parameter_groups: the encoder's scale alone
            settings = {"encoder": {"lr_scale": self.hparams.encoder_lr_scale}}
        groups, rows = component_groups(self.model, self.hparams.lr, settings,
                                        getattr(self.hparams, "weight_decay", None))
        report_parameter_groups(rows, self.hparams.output_folder)
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
            self.checkpointer.add_recoverable("optimizer", self.optimizer, custom_load_hook=load_optimizer_state)
            self.checkpointer.add_recoverable("scheduler", self.scheduler)

    def on_fit_batch_start(self, batch, should_step):
        """Self-feeding waits for ``self_feeding_from_minutes`` of training (a fine-tune phase in one run)."""
        start, fraction = getattr(self.hparams, "self_feeding_from_minutes", 0) or 0, self.hparams.self_feeding
        if start and fraction:
            now = fraction if self.clock.minutes() >= start else 0.0
            if now != self.model.self_feeding:
                logger.info("self-feeding %g from %.1f training minutes (self_feeding_from_minutes %g)", now,
                            self.clock.minutes(), start)
                self.model.self_feeding = now

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
            self.refuse_nonfinite_weights(means)
            # the epoch's checkpoint, then its log line and loss plot, whole: a Ctrl-C in between would leave a
            # logged epoch without its checkpoint, which the rerun would train (and log) again
            with interrupts_deferred():
                key = selection_key(vars(self.hparams))
                self.checkpointer.save_and_keep_only(meta={**means, "epoch": epoch},
                                                     min_keys=[key] if key else None, num_to_keep=2)
                self.log_epoch(epoch, means)
            if epoch in (getattr(self.hparams, "snapshot_epochs", None) or ()):
                self.save_snapshot(f"epoch{epoch}")
            limit = self.hparams.max_training_minutes
            if limit is not None and self.clock.minutes() >= limit:
                counter = self.hparams.epoch_counter
                console.print(f"stopping after epoch {epoch}: {self.clock.minutes():.1f} training minutes "
                              f">= max_training_minutes {limit:g}")
                counter.current = counter.limit
        self.last_stats = means


    def log_epoch(self, epoch, means):
        """The epoch's line in train_log.txt (and TensorBoard, and the console) and the loss plot."""
        lr = self.optimizer.param_groups[0]["lr"]
        # log_stats runs in the main process only, but every process must call it (it ends in a broadcast)
        self.hparams.train_logger.log_stats({"epoch": epoch, "lr": lr}, train_stats=self.train_stats,
                                            valid_stats=means)
        if getattr(self, "tensorboard", None) is not None:
            self.tensorboard.log_stats({"epoch": epoch, "lr": lr}, train_stats=self.train_stats, valid_stats=means)
            if getattr(self.tensorboard, "writer", None) is not None:  # the main process holds the writer
                self.tensorboard.writer.flush()
        if sb.utils.distributed.if_main_process():
            console.print(f"epoch {epoch}: lr {lr:.2e} | train " + _fmt(self.train_stats) + " | valid "
                          + _fmt(means))
            plot_loss_curves(self.hparams.train_log, Path(self.hparams.output_folder) / "loss_curves.png",
                             title=f"{self.hparams.experiment}: loss terms per epoch")


def load_optimizer_state(optimizer, path, end_of_epoch=False):
    """Resume the optimiser's moments; a checkpoint whose parameter groups differ (written before
    ``parameter_groups``, or with other groups) resumes with fresh moments and a warning: its weights,
    schedule and clock still load, nothing is lost."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if len(state.get("param_groups", [])) != len(optimizer.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(state["param_groups"], optimizer.param_groups)):
        console.print(f"warning: the checkpoint's optimiser has {len(state.get('param_groups', []))} parameter "
                      f"groups, this run {len(optimizer.param_groups)} (parameter_groups); its Adam moments start "
                      "afresh, the weights, schedule and clock resume")
        return
    optimizer.load_state_dict(state)


def report_parameter_groups(rows, output_folder):
    """The learning rate and trainable parameters of every component, on the console and in
    ``<output_folder>/parameter_groups.json`` (saved with the run)."""
    if not sb.utils.distributed.if_main_process():
        return
    table = Table(title="parameter groups (parameter_groups)")
    for column in ("group", "parameters", "trainable", "lr", "weight decay"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for name, total, trainable, lr, decay in rows:
        table.add_row(name, f"{total:,}", f"{trainable:,}", f"{lr:.2e}" if trainable else "frozen",
                      "-" if decay is None else f"{decay:g}")
    console.print(table)
    Path(output_folder).mkdir(parents=True, exist_ok=True)
    (Path(output_folder) / "parameter_groups.json").write_text(json.dumps(
        [{"group": n, "parameters": t, "trainable": tr, "lr": lr if tr else 0.0, "weight_decay": d}
         for n, t, tr, lr, d in rows], indent=1))


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
         hparams["train_speakers"], hparams["shifted_prompts"], hparams["narrowband_prompts"]),
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


# ------------------------------------------------------------------------------- setup


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
                         adjust=debug_and_distributed, required=check_required_keys, about=ABOUT)
    hparams_file, run_opts, overrides, hparams = loaded.hparams_file, loaded.run_opts, loaded.overrides, loaded.hparams
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    validate_run(hparams)  # before anything is written, prepared or pre-trained
    check_output_folder(hparams["output_folder"])
    return hparams_file, run_opts, overrides, hparams, world_size


@exit_on_config_error
def main(argv=None):
    reuse_freed_memory()  # CPU steps otherwise spend a third of their time in page faults
    argv = list(argv if argv is not None else sys.argv[1:])
    hparams_file, run_opts, overrides, hparams, world_size = load_run(argv)
    if sb.utils.distributed.if_main_process():  # one run per output folder, before anything is written there
        lock_run_folder(hparams["output_folder"])
        check_resume_settings(hparams["output_folder"], hparams["save_folder"], hparams_file, overrides)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"], hyperparams_to_save=hparams_file,
                                   overrides=overrides)
    quiet_library_loggers()
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
    if hparams["cache_prompt_encodings"] and model.encoder_is_fixed:
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
               "parameters": model.num_parameters(), "trainable_parameters": model.num_parameters(trainable_only=True),
               "bundle": str(hparams["bundle_folder"]),
               "command": command_line(__file__, argv)}
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
    brain.rehearsal = None
    if objective is not None and set(objective.requires) & set(REHEARSAL_FIELDS):  # text_rehearsal
        brain.rehearsal = TextRehearsal(hparams["rehearsal_text"], model.lm.tokenizer,
                                        hparams["rehearsal_batch_size"], hparams["seed"])
    # per process: the distributed sampler gives each of world_size processes ceil(N / world_size) items
    brain.steps_per_epoch = math.ceil(math.ceil(len(datasets["train"]) / world_size) / hparams["batch_size"])
    brain.valid_steps = math.ceil(len(datasets["valid"]) / hparams["batch_size"])
    # the loader draws its workers' base seed from its own generator, not the global one, so a run resumed
    # mid-epoch (global RNG restored from the checkpoint, then a new loader iterator) draws what an
    # uninterrupted run draws
    train_kwargs = {"batch_size": hparams["batch_size"], "shuffle": hparams["sorting"] == "random",
                    "generator": torch.Generator().manual_seed(hparams["seed"]), **loader_workers(hparams, brain.device)}
    return brain, {"train_loader_kwargs": train_kwargs,
                   "valid_loader_kwargs": {"batch_size": hparams["batch_size"], **loader_workers(hparams, brain.device)}}


def loader_workers(hparams, device):
    """DataLoader arguments for ``num_workers`` loading processes (none: loading in the training process), with
    pinned memory when training on a GPU."""
    workers = int(hparams.get("num_workers") or 0)  # checked by checks.validate_run
    kwargs = {"num_workers": workers}
    if workers:
        kwargs["persistent_workers"] = True
    if str(device).startswith("cuda"):
        kwargs["pin_memory"] = True
    return kwargs


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
