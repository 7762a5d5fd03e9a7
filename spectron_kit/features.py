"""Audio front end: log-mel features and the FeatureSpec that ties them to a vocoder.

Example:
    >>> import torch
    >>> frontend = LogMelFrontend()
    >>> feats, lens = frontend(torch.zeros(2, 16000), torch.tensor([16000, 8000]))
    >>> tuple(feats.shape), lens.tolist()
    ((2, 81, 128), [81, 41])
"""
import dataclasses
import json
import math

import torch
import torchaudio

from spectron_kit.hookspecs import hookimpl


class FeatureSpecMismatch(ValueError):
    """Two components were built for different features."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Everything that defines a spectrogram, so a vocoder can be matched to it.

    Arguments:
        sample_rate, n_fft, win_length, hop_length: STFT settings (samples).
        n_mels, f_min, f_max: mel filterbank (f_max None = Nyquist).
        mel_scale: "htk" or "slaney"; norm: None or "slaney" (filter area).
        power: 1.0 magnitude or 2.0 power spectrogram before the mel filters.
        log_floor: values are ``log(max(mel, log_floor))``; log_base "e".
        mean, std: optional per-bin normalisation stats applied after the log.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 200
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = None
    mel_scale: str = "slaney"
    norm: str = "slaney"
    power: float = 1.0
    log_floor: float = 1e-5
    log_base: str = "e"
    mean: tuple = None
    std: tuple = None

    def __post_init__(self):
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                examples = {"sample_rate": 16000, "n_fft": 1024, "win_length": 1024, "hop_length": 256, "n_mels": 80}
                raise ValueError(f"{name}={value!r} must be a positive integer, e.g. {name}={examples[name]}")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} is longer than n_fft={self.n_fft}; "
                             "use n_fft >= win_length")
        if self.mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale={self.mel_scale!r}; use 'htk' or 'slaney'")
        if not self.log_floor > 0:
            raise ValueError(f"log_floor={self.log_floor!r}; use a positive floor such as 1e-5 "
                             "(silent bins would become log(0) = -inf)")
        if self.log_base != "e":
            raise ValueError(f"log_base={self.log_base!r}; only natural log ('e') is implemented")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
                if len(getattr(self, name)) != self.n_mels:
                    raise ValueError(f"{name} has {len(value)} values but n_mels={self.n_mels}")

    @property
    def frame_rate(self):
        """Frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def hop_seconds(self):
        """Seconds between frames."""
        return self.hop_length / self.sample_rate

    def num_frames(self, num_samples):
        """Frames of a signal of ``num_samples`` samples (centred STFT: ``samples // hop + 1``).

        Works on ints and integer tensors.

        Example:
            >>> FeatureSpec().num_frames(16000), FeatureSpec().num_frames(0)
            (81, 1)
        """
        return num_samples // self.hop_length + 1

    def num_samples(self, num_frames):
        """Samples a vocoder makes of ``num_frames`` frames: ``(frames - 1) * hop`` (0 for no frame).

        The inverse of :meth:`num_frames` up to the hop: ``num_frames(num_samples(t)) == t``.

        Example:
            >>> FeatureSpec().num_samples(81), FeatureSpec().num_samples(0)
            (16000, 0)
        """
        if isinstance(num_frames, int):
            return max(num_frames - 1, 0) * self.hop_length
        return (num_frames - 1).clamp(min=0) * self.hop_length

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FeatureSpec fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def differences(self, other):
        """Names of the fields whose values differ, with both values."""
        diffs = []
        for field in dataclasses.fields(self):
            a, b = getattr(self, field.name), getattr(other, field.name)
            if isinstance(a, float) and isinstance(b, float):
                same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
            else:
                same = a == b
            if not same:
                diffs.append((field.name, a, b))
        return diffs

    def check_matches(self, other, what="frontend", other_what="vocoder"):
        """Raise FeatureSpecMismatch naming every differing field."""
        diffs = self.differences(other)
        if diffs:
            detail = ", ".join(f"{n}: {what}={a!r} vs {other_what}={b!r}" for n, a, b in diffs)
            raise FeatureSpecMismatch(
                f"{what} and {other_what} use different features ({detail}); "
                f"build the {other_what} with the {what}'s feature spec")


def as_spec(spec, **fields):
    """Accept a FeatureSpec, a dict of its fields, or None (defaults); ``fields`` override it."""
    if spec is None:
        spec = FeatureSpec()
    elif isinstance(spec, dict):
        spec = FeatureSpec.from_dict(spec)
    elif not isinstance(spec, FeatureSpec):
        raise TypeError(f"spec must be a FeatureSpec or a dict of its fields, got {type(spec).__name__}")
    return dataclasses.replace(spec, **fields) if fields else spec


def normalisation_stats(spec):
    """Per-bin (mean, std) tensors of a spec (zeros and ones when it has none)."""
    if spec.mean is not None and spec.std is not None:
        return torch.tensor(spec.mean), torch.tensor(spec.std)
    return torch.zeros(spec.n_mels), torch.ones(spec.n_mels)


def mel_filterbank(spec):
    """Mel filterbank matrix [n_fft//2+1, n_mels] for a spec."""
    return torchaudio.functional.melscale_fbanks(
        n_freqs=spec.n_fft // 2 + 1, f_min=spec.f_min,
        f_max=spec.f_max if spec.f_max is not None else spec.sample_rate / 2,
        n_mels=spec.n_mels, sample_rate=spec.sample_rate, norm=spec.norm, mel_scale=spec.mel_scale)


class LogMelFrontend(torch.nn.Module):
    """Waveform -> log-mel frames [B, T, n_mels] (SPECTRON.md section 2 defaults).

    Arguments:
        spec: FeatureSpec or dict of its fields (None = defaults); any field may
            also be given as a keyword argument (``n_mels=80``).
    Returns (from forward): features [B, T, F] and frame lengths [B].
    """

    def __init__(self, spec=None, **fields):
        super().__init__()
        self.spec = spec = as_spec(spec, **fields)
        self.n_features = spec.n_mels
        self.register_buffer("window", torch.hann_window(spec.win_length), persistent=False)
        self.register_buffer("fbank", mel_filterbank(spec), persistent=False)
        mean, std = normalisation_stats(spec)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def num_frames(self, num_samples):
        """Frames produced for a signal of ``num_samples`` (center=True STFT)."""
        return self.spec.num_frames(num_samples)

    @torch.autocast("cuda", enabled=False)
    def forward(self, wav, lengths=None):
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2:
            raise ValueError(f"expected waveform [batch, samples], got shape {tuple(wav.shape)}")
        spec = self.spec
        stft = torch.stft(wav.float(), spec.n_fft, spec.hop_length, spec.win_length, self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        mag = stft.abs().pow(spec.power)  # [B, n_freq, T]
        mel = torch.matmul(mag.transpose(1, 2), self.fbank)  # [B, T, n_mels]
        feats = (torch.log(torch.clamp(mel, min=spec.log_floor)) - self.mean) / self.std
        if lengths is None:
            lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long)
        frame_lengths = torch.clamp(self.num_frames(lengths.to(torch.long)), max=feats.shape[1])
        return feats, frame_lengths.to(feats.device)

    def denormalize(self, feats):
        """Undo the mean/std normalisation (log-mel in natural log units)."""
        return feats * self.std + self.mean


@hookimpl
def register_frontends(register):
    register("log_mel", LogMelFrontend, description="log-mel spectrogram with a FeatureSpec")
