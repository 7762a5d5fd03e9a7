"""tools/make_vad.py on generated speech: voice-activity files that librilight_prepare.py cuts along."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "recipes" / "LibriLight"))

pytest.importorskip("webrtcvad")
pytest.importorskip("espeakng_loader")


def test_vad_files_from_own_audio_feed_the_libri_light_preparation(tmp_path):
    import librilight_prepare as prep

    from spectron_kit.data import espeak
    from spectron_kit.data.manifest import read_manifest

    sentences = ["The farmer walked home across the quiet field before the rain began.",
                 "Then the children counted the red apples in the basket one by one."]
    parts, truth, t = [], [], 0.5
    rng = np.random.default_rng(0)
    parts.append(np.zeros(8000, np.float32))
    for text in sentences:
        speech = espeak.synthesize(text, voice="en-us+m1")
        wav = np.asarray(speech.wav, np.float32)
        rate = speech.sample_rate
        truth.append((t, t + len(wav) / rate))
        parts += [wav, np.zeros(int(1.5 * rate), np.float32)]  # a 1.5 s pause between the sentences
        t += len(wav) / rate + 1.5
    audio = np.concatenate(parts) + 1e-4 * rng.standard_normal(sum(len(p) for p in parts)).astype(np.float32)
    path = tmp_path / "mine" / "small" / "7" / "1" / "7-1-0000.flac"
    path.parent.mkdir(parents=True)
    soundfile.write(path, audio, rate)
    (tmp_path / "mine" / "small" / "7" / "1" / "broken.flac").write_bytes(b"not audio")

    proc = subprocess.run([sys.executable, str(REPO / "tools" / "make_vad.py"), str(tmp_path / "mine" / "small")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "written: 1" in proc.stdout and "skipped (unreadable audio): 1" in proc.stdout
    segments = json.loads(path.with_suffix(".json").read_text())["voice_activity"]
    assert len(segments) == 2  # the two sentences, the pause between them found
    for (start, end), (true_start, true_end) in zip(segments, truth):
        assert abs(start - true_start) < 0.3 and abs(end - true_end) < 0.3
    out = prep.prepare_librilight(tmp_path / "mine", tmp_path / "manifests", ["small"], min_seconds=2.0,
                                  progress=False)
    rows = read_manifest(out["small"])
    # the preparation joins voice-activity segments into utterances of min..max seconds: one here
    assert [r["id"] for r in rows] == ["7-1-0000-0000"]
    assert rows[0]["start"] == pytest.approx(segments[0][0]) and rows[0]["end"] == pytest.approx(segments[1][1])
