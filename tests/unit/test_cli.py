"""spectron-kit command line: prompts that may surprise the user are named in warnings."""
import numpy as np
import pytest
import soundfile
import torch

from spectron_kit.audio import load_audio
from spectron_kit.cli import prompt_warnings


def test_resampled_mixed_down_short_and_silent_prompts_are_reported(tmp_path):
    path = tmp_path / "stereo.wav"
    t = np.arange(int(44100 * 2.0)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    soundfile.write(path, np.stack([tone, tone], axis=1), 44100)
    prompt = load_audio(path, 16000)
    notes = prompt_warnings(path, prompt, 16000, 3.0)
    assert notes[0] == f"{path} is 44100 Hz; resampled to the model's 16000 Hz"
    assert notes[1] == f"{path} has 2 channels; mixed down to mono"
    assert notes[2].startswith("the prompt is 2.00 s, shorter than the 3 s the model was trained on")
    assert len(notes) == 3
    assert prompt_warnings(path, prompt, 16000) == notes[:2]  # no trained length given (qa): no length note

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(16000 * 4, dtype="float32"), 16000)
    notes = prompt_warnings(silent, load_audio(silent, 16000)[:48000], 16000, 3.0)
    assert notes == ["the prompt is silent (peak amplitude 0.0e+00): the model has no speech to continue"]
    fine = tmp_path / "fine.wav"
    soundfile.write(fine, 0.1 * np.random.default_rng(0).standard_normal(16000 * 3).astype("float32"), 16000)
    assert prompt_warnings(fine, torch.from_numpy(soundfile.read(fine, dtype="float32")[0]), 16000, 3.0) == []


def test_damaged_audio_is_named(tmp_path):
    path = tmp_path / "cut.flac"
    soundfile.write(path, 0.1 * np.random.default_rng(0).standard_normal(16000 * 3).astype("float32"), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still says 3 s
    with pytest.raises(ValueError, match=r"cannot decode audio file .*cut.flac: .*re-encode the file or leave it out"):
        load_audio(path, 16000)


def test_non_finite_samples_are_refused_and_the_cli_s_own_errors_exit_2(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_model import tiny_model

    from spectron_kit.cli import main as cli

    bad = tmp_path / "nan.wav"
    data = 0.1 * np.random.default_rng(0).standard_normal(16000 * 3).astype("float32")
    data[100:103] = [np.nan, np.inf, -np.inf]
    soundfile.write(bad, data, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"audio file .*nan.wav has 3 NaN or infinite samples; repair or re-export it"):
        load_audio(bad, 16000)
    bundle = tiny_model().save_pretrained(tmp_path / "bundle")
    out = tmp_path / "o.wav"
    assert cli(["continue", "--model", str(bundle), str(bad), "-o", str(out)]) == 2
    assert "has 3 NaN or infinite samples" in capsys.readouterr().out and not out.exists()
    short = tmp_path / "short.wav"
    soundfile.write(short, data[:1600], 16000)
    assert cli(["continue", "--model", str(bundle), str(short), "-o", str(out)]) == 2  # the CLI's own check
    assert "is 0.10 s long; give at least 0.5 s of speech" in capsys.readouterr().out and not out.exists()
