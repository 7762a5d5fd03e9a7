#!/usr/bin/env python3
"""Zero-shot spoken QA with a trained Spectron bundle (the paper's Table 2 protocol).

    python recipes/SpokenQA/evaluate.py recipes/SpokenQA/hparams/evaluate.yaml \\
        --model_dir=results/spectron_mini/1234/bundle \\
        --dataset=llama_questions --data_path=/data/LLaMA-Questions

Writes the question manifest (``spokenqa_prepare.py``), lets the model hear
each question and write + speak its answer, and scores both answers
(``spectron_kit.evaluation.qa``): ``results.json``, ``per_question.csv``,
``results.md`` (accuracy with 95% bootstrap intervals, the paper's numbers
beside them) and ``answers/*.wav`` in ``output_folder``.

Authors: spectron-kit contributors
"""
import logging
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # spokenqa_prepare lives beside this script
try:
    import spectron_kit  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

import speechbrain as sb  # noqa: E402

from spectron_kit import recipe  # noqa: E402
from spectron_kit.evaluation.qa import evaluate_qa, write_qa_report  # noqa: E402
from spectron_kit.model import SpectronModel, check_bundle_source  # noqa: E402
from spokenqa_prepare import prepare_llama_questions, prepare_web_questions, read_qa_manifest  # noqa: E402

logger = logging.getLogger(__name__)
ABOUT = recipe.RecipeHelp.for_script(__file__, __doc__, default_yaml="hparams/evaluate.yaml",
                                    run_options=("device", "noprogressbar", "log_config"))
DATASETS = ("llama_questions", "web_questions")


@recipe.exit_on_config_error
def main(argv=None):
    """Run the spoken-QA evaluation; returns ``(result, report paths)``."""
    def check(hparams_file, parsed, typed, run_opts):  # before the bundle and the scorers are loaded
        if parsed.get("dataset", "llama_questions") not in DATASETS:
            raise recipe.RecipeConfigError(f"--dataset={parsed['dataset']}: choose one of {', '.join(DATASETS)}")
        if parsed.get("model_dir"):
            check_bundle_source(parsed["model_dir"])
        if parsed.get("data_path") and not Path(parsed["data_path"]).exists():
            raise recipe.RecipeConfigError(f"--data_path={parsed['data_path']}: no such file or folder; pass the "
                                           "LLaMA-Questions folder or the WebQuestions JSON")
        return parsed, run_opts

    loaded = recipe.load_recipe(sys.argv[1:] if argv is None else argv, adjust=check, about=ABOUT)
    hparams_file, run_opts, overrides, hparams = loaded.hparams_file, loaded.run_opts, loaded.overrides, loaded.hparams
    out_dir = Path(hparams["output_folder"])
    recipe.lock_run_folder(out_dir, what="spoken-QA evaluation")
    sb.create_experiment_directory(experiment_directory=str(out_dir), hyperparams_to_save=hparams_file,
                                   overrides=overrides)
    recipe.quiet_library_loggers()
    if hparams["dataset"] == "llama_questions":
        manifest = prepare_llama_questions(hparams["data_path"], hparams["save_folder"],
                                           hparams["max_question_seconds"])
    else:
        manifest = prepare_web_questions(hparams["data_path"], hparams["save_folder"], hparams["tts_name"],
                                         hparams["tts_voice"], hparams["max_question_seconds"], hparams["limit"])
    rows = read_qa_manifest(manifest)
    if not rows:
        raise recipe.RecipeConfigError(f"no question of {hparams['data_path']} is left (see {manifest}); "
                                       "raise --max_question_seconds or set it to null")
    device = run_opts["device"] if run_opts.get("device") else "cpu"
    model = SpectronModel.from_pretrained(hparams["model_dir"], map_location=device)
    result = evaluate_qa(model, rows, hparams["transcriber"], answer_seconds=hparams["answer_seconds"],
                         batch_size=hparams["batch_size"], do_sample=hparams["do_sample"], seed=hparams["seed"],
                         n_resamples=hparams["n_resamples"], out_dir=out_dir, num_samples=hparams["num_samples"],
                         progress=not run_opts.get("noprogressbar", False))
    setup = {"model": str(hparams["model_dir"]), "data": str(hparams["data_path"]), "manifest": str(manifest),
             "command": " ".join(["python", "recipes/SpokenQA/evaluate.py", str(hparams_file)]
                                 + list(sys.argv[1:] if argv is None else argv)[1:])}
    paths = write_qa_report(result, out_dir, hparams["dataset"], setup)
    print((out_dir / "results.md").read_text())
    return result, paths


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
