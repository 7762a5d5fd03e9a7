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
