#!/usr/bin/env python3
"""Evaluate a trained Spectron bundle on speech continuation (the paper's Table 1/3 protocol).

Command (from the repository root)::

    python recipes/LibriLight/evaluate.py recipes/LibriLight/hparams/evaluate.yaml \\
        --model_dir=results/spectron_mini/1234/bundle \\
        --test_folder=data/LibriSpeech/test-clean \\
        --lm_scorer_source=gpt2

``--test_folder`` may list several splits
(``--test_folder=[data/mini_corpus/test_seen,data/mini_corpus/test]``): each
gets its report in ``output_folder/<split>`` and ``output_folder/splits.md``
sets them side by side.

Any top-level key of the YAML can be overridden the same way
(``--num_utterances=200 --length_rule=fixed --fixed_seconds=4``); an unknown
key or a value of the wrong type stops the run before anything is loaded.
``--device=cuda:0`` (a SpeechBrain run option) puts the model on a GPU.

Steps: write a manifest for ``test_folder`` (``librilight_prepare.prepare_librispeech``),
load the bundle (``SpectronModel.from_pretrained``), run
``spectron_kit.evaluation.continuation.evaluate_continuation`` (3 s prompt ->
transcript + text continuation + speech; ASR, text-LM perplexity, speaker
similarity with two baselines, predicted MOS, prompt WER, text/speech WER,
speed), and write into ``output_folder``: ``results.json``, ``results.md``
(with the paper's numbers side by side) and ``samples.html`` (players,
spectrograms and texts per utterance; open it from disk).

Authors: spectron-kit contributors
"""
import logging
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # librilight_prepare lives beside this script
try:
    import spectron_kit  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

import speechbrain as sb  # noqa: E402
from speechbrain.utils.distributed import run_on_main  # noqa: E402

from spectron_kit import recipe  # noqa: E402
from spectron_kit.data.manifest import read_manifest, validate_manifest  # noqa: E402
from spectron_kit.evaluation.continuation import PROTOCOL_CONTROLS, check_protocol, evaluate_continuation  # noqa: E402
from spectron_kit.evaluation.scorers import EVALUATION_COMPONENTS, build_scorers  # noqa: E402
from spectron_kit.evaluation.report import split_comparison, write_report  # noqa: E402
from spectron_kit.model import SpectronModel, check_bundle_source  # noqa: E402

logger = logging.getLogger(__name__)
ABOUT = recipe.RecipeHelp.for_script(__file__, __doc__, default_yaml="hparams/evaluate.yaml",
                                    run_options=("device", "noprogressbar", "log_config"))



def check_overrides(hparams_file, overrides):
    """Fail before loading anything when an override names an unknown key or has a bad value.

    The shared recipe checks (unknown key with the closest known one, wrong
    type, empty ``!PLACEHOLDER``), then the protocol controls' ranges.

    Arguments:
        hparams_file: the recipe's YAML file.
        overrides: SpeechBrain override string (or dict).

    Returns:
        dict of the parsed overrides.
    """
    parsed = recipe.check_overrides(hparams_file, overrides)
    check_protocol_overrides(parsed)
    return parsed


def check_protocol_overrides(parsed):
    """The protocol controls among parsed overrides, in range (one line naming the override)."""
    try:
        check_protocol(**{k: v for k, v in parsed.items() if k in PROTOCOL_CONTROLS})
    except ValueError as err:
        raise recipe.RecipeConfigError(f"--{err}") from None


def prepare_test_manifest(test_folder, save_folder, prompt_seconds):
    """Write (or reuse) the manifest of a LibriSpeech-layout split folder.

    Arguments:
        test_folder: the split folder (``.../LibriSpeech/test-clean``).
        save_folder: where ``<split>.csv`` goes.
        prompt_seconds: prompt length (fills ``prompt_text`` from word alignments).

    Returns:
        Path of the manifest CSV.
    """
    from librilight_prepare import prepare_librispeech

    test_folder = Path(test_folder)
    if not test_folder.is_dir():
        raise recipe.RecipeConfigError(f"test_folder {str(test_folder)!r} is not a folder; pass a LibriSpeech-layout "
                                       "split such as --test_folder=data/LibriSpeech/test-clean")
    kwargs = {"data_folder": str(test_folder.resolve().parent), "save_folder": str(save_folder),
              "splits": [test_folder.resolve().name], "prompt_seconds": float(prompt_seconds)}
    run_on_main(prepare_librispeech, kwargs=kwargs)
    return Path(save_folder) / f"{test_folder.resolve().name}.csv"


