"""Before training: the manifests (and the mini corpus), the model assembled from the YAML with what it
reads from the training data (phoneme inventory, frame statistics), and the cached prompt encodings of a
fixed encoder."""
import torch
from rich.console import Console
from speechbrain.utils.distributed import run_on_main

from data_pipelines import prompt_audio
from librilight_prepare import prepare
from spectron_kit.audio import to_samples
from spectron_kit.data.manifest import load_segment, read_manifest
from spectron_kit.model import SpectronModel
from spectron_kit.model_config import SpectronConfig
from spectron_kit.phonemes import vocabulary_from_rows
from spectron_kit.progress import progress_bar
from spectron_kit.recipe import RecipeConfigError

console = Console()


def prepare_data(hparams):
    """Make the mini corpus if asked, then write manifests. Returns {split: csv}."""
    splits = list(hparams["train_splits"]) + list(hparams["valid_splits"]) + list(hparams["test_splits"])
    if hparams["mini_corpus"]:
        from spectron_kit.data.minicorpus import ensure_mini_corpus

        run_on_main(ensure_mini_corpus, kwargs={"root": hparams["data_folder"], "size": hparams["mini_corpus_size"],
                                                "seed": hparams.get("pretrain_seed", hparams["seed"]),
                                                "workers": hparams["mini_corpus_workers"],
                                                "spoken_facts": hparams.get("mini_corpus_spoken_facts")})
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
            wavs = [prompt_audio(r, rate, prompt) for r in chunk]
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
