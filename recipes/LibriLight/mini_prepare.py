"""The mini setup's own preparation: its corpus-made-on-first-use is in ``spectron_kit.data.minicorpus``;
this module makes (once, cached by settings) its "pre-trained" text LM and, for ``spectron_mini_ctc.yaml``, its CTC
speech encoder (the default hears with Whisper tiny.en), and holds the
tiny sizes of ``--debug``."""
import json
from pathlib import Path

from rich.console import Console
from speechbrain.utils.distributed import run_on_main

from spectron_kit.audio import to_samples
from spectron_kit.data.manifest import load_segment, read_manifest
from spectron_kit.jsonable import to_jsonable
from spectron_kit.recipe import RecipeConfigError

console = Console()

#: ``--debug`` on the mini setup: every stage (corpus, pre-training, training, bundle, samples) at tiny sizes,
#: in folders of its own so a real run is never touched; it checkpoints and resumes like a real run
DEBUG_OVERRIDES = {
    "mini_corpus_size": "tiny", "mini_corpus_workers": 1, "data_folder": "data/mini_corpus_debug",
    "output_folder": "results/debug/spectron_mini", "text_lm_sentences": 1500, "text_lm_steps": 20,
    "text_lm_vocab": 120, "text_lm_batch_size": 16,
    "text_lm_config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512},
    "encoder_ctc_epochs": 1, "encoder_ctc_batch_size": 8,
    "encoder_ctc_config": {"d_model": 32, "num_layers": 1, "nhead": 2, "d_ffn": 64, "kernel_size": 7, "dropout": 0.0},
    "batch_size": 4, "number_of_epochs": 1, "num_samples": 1, "max_valid_utterances": 4, "griffin_lim_iters": 2,
    "prenet_bottleneck": 32, "postnet_hidden": 32, "max_continuation_seconds": 1.5,
}



def pretrain_if_missing(hparams, manifests):
    """Mini setup: make the pre-trained text LM (and, with the conformer encoder, the CTC encoder) when absent."""
    if not hparams["mini_corpus"]:
        return
    lm_dir = Path(hparams["lm_source"])
    # the made-on-first-use parts (corpus, pre-trained LM and encoder) have their own
    # seed (default: the run's), so that a seed sweep shares them, as the paper's runs do
    seed = hparams.get("pretrain_seed", hparams["seed"])
    hparams = dict(hparams, seed=seed)
    lm_settings = {key: hparams[key] for key in ("seed", "text_lm_sentences", "text_lm_config", "text_lm_vocab",
                                                 "text_lm_tokenizer", "text_lm_steps", "text_lm_batch_size",
                                                 "text_lm_lr")}
    fact_world = hparams.get("text_lm_fact_world") or None
    if fact_world and not fact_world.get("repeats"):
        fact_world = None  # repeats 0: the plain grammar text
    if fact_world:  # only recorded when used: older caches stay valid
        lm_settings["text_lm_fact_world"] = fact_world
    encoder_dir = Path(hparams["encoder_source"])
    encoder_settings = {key: hparams[key] for key in (
        "seed", "sample_rate", "n_mels", "feature_spec", "prompt_seconds", "encoder_ctc_config", "encoder_ctc_epochs",
        "encoder_ctc_batch_size", "encoder_ctc_lr", "encoder_ctc_spec_augment")}
    check_pretrained_settings(lm_dir, lm_settings, "config.json")
    if hparams["encoder_name"] == "conformer":
        check_pretrained_settings(encoder_dir, encoder_settings, "encoder_config.json")
    if not (lm_dir / "config.json").is_file():
        _pretrain_text_lm(hparams, manifests, lm_dir, lm_settings, fact_world)
    if hparams["encoder_name"] == "conformer" and not (encoder_dir / "encoder_config.json").is_file():
        _pretrain_encoder(hparams, manifests, encoder_dir, encoder_settings)
    _grammar_rehearsal_text_if_missing(hparams)


def _grammar_rehearsal_text_if_missing(hparams):
    """Text rehearsal from a missing ``<pretrained_folder>/grammar_text.txt``: write the grammar's text (the
    plain mini LM's, no fact world) there - what a model whose LM read nothing (the random-LM arm of
    recipes/SpokenQA) rehearses with the settings of the arms whose LM did."""
    path = hparams.get("rehearsal_text")
    if not (hparams.get("w_text_rehearsal") or 0) > 0 or not path or Path(path).is_file():
        return
    if Path(path) != Path(hparams["pretrained_folder"]) / "grammar_text.txt":
        return  # any other missing file is refused by train.py's checks, with its name
    from spectron_kit.data.minicorpus import ensure_text_corpus

    run_on_main(ensure_text_corpus, args=[path, hparams["text_lm_sentences"], hparams["seed"]])
    console.print(f"rehearsal text: {path} (the grammar's {hparams['text_lm_sentences']} sentences, no fact world)")


