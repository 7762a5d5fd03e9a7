"""tools/overfit.py end to end at the recipe's --debug sizes: the pathway can still learn what it is shown."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("espeakng_loader")


def test_overfit_check_learns_below_the_copy_predictor_and_reports_every_condition(tmp_path):
    out = tmp_path / "overfit"
    env = {**os.environ, "SPECTRON_KIT_LOAD_PLUGINS": "", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "overfit.py"), "--debug", "--utterances", "2", "--minutes", "0.6",
         "--no-whisper", "--out", str(out), "--", f"--data_folder={tmp_path}/corpus", "--lr=0.003"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((out / "overfit.json").read_text())
    assert record["utterances"] == 2 and record["speaker"] == "101"
    assert all(i.startswith("101-") for i in record["ids"])
    # the decoder learnt the two utterances better than "say the previous true frame again"
    assert record["train_spec"] < record["repeat_spec"], record
    speech = record["speech"]
    for cond in ("vocoded", "teacher_forced", "generated", "flat"):
        assert "frame_wer" in speech[cond] and "frame_l1" in speech[cond]
    assert speech["teacher_forced"]["frame_l1"]["value"] < speech["flat"]["frame_l1"]["value"]
    table = (out / "overfit.md").read_text()
    assert "| (c) teacher-forced |" in table and "repeat the previous true frame" in table
    assert "Overfit check: 2 utterances of voice 101" in proc.stdout
    assert (tmp_path / "corpus" / "minicorpus.json").is_file()  # the corpus went where the override said

    # the lever check on the same bundle: every condition scored by the frame recogniser, phonemes compared
    manifest = tmp_path / "corpus" / "manifests" / "valid.csv"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lever_check.py"), str(out / "run" / "bundle"), "--manifest",
         str(manifest), "--ctc", str(tmp_path / "corpus" / "pretrained" / "1234" / "ctc"), "--num-utterances", "2",
         "--no-whisper", "--true-phonemes", "--json", str(tmp_path / "lever.json")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lever = json.loads((tmp_path / "lever.json").read_text())
    assert lever["utterances"] == 2
    assert set(lever["wer"]) == {"vocoded", "teacher_forced", "free_true_text", "free_true_phonemes"}
    assert all(lever["wer"][c]["ctc"] >= 0 and lever["wer"][c]["whisper"] is None for c in lever["wer"])
    assert 0 <= lever["phoneme_error_rate_free"] <= 100 * 3  # edits over the true phonemes
    assert "free_true_text" in proc.stdout and "phoneme error rate" in proc.stdout
