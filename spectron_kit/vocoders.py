"""Vocoders: log-mel frames -> waveform.

Example:
    >>> import torch
    >>> from spectron_kit.features import LogMelFrontend
    >>> frontend, vocoder = LogMelFrontend(), GriffinLimVocoder(n_iter=4)
    >>> feats, lens = frontend(torch.randn(1, 8000) * 0.1)
    >>> wav, wav_lens = vocoder(feats, lens)
    >>> wav.shape[1] == int(wav_lens[0]) == 8000
    True
"""
import math

import torch

from spectron_kit.features import as_spec, mel_filterbank, normalisation_stats
from spectron_kit.hookspecs import hookimpl
from spectron_kit.vocoder_stream import ChunkedVocoderStream


class GriffinLimVocoder(torch.nn.Module):
    """Log-mel -> linear magnitude (pseudo-inverse of the mel filters) -> Griffin-Lim.

    Arguments:
        spec: FeatureSpec (or dict) of the features it inverts; fields may also
            be passed as keywords. Must equal the frontend's spec.
        n_iter: Griffin-Lim iterations. momentum: its momentum (0.99 is usual).
        sharpen: exponent applied to the recovered magnitude (>1 reduces the
            smearing of the mel inversion; 1.0 = none).
        seed: seed of the random initial phase (output is deterministic).
    """

    def __init__(self, spec=None, n_iter=32, momentum=0.99, sharpen=1.2, seed=0, **fields):
        super().__init__()
        self.spec = spec = as_spec(spec, **fields)
        self.sample_rate = spec.sample_rate
        self.n_iter = n_iter
        self.momentum = momentum
        self.sharpen = sharpen
        self.seed = seed
        fbank = mel_filterbank(spec)  # [n_freq, n_mels]
        self.register_buffer("inverse_fbank", torch.linalg.pinv(fbank), persistent=False)
        mean, std = normalisation_stats(spec)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    @torch.no_grad()
    def forward(self, feats, lengths=None):
        if feats.dim() == 2:
            feats = feats.unsqueeze(0)
        if feats.shape[-1] != self.spec.n_mels:
            raise ValueError(f"features have {feats.shape[-1]} bins but the vocoder expects "
                             f"n_mels={self.spec.n_mels}")
        spec = self.spec
        mag = self.magnitude(feats)
        if lengths is None:
            lengths = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long)
        # zero the padding so it does not leak into valid samples
        valid = torch.arange(mag.shape[-1], device=mag.device)[None, :] < lengths.to(mag.device)[:, None]
        mag = mag * valid[:, None, :]
        devices = [mag.device] if mag.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # random initial phase, same every call (torchaudio's draw)
            torch.manual_seed(self.seed)
            angles = torch.rand(mag.shape, dtype=torch.complex64, device=mag.device)
        wav = griffin_lim(mag, angles, self.n_iter, self.momentum, spec)
        sample_lengths = spec.num_samples(lengths.to(torch.long))
        wav = wav[:, : int(sample_lengths.max())] if wav.shape[1] else wav
        return _limit_peak(wav), sample_lengths

    def magnitude(self, feats):
        """Linear STFT magnitude [B, n_freq, T] of normalised log-mel frames [B, T, n_mels]."""
        mel = torch.exp(feats.float() * self.std + self.mean)  # [B, T, n_mels]
        mag = torch.clamp(torch.matmul(mel, self.inverse_fbank), min=0.0)  # [B, T, n_freq]
        return mag.pow(1.0 / self.spec.power).pow(self.sharpen).transpose(1, 2)

    def stream(self, context_frames=12, lookahead_frames=4, crossfade_frames=2, n_iter=None):
        """The streaming contract (:mod:`spectron_kit.vocoder_stream`): each chunk is vocoded with
        ``context_frames`` spoken frames before it and ``lookahead_frames`` after, and the phase the previous
        window found for the frames they share starts this window's iterations (``n_iter``, default half of
        the vocoder's, as the shared frames start near their answer); chunks meet in a ``crossfade_frames``
        cross-fade."""
        return GriffinLimStream(self, context_frames, lookahead_frames, crossfade_frames,
                                n_iter=n_iter if n_iter is not None else max(1, self.n_iter // 2))


class GriffinLimStream(ChunkedVocoderStream):
    """Streamed Griffin-Lim whose windows carry their phase over: a frame the previous window vocoded starts
    from the phase found there (fast Griffin-Lim with the vocoder's momentum; the other frames start from a
    seeded random phase)."""

    def __init__(self, vocoder, context_frames, lookahead_frames, crossfade_frames, n_iter):
        super().__init__(vocoder, vocoder.spec.hop_length, context_frames, lookahead_frames, crossfade_frames)
        self.n_iter = int(n_iter)
        self.phase, self.phase_first = None, 0       # the last window's phase [n_freq, T] and its first frame
        self.generator = torch.Generator().manual_seed(int(vocoder.seed))

    @torch.no_grad()
    def _vocode(self, window, first):
        vocoder, spec = self.vocoder, self.vocoder.spec
        mag = vocoder.magnitude(window[None].to(vocoder.mean.device))[0]       # [n_freq, T]
        angles = torch.polar(torch.ones_like(mag), 2 * math.pi * torch.rand(mag.shape, generator=self.generator)
                             .to(mag.device))
        if self.phase is not None:  # frames the previous window shared with this one start where it ended
            lo, hi = max(first, self.phase_first), min(first + mag.shape[1], self.phase_first + self.phase.shape[1])
            if hi > lo:
                angles[:, lo - first: hi - first] = self.phase[:, lo - self.phase_first: hi - self.phase_first]
        wav, angles = griffin_lim(mag, angles, self.n_iter, vocoder.momentum, spec, return_phase=True)
        self.phase, self.phase_first = angles, first
        return _limit_peak(wav.float().cpu())


def griffin_lim(mag, angles, n_iter, momentum, spec, return_phase=False):
    """Fast Griffin-Lim (Perraudin et al. 2013), the algorithm of ``torchaudio.transforms.GriffinLim``.

    Written out because on CPU its memory traffic decides the speed: the spectra stay in the
    ``[..., T, n_freq]`` layout the FFTs read and write (no transposes), the inverse STFT is an inverse FFT
    plus an overlap-add of hop-sized pieces of the window's support with the window envelope computed once
    (:class:`_FastSTFT`), the momentum step is one ``torch.sub(..., alpha=)`` and the projection onto unit
    modulus is ``torch.sgn``. Same result as torchaudio's (``tests/unit/test_features.py``).

    Arguments:
        mag: linear magnitudes [..., n_freq, T]. angles: the starting phase, complex, same shape (any modulus).
        n_iter, momentum: iterations and momentum (0.99 is usual). spec: the FeatureSpec (STFT sizes).
        return_phase: also return the final unit-modulus phase (streaming carries it to the next window).
    Returns:
        the waveform [..., (T - 1) * hop_length] (and the phase).
    """
    shape = mag.shape
    frames = shape[-1]
    stft = _FastSTFT(spec, frames, mag.device)
    mag = mag.reshape(-1, *shape[-2:]).transpose(1, 2).contiguous()                  # [B, T, F], real
    angles = angles.reshape(-1, *shape[-2:]).transpose(1, 2).to(torch.complex64).contiguous()
    previous = torch.zeros_like(angles)
    for _ in range(int(n_iter)):
        rebuilt = stft.forward(stft.inverse(angles * mag))
        angles = torch.sgn(torch.sub(rebuilt, previous, alpha=momentum / (1 + momentum)))
        previous = rebuilt
    wav = stft.inverse(angles * mag).reshape(*shape[:-2], stft.length)
    return (wav, angles.transpose(1, 2).reshape(shape)) if return_phase else wav


class _FastSTFT:
    """``torch.stft`` / ``torch.istft`` (centred, reflect padding, periodic Hann window) for one frame count,
    on spectra laid out ``[B, T, n_freq]``. The inverse sums each frame's windowed support as hop-sized
    pieces shifted by one hop per frame (a few slice additions instead of ``fold``) and divides by the
    squared-window envelope, which is computed once."""

    def __init__(self, spec, frames, device):
        self.n_fft, self.hop, self.frames = spec.n_fft, spec.hop_length, int(frames)
        self.length = (self.frames - 1) * self.hop
        window = torch.hann_window(spec.win_length, device=device)
        self.lo = (self.n_fft - spec.win_length) // 2          # where the window sits inside an n_fft frame
        self.window = window
        self.padded_window = torch.nn.functional.pad(window, (self.lo, self.n_fft - spec.win_length - self.lo))
        self.pieces = -(-spec.win_length // self.hop)             # hop-sized pieces of the window's support
        self.offset = self.n_fft // 2 - self.lo                  # centring: where sample 0 is in the sum
        envelope = self._overlap_add(window.pow(2).expand(1, self.frames, -1))[0]
        envelope = envelope[self.offset: self.offset + self.length]
        self.inverse_envelope = torch.where(envelope > 1e-11, 1.0 / envelope.clamp(min=1e-11),
                                            torch.ones_like(envelope))

    def _overlap_add(self, windowed):
        """[B, T, win_length] windowed frame supports -> their overlap-add [B, (T + pieces - 1) * hop]."""
        batch, frames, width = windowed.shape
        pieces = torch.nn.functional.pad(windowed, (0, self.pieces * self.hop - width))
        pieces = pieces.view(batch, frames, self.pieces, self.hop)
        total = windowed.new_zeros(batch, frames + self.pieces - 1, self.hop)
        for j in range(self.pieces):
            total[:, j: j + frames] += pieces[:, :, j]
        return total.view(batch, -1)

    def inverse(self, spectra):
        """[B, T, n_freq] complex -> [B, (T - 1) * hop] waveform (``torch.istft(..., length=)``)."""
        frames = torch.fft.irfft(spectra, n=self.n_fft)
        support = frames[..., self.lo: self.lo + self.window.shape[0]] * self.window
        wav = self._overlap_add(support)[:, self.offset: self.offset + self.length]
        return wav * self.inverse_envelope

    def forward(self, wav):
        """[B, S] waveform -> [B, T, n_freq] complex (``torch.stft(..., center=True)``)."""
        half = self.n_fft // 2
        padded = torch.nn.functional.pad(wav[:, None], (half, half), mode="reflect")[:, 0]
        frames = padded.unfold(-1, self.n_fft, self.hop) * self.padded_window
        return torch.fft.rfft(frames)


def _limit_peak(wav):
    """Each waveform (the last axis) scaled down to a peak of 0.99 where it would clip; quieter ones unchanged."""
    if wav.shape[-1] == 0:
        return wav
    peak = wav.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8)
    return torch.where(peak > 0.99, wav / peak * 0.99, wav)


@hookimpl
def register_vocoders(register):
    register("griffin_lim", GriffinLimVocoder,
             description="inverse mel filterbank + Griffin-Lim phase reconstruction (no training)")
