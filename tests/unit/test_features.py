"""Log-mel front end, FeatureSpec and the Griffin-Lim vocoder."""
import math

import pytest
import torch
import torchaudio

from spectron_kit.features import FeatureSpec, FeatureSpecMismatch, LogMelFrontend
from spectron_kit.vocoders import GriffinLimVocoder


def speechlike(seconds=1.0, rate=16000):
    t = torch.arange(int(seconds * rate)) / rate
    f0 = 120 + 40 * torch.sin(2 * math.pi * 2 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / rate
    wav = sum(torch.sin(k * phase) / k for k in range(1, 12))
    return 0.2 * wav * (0.6 + 0.4 * torch.sin(2 * math.pi * 3 * t))


def test_defaults_are_the_documented_ones():
    spec = FeatureSpec()
    assert (spec.sample_rate, spec.n_mels, spec.win_length, spec.hop_length, spec.n_fft) == (16000, 128, 800, 200, 1024)
    assert spec.frame_rate == 80.0


def test_log_mel_matches_torchaudio_reference():
    wav = speechlike()
    feats, lens = LogMelFrontend()(wav[None])
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=1024, win_length=800, hop_length=200, n_mels=128, power=1.0,
        norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect")(wav)
    expected = torch.log(torch.clamp(reference, min=1e-5)).T
    assert feats.shape == (1, 81, 128) and lens.tolist() == [81]
    assert torch.allclose(feats[0], expected, atol=1e-4)


def test_frame_lengths_follow_sample_lengths():
    frontend = LogMelFrontend(n_mels=40)
    feats, lens = frontend(torch.zeros(3, 4000), torch.tensor([4000, 2000, 199]))
    assert feats.shape == (3, 21, 40) and lens.tolist() == [21, 11, 1]


def test_normalisation_stats_round_trip():
    spec = FeatureSpec(n_mels=4, n_fft=256, win_length=200, hop_length=80, mean=[1, 2, 3, 4], std=[2, 2, 2, 2])
    plain = LogMelFrontend(spec=FeatureSpec(n_mels=4, n_fft=256, win_length=200, hop_length=80))
    normed = LogMelFrontend(spec=spec)
    wav = speechlike(0.3)[None]
    assert torch.allclose(normed.denormalize(normed(wav)[0]), plain(wav)[0], atol=1e-5)
    with pytest.raises(ValueError, match="mean has 2 values but n_mels=4"):
        FeatureSpec(n_mels=4, mean=[0, 0], std=[1, 1, 1, 1])


def test_log_floor_must_be_positive():
    # a zero floor would turn digital silence into -inf features
    for floor in (0.0, -1e-5):
        with pytest.raises(ValueError, match=rf"log_floor={floor!r}; use a positive floor such as 1e-5"):
            FeatureSpec(log_floor=floor)
    assert FeatureSpec(log_floor=1e-3).log_floor == 1e-3


def test_spec_mismatch_names_fields():
    a, b = FeatureSpec(), FeatureSpec(hop_length=256, f_max=8000.0)
    with pytest.raises(FeatureSpecMismatch) as err:
        a.check_matches(b)
    assert "hop_length: frontend=200 vs vocoder=256" in str(err.value)
    assert "f_max: frontend=None vs vocoder=8000.0" in str(err.value)
    FeatureSpec.from_dict(a.to_dict()).check_matches(a)
    with pytest.raises(ValueError, match="unknown FeatureSpec fields \\['hop'\\]"):
        FeatureSpec.from_dict({"hop": 3})


def test_griffin_lim_reconstructs_the_spectrogram():
    frontend, vocoder = LogMelFrontend(), GriffinLimVocoder(n_iter=32)
    wav = speechlike(1.0)
    feats, lens = frontend(wav[None])
    rebuilt, rebuilt_lens = vocoder(feats, lens)
    assert rebuilt_lens.tolist() == [16000] and rebuilt.shape == (1, 16000)
    again, _ = frontend(rebuilt)
    error = (again[0, 2:-2] - feats[0, 2:-2]).abs().mean()
    baseline = (feats[0] - feats[0].mean()).abs().mean()  # error of predicting the average
    assert error < 0.25 * baseline, (float(error), float(baseline))


def test_griffin_lim_equals_torchaudios_for_the_same_start():
    """The written-out loop (spectron_kit.vocoders.griffin_lim) is torchaudio's GriffinLim: same phase draw,
    same waveform, batched items independent of each other."""
    from spectron_kit.vocoders import griffin_lim

    frontend, vocoder = LogMelFrontend(), GriffinLimVocoder(n_iter=16)
    spec = vocoder.spec
    feats, lens = frontend(torch.stack([speechlike(0.5), 0.5 * speechlike(0.5).flip(0)]))
    mag = vocoder.magnitude(feats)
    torch.manual_seed(3)
    angles = torch.rand(mag.shape, dtype=torch.complex64)
    reference = torchaudio.transforms.GriffinLim(n_fft=spec.n_fft, n_iter=16, win_length=spec.win_length,
                                                 hop_length=spec.hop_length, power=1.0, momentum=0.99)
    torch.manual_seed(3)  # torchaudio draws its start the same way
    expected = reference(mag)
    ours = griffin_lim(mag, angles, 16, 0.99, spec)
    assert ours.shape == expected.shape == (2, (mag.shape[-1] - 1) * spec.hop_length)
    assert torch.allclose(ours, expected, atol=1e-4 * float(expected.abs().max())), \
        float((ours - expected).abs().max())
    alone = griffin_lim(mag[1:], angles[1:], 16, 0.99, spec)
    assert torch.allclose(alone, ours[1:], atol=1e-5)
    whole, _ = vocoder(feats, lens)  # the vocoder's own call draws its start from its seed
    torch.manual_seed(vocoder.seed)
    assert torch.allclose(whole, reference(mag), atol=1e-4 * float(expected.abs().max()))
