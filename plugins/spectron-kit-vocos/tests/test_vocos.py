"""The Vocos plugin: the vocoder contract, registry build by name, training that lowers the loss, save/load."""
import math

import pytest
import soundfile
import torch

from spectron_kit import build
from spectron_kit.features import FeatureSpec, FeatureSpecMismatch

from spectron_kit_vocos import VocosVocoder, register_vocoders
from spectron_kit_vocos.train import train

SPEC = FeatureSpec(sample_rate=16000, n_fft=256, win_length=256, hop_length=64, n_mels=24)
TINY = {"dim": 32, "hidden": 64, "num_layers": 2}


def tone(seconds=0.5, f0=220.0):
    t = torch.arange(int(seconds * 16000)) / 16000
    return 0.3 * torch.sin(2 * math.pi * f0 * t) * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))


def test_contract_lengths_follow_the_spec_and_padding_does_not_leak():
    vocoder = VocosVocoder(spec=SPEC, **TINY).eval()
    frontend = build("frontend", "log_mel", spec=SPEC)
    feats, lengths = frontend(torch.stack([tone(0.5), tone(0.5, 330.0)]))
    lengths = torch.tensor([lengths[0], lengths[1] - 10])
    with torch.no_grad():
        wav, wav_lengths = vocoder(feats, lengths)
        alone, _ = vocoder(feats[1:, : int(lengths[1])], lengths[1:])
    assert wav_lengths.tolist() == [SPEC.num_samples(int(n)) for n in lengths]
    assert wav.shape == (2, SPEC.num_samples(feats.shape[1]))
    assert torch.all(wav[1, int(wav_lengths[1]):] == 0)
    # the padded item's valid samples equal those of the same frames alone, except within the
    # receptive field of the cut (3 convolutions of 7 frames: 9 frames, plus the STFT window)
    n = int(wav_lengths[1]) - SPEC.n_fft - 9 * SPEC.hop_length
    torch.testing.assert_close(wav[1, :n], alone[0, :n], atol=1e-4, rtol=1e-3)
    with pytest.raises(ValueError, match="expects n_mels=24"):
        vocoder(torch.zeros(1, 5, 80))


def test_built_by_name_through_the_hook(tmp_path):
    from spectron_kit.registry import get_registry

    class Plugin:
        register_vocoders = staticmethod(register_vocoders)

    get_registry().register_plugin(Plugin(), name="spectron-kit-vocos-test")
    vocoder = build("vocoder", "vocos", spec=SPEC, **TINY)
    assert isinstance(vocoder, VocosVocoder) and vocoder.sample_rate == 16000


def test_training_lowers_the_loss_and_the_saved_vocoder_reloads(tmp_path):
    data = tmp_path / "data" / "1" / "1"
    data.mkdir(parents=True)
    for i, f0 in enumerate((180.0, 240.0, 300.0)):
        soundfile.write(data / f"1-1-{i:04d}.flac", tone(1.5, f0).numpy(), 16000)
    out = tmp_path / "vocos"
    record = train(tmp_path / "data", out, SPEC, steps=60, batch_size=4, segment_seconds=0.4, lr=3e-3,
                   save_every=30, arch=TINY, progress=False)
    first, last = record["history"][0]["loss"], record["history"][-1]["loss"]
    assert record["steps"] == 60 and last < 0.8 * first
    loaded = VocosVocoder(source=out).eval()
    assert loaded.arch == {**loaded.arch, **TINY} and loaded.spec == SPEC
    feats = torch.randn(1, 12, 24)
    trained = VocosVocoder(spec=SPEC, **TINY)
    trained.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=False)["model"])
    with torch.no_grad():
        torch.testing.assert_close(loaded(feats)[0], trained.eval()(feats)[0])
    # a different spec is refused with the fields named
    with pytest.raises(FeatureSpecMismatch, match="n_mels"):
        VocosVocoder(source=out, spec=FeatureSpec(n_mels=80, n_fft=256, win_length=256, hop_length=64))
    # rerunning resumes: no step is repeated
    again = train(tmp_path / "data", out, SPEC, steps=60, arch=TINY, progress=False)
    assert again["steps"] == 60 and again["history"] == record["history"]


def test_missing_source_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="spectron_kit_vocos.train"):
        VocosVocoder(source=tmp_path)
