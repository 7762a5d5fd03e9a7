"""Checks of a LibriLight recipe configuration, run before anything is written, prepared or pre-trained:
each failure is one line naming the value and the fix."""
import json
from pathlib import Path

from spectron_kit.recipe import RecipeConfigError, declared_keys, yaml_defaults


def check_required_keys(keys):
    """Refuse a YAML that lacks a key the recipe reads, naming it (and a likely misspelling)."""
    reference, known = _reference_keys()
    expected = [key for key in reference if key not in keys]
    if expected:
        unread = [str(k) for k in keys if k not in known and not str(k).startswith("__")]
        hint = (f" (it has {', '.join(repr(k) for k in unread[:3])}, which the recipe does not read: "
                "a misspelling?)" if unread else "")
        raise RecipeConfigError(f"the YAML has no {', '.join(expected[:5])}{hint}; every recipe YAML needs the keys "
                                "of hparams/spectron.yaml: add them or start from that file (__base__: spectron.yaml)")


def check_encoder_bins(hparams):
    """A pre-trained Conformer encoder in ``encoder_source`` must read the run's ``n_mels`` (checked before data)."""
    from spectron_kit.encoders.conformer import CONFORMER_CONFIG_FILE

    source = hparams.get("encoder_source")
    config = Path(str(source)) / CONFORMER_CONFIG_FILE if source else None
    if config is None or not config.is_file():
        return
    stored = json.loads(config.read_text()).get("n_mels")
    if stored is not None and hparams.get("n_mels") is not None and int(stored) != int(hparams["n_mels"]):
        raise RecipeConfigError(
            f"--n_mels={hparams['n_mels']}: the pre-trained encoder in {source} reads {stored} mel bins; pass "
            f"--n_mels={stored}, or --encoder_source=<an encoder trained on {hparams['n_mels']} bins>"
            + (" (the mini setup pre-trains one with --pretrained_folder=<a new folder>)" if hparams.get("mini_corpus")
               else ""))


def validate_run(hparams):
    """Refuse, before anything is written or computed, a run that would fail later.

    Checks that every component the YAML builds (and every loss term) is
    registered, that sizes are positive, and that the data paths of a run on
    real data exist; each failure is one line naming the value and the fix.
    """
    import functools

    import spectron_kit
    from spectron_kit.registry import get_registry

    registry = get_registry()  # (the required keys were checked before loading: check_required_keys)
    for key, value in hparams.items():
        if isinstance(value, functools.partial) and value.func is spectron_kit.build_encoder:
            registry.get("encoder", value.keywords.get("name"))
        if isinstance(value, functools.partial) and value.func is spectron_kit.build:
            kind, name = value.keywords.get("kind"), value.keywords.get("name")
            registry.get(kind, name)  # UnknownComponentError names the kind, the name and the choices
            for term in (value.keywords.get("terms") or {}) if kind == "loss" else ():
                registry.get("loss", term)
    frontend, vocoder = hparams.get("frontend"), hparams.get("vocoder")
    if isinstance(frontend, functools.partial) and isinstance(vocoder, functools.partial):
        frontend().spec.check_matches(vocoder().spec, "frontend", "vocoder")  # both cheap to build
    check_encoder_bins(hparams)
    check_schedule_settings(hparams)
    check_parameter_groups(hparams)
    adapter = hparams.get("lm_adapter") or {}
    if adapter:
        if not isinstance(adapter, dict) or not adapter.get("name"):
            raise RecipeConfigError(f"--lm_adapter={adapter!r}: name the adapter, e.g. \"{{name: lora, r: 8}}\"")
        registry.get("adapter", adapter["name"])  # names the registered adapters when unknown
    if (hparams.get("w_text_rehearsal") or 0) > 0 and not hparams.get("rehearsal_text"):
        raise RecipeConfigError(f"--w_text_rehearsal={hparams['w_text_rehearsal']} needs its text: "
                                "--rehearsal_text=<a text file, one sentence per line>")
    for key in ("batch_size", "number_of_epochs", "text_lm_batch_size", "encoder_ctc_batch_size"):
        value = hparams.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise RecipeConfigError(f"--{key}={value!r}: must be a whole number of at least 1")
    workers = hparams.get("num_workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise RecipeConfigError(f"--num_workers={workers!r}: give 0 (load in the training process) or a number "
                                "of loading processes")
    if not hparams["mini_corpus"]:
        for key in ("data_folder", "librispeech_folder"):
            if hparams.get(key) and not Path(hparams[key]).is_dir():
                raise RecipeConfigError(f"--{key}={hparams[key]}: no such folder; pass the folder that holds "
                                        + ("the Libri-Light subsets" if key == "data_folder" else
                                           "the LibriSpeech splits"))
        transcripts = hparams.get("transcripts")
        if transcripts and not Path(transcripts).exists():
            raise RecipeConfigError(f"--transcripts={transcripts}: no such file or folder; make it with "
                                    "tools/pseudo_label.py or pass a folder of *.trans.txt files")


def check_parameter_groups(hparams):
    """``parameter_groups``: known group names, only ``lr_scale`` / ``weight_decay``, scales of at least 0
    (``spectron_kit.freezing.check_group_settings``, the rule the optimiser's groups follow)."""
    from spectron_kit.freezing import check_group_settings

    try:
        check_group_settings(hparams.get("parameter_groups"))
    except ValueError as err:
        raise RecipeConfigError(f"--{err}") from None


def check_schedule_settings(hparams):
    """``schedule_clock`` and ``best_checkpoint_key``: known values, a time budget for a time schedule."""
    clock = hparams.get("schedule_clock", "steps")
    if clock not in ("steps", "minutes"):
        raise RecipeConfigError(f"--schedule_clock={clock}: use steps (the schedule spans number_of_epochs) or "
                                "minutes (it spans max_training_minutes)")
    limit = hparams.get("max_training_minutes")
    if clock == "minutes" and (limit is None or limit <= 0):
        raise RecipeConfigError(f"--schedule_clock=minutes needs a time budget: --max_training_minutes={limit}; "
                                "pass e.g. --max_training_minutes=80")
    key = hparams.get("best_checkpoint_key", "loss")
    loss = hparams.get("loss")
    terms = dict((loss.keywords.get("terms") or {}) if hasattr(loss, "keywords") else {})
    if key not in ("loss", "last") and key not in terms:
        raise RecipeConfigError(f"--best_checkpoint_key={key}: not a logged valid term; use loss, last (the "
                                "newest checkpoint: a fine-tune) or one of " + ", ".join(sorted(terms)))


def _reference_keys():
    """``(keys every recipe YAML must define, keys the recipe reads)``: those of the paper configuration,
    and those of the paper and mini configurations together."""
    folder = Path(__file__).resolve().parent / "hparams"
    paper = list(yaml_defaults(folder / "spectron.yaml"))
    return paper, set(paper) | declared_keys(folder / "spectron_mini.yaml")  # the paper's keys + the mini's own


