#!/usr/bin/env python3
"""Mini setup, step 1 on its own: make the corpus, the pre-trained text LM and (``spectron_mini_ctc.yaml``) the CTC
encoder; the default mini setup hears with Whisper tiny.en, which needs no pre-training here.

    python recipes/LibriLight/pretrain.py recipes/LibriLight/hparams/spectron_mini.yaml

``train.py`` runs this step itself on first use; running it first (or again)
prepares everything a set of training runs will share: the mini corpus in
``data_folder``, the manifests, ``<pretrained_folder>/text_lm`` and
``<pretrained_folder>/ctc/encoder``, each with the settings it was made with
(``pretrain_settings.json``). It resumes part by part: a finished part is
reused, a missing one is made; a part made with other settings is refused
with the fix named. It takes the same overrides as ``train.py``
(``--pretrain_seed=7``, ``--text_lm_steps=600``, ``--debug``).

Authors: spectron-kit contributors
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train.py and librilight_prepare beside this script

from train import console, exit_on_config_error, load_run, prepare_data, pretrain_if_missing  # noqa: E402

from spectron_kit.recipe import RecipeConfigError  # noqa: E402


@exit_on_config_error
def main(argv=None):
    _, _, _, hparams, _ = load_run(argv if argv is not None else sys.argv[1:])
    if not hparams["mini_corpus"]:
        raise RecipeConfigError("pretrain.py makes the mini setup's corpus, text LM and encoder; this YAML uses "
                                "pre-trained hub models (mini_corpus: False): run train.py directly")
    manifests = prepare_data(hparams)
    pretrain_if_missing(hparams, manifests)
    parts = {"manifests": hparams["manifest_folder"], "text LM": hparams["lm_source"]}
    if hparams["encoder_name"] == "conformer":
        parts["CTC encoder"] = hparams["encoder_source"]
    else:
        parts["speech encoder"] = f"{hparams['encoder_source']} ({hparams['encoder_name'].capitalize()}, nothing to pre-train)"
    for name, path in parts.items():
        console.print(f"{name}: {path}")
    return parts


if __name__ == "__main__":
    main()