@recipe.exit_on_config_error
def main(argv=None):
    """Run the evaluation recipe.

    Arguments:
        argv: command-line arguments (default ``sys.argv[1:]``): the YAML
            file, then ``--key=value`` overrides and SpeechBrain run options.

    Returns:
        ``(result, paths)``: the ``evaluate_continuation`` result and the
        report files written.
    """
    recipe.reuse_freed_memory()  # CPU inference otherwise spends much of its time in page faults

    def check(hparams_file, overrides, typed, run_opts):  # before the scorers and encoders are loaded
        check_protocol_overrides(overrides)  # (load_recipe has run the shared checks: keys, types)
        if overrides.get("model_dir"):
            check_bundle_source(overrides["model_dir"])
        return overrides, run_opts

    loaded = recipe.load_recipe(sys.argv[1:] if argv is None else argv, adjust=check, about=ABOUT)
    hparams_file, run_opts, overrides, hparams = loaded.hparams_file, loaded.run_opts, loaded.overrides, loaded.hparams
    protocol = {k: hparams[k] for k in PROTOCOL_CONTROLS if k in hparams}
    check_protocol(**protocol)
    out_dir = Path(hparams["output_folder"])
    recipe.lock_run_folder(out_dir, what="evaluation")  # two evaluations into one folder would mix their reports
    sb.create_experiment_directory(experiment_directory=str(out_dir), hyperparams_to_save=hparams_file,
                                   overrides=overrides)
    recipe.quiet_library_loggers()

    folders, manifests, names = prepare_splits(hparams)
    device = run_opts["device"] if run_opts.get("device") else "cpu"
    if str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning("--device=%s but no GPU is available; using the CPU", device)
            device = "cpu"
    model = load_model(hparams, device)

    scorer_names = list(hparams.get("scorers") or ())
    if hparams.get("frame_ctc_source") and "frame_ctc_wer" not in scorer_names:
        scorer_names.append("frame_ctc_wer")
    scorers = build_scorers(scorer_names, options=hparams.get("scorer_options"),
                            **{k: hparams.get(k) for k in EVALUATION_COMPONENTS})
    command = " ".join(["python", "recipes/LibriLight/evaluate.py", str(hparams_file)]
                       + list(sys.argv[1:] if argv is None else argv)[1:])
    results, reports = {}, {}
    for folder, manifest, name in zip(folders, manifests, names):
        # one folder: its report in output_folder; several: each in output_folder/<split>, then side by side
        split_dir = out_dir if len(folders) == 1 else out_dir / name
        rows, _ = validate_manifest(read_manifest(manifest), target_sr=model.frontend.spec.sample_rate,
                                    progress=False)  # logs skips
        result = evaluate_continuation(model, rows, scorers=scorers, **protocol, out_dir=split_dir,
                                       progress=not run_opts.get("noprogressbar", False))
        setup = {"model": str(hparams["model_dir"]), "test_set": str(folder), "manifest": str(manifest),
                 "device": str(device), "command": command}
        reports[name] = write_report(result, split_dir, setup=setup)
        results[name] = result
        logger.info("report: %s, %s, %s", reports[name]["markdown"], reports[name]["json"], reports[name]["html"])
    if len(folders) == 1:
        return results[names[0]], reports[names[0]]
    comparison = out_dir / "splits.md"
    comparison.write_text("\n".join([f"# {hparams['model_dir']}: {', '.join(names)}", "",
                                      f"`{command}`", "", *split_comparison(results)]), encoding="utf-8")
    logger.info("splits side by side: %s", comparison)
    return results, {**reports, "splits": comparison}


def prepare_splits(hparams):
    """``(folders, manifests, names)`` of ``--test_folder`` (one folder or a list), each prepared and checked:
    a folder without transcripts, or two splits with the same name, is one line."""
    folders = hparams["test_folder"] if isinstance(hparams["test_folder"], (list, tuple)) else [hparams["test_folder"]]
    manifests = [prepare_test_manifest(folder, hparams["save_folder"], hparams["prompt_seconds"])
                 for folder in folders]
    for folder, manifest in zip(folders, manifests):
        if not read_manifest(manifest):  # say why, instead of a later "no utterance is long enough"
            audio = sum(1 for p in Path(folder).rglob("*") if p.suffix.lower() in (".flac", ".wav"))
            raise recipe.RecipeConfigError(
                f"--test_folder={folder}: none of its {audio} audio files has a transcript; the evaluation needs "
                "<speaker>-<chapter>.trans.txt files beside the audio (LibriSpeech layout: one '<id> <TEXT>' line "
                "per utterance)")
    names = [Path(folder).resolve().name for folder in folders]
    if len(set(names)) != len(names):
        raise recipe.RecipeConfigError(f"--test_folder names two splits with the same folder name ({names}); "
                                       "give folders with different names")
    return folders, manifests, names


def load_model(hparams, device):
    """The bundle of ``--model_dir`` on ``device``, with ``--vocoder_name`` (e.g. a plugin's neural vocoder)
    instead of its own vocoder when given."""
    overrides = {}
    if hparams.get("vocoder_name"):
        from spectron_kit import build
        from spectron_kit.features import FeatureSpec
        from spectron_kit.model import FEATURE_SPEC_FILE

        spec = FeatureSpec.load(Path(hparams["model_dir"]) / FEATURE_SPEC_FILE)
        kwargs = {"source": hparams["vocoder_source"]} if hparams.get("vocoder_source") else {}
        overrides["vocoder"] = build("vocoder", hparams["vocoder_name"], spec=spec, **kwargs)
    model = SpectronModel.from_pretrained(hparams["model_dir"], map_location=device, **overrides)
    if abs(model.prompt_seconds - float(hparams["prompt_seconds"])) > 1e-6:
        logger.warning("the model was trained with %.1f s prompts but is evaluated with %.1f s",
                       model.prompt_seconds, hparams["prompt_seconds"])
    return model


if __name__ == "__main__":
    main()