def _pretrain_text_lm(hparams, manifests, lm_dir, lm_settings, fact_world):
    """The mini setup's text LM: a tokenizer and a small causal LM trained on the grammar's text (and the
    fact world's, when asked), validated on the valid transcripts."""
    from spectron_kit.data.minicorpus import ensure_text_corpus
    from spectron_kit.pretrain import pretrain_text_lm

    extra = None
    if fact_world:
        from spectron_kit.data.factworld import fact_world_text

        unknown = sorted(set(fact_world) - {"seed", "repeats"})
        if unknown:
            raise RecipeConfigError(f"text_lm_fact_world has keys {unknown}; give only seed and repeats")
        extra = fact_world_text(fact_world["seed"], fact_world["repeats"], hparams["seed"])
    text_file = ensure_text_corpus(lm_dir.parent / "text_corpus.txt", hparams["text_lm_sentences"],
                                   hparams["seed"], extra=extra)
    sentences = [s.lower() for s in Path(text_file).read_text().splitlines() if s.strip()]
    valid = [r["text"] for r in read_manifest(manifests[hparams["valid_splits"][0]])]
    run_on_main(pretrain_text_lm, kwargs={
        "train_sentences": sentences, "valid_sentences": valid, "out_dir": lm_dir,
        "lm_config": hparams["text_lm_config"], "vocab_size": hparams["text_lm_vocab"],
        "tokenizer_type": hparams["text_lm_tokenizer"],
        "steps": hparams["text_lm_steps"], "batch_size": hparams["text_lm_batch_size"],
        "lr": hparams["text_lm_lr"], "seed": hparams["seed"]})
    run_on_main(write_pretrained_settings, args=[lm_dir, lm_settings])


def _pretrain_encoder(hparams, manifests, encoder_dir, encoder_settings):
    """The mini setup's speech encoder: a Conformer trained with CTC on the prompts' transcripts."""
    from spectron_kit.pretrain import pretrain_ctc_encoder

    rate = hparams["sample_rate"]
    prompt = to_samples(hparams["prompt_seconds"], rate)

    def prompts(names):  # the encoder only ever sees prompts: train it on them
        items = []
        for name in names:
            for row in read_manifest(manifests[name]):
                if row["prompt_text"]:
                    items.append((load_segment(row, rate)[:prompt], row["prompt_text"]))
        return items

    run_on_main(pretrain_ctc_encoder, kwargs={
        "train_items": prompts(hparams["train_splits"]), "valid_items": prompts(hparams["valid_splits"]),
        "out_dir": encoder_dir.parent, "feature_spec": hparams["feature_spec"],
        "encoder_kwargs": dict(hparams["encoder_ctc_config"], spec=hparams["feature_spec"]),
        "epochs": hparams["encoder_ctc_epochs"], "batch_size": hparams["encoder_ctc_batch_size"],
        "lr": hparams["encoder_ctc_lr"], "seed": hparams["seed"],
        "augment": hparams["prompt_augment"] if hparams["encoder_ctc_spec_augment"] else None})
    run_on_main(write_pretrained_settings, args=[encoder_dir, encoder_settings])


PRETRAIN_SETTINGS = "pretrain_settings.json"


def write_pretrained_settings(folder, settings):
    """Record the settings a cached pre-trained part was made with (next to its weights)."""
    (Path(folder) / PRETRAIN_SETTINGS).write_text(json.dumps(to_jsonable(settings), indent=2, sort_keys=True))


def check_pretrained_settings(folder, settings, marker):
    """Refuse to reuse a cached pre-trained part made with other settings (the cache is keyed by seed only).

    Arguments:
        folder: the pre-trained part's folder.
        settings: the settings this run would pre-train it with.
        marker: the file whose presence means the part exists.
    """
    folder = Path(folder)
    record = folder / PRETRAIN_SETTINGS
    if not (folder / marker).is_file():
        return
    if not record.is_file():
        console.print(f"warning: {folder} has no {PRETRAIN_SETTINGS} (made by an older version); reusing it as is")
        return
    stored, wanted = json.loads(record.read_text()), to_jsonable(settings)
    changed = [key for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
    if changed:
        shown = ", ".join(f"{key} {stored.get(key)!r} -> {wanted.get(key)!r}" for key in changed[:3])
        raise RecipeConfigError(
            f"{folder} was pre-trained with other settings ({shown}); pass --pretrained_folder=<a new folder> "
            f"to pre-train for these settings, or delete {folder}")


