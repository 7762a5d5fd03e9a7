"""Audio file I/O through soundfile (no FFmpeg needed) and resampling."""
import logging

import numpy as np
import soundfile
import torch
import torchaudio

logger = logging.getLogger(__name__)


def audio_seconds(path):
    """Length of an audio file in seconds, from its header; a file with no frames is an error."""
    info = soundfile.info(str(path))
    if info.frames <= 0 or info.samplerate <= 0:
        raise RuntimeError("no audio frames")
    return info.frames / info.samplerate


def to_samples(seconds, rate):
    """How many samples (or frames) ``seconds`` hold at ``rate`` per second: the package's one rounding rule
    (nearest), used for prompt lengths, continuation limits and segment bounds alike.

    Example:
        >>> to_samples(3.0, 16000), to_samples(0.0125, 16000), to_samples(2.5, 80.0)
        (48000, 200, 200)
    """
    return int(round(float(seconds) * rate))


def load_audio(path, sample_rate=16000, start=0.0, end=None):
    """Read ``path`` (any libsndfile format) as mono float32 at ``sample_rate``.

    Arguments:
        path: audio file. start, end: optional segment in seconds.
    Returns:
        torch.Tensor [samples].
    Raises:
        ValueError: (one line naming the file) unreadable, undecodable, or holding NaN/Inf samples.
    """
    try:
        info = soundfile.info(str(path))
    except Exception as err:  # soundfile raises its own error types
        raise ValueError(f"cannot read audio file {path}: {err}") from None
    first = to_samples(start, info.samplerate)
    last = info.frames if end is None or end < 0 else min(to_samples(end, info.samplerate), info.frames)
    try:
        data, file_rate = soundfile.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as err:  # a valid header over damaged data (e.g. a truncated FLAC)
        raise ValueError(f"cannot decode audio file {path}: {err}; re-encode the file or leave it out") from None
    bad = int(np.size(data) - np.isfinite(data).sum())
    if bad:  # float WAVs can hold NaN/Inf: they would silently become empty transcripts and DC output
        raise ValueError(f"audio file {path} has {bad} NaN or infinite samples; repair or re-export it")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    return resample(wav, file_rate, sample_rate)


def resample(wav, orig_rate, new_rate):
    """Resample a tensor (or numpy array) along its last axis: the one resampler of the package.

    ``torchaudio.functional.resample`` with a Kaiser-windowed sinc of 24 zero
    crossings, cut-off at 0.945 of the lower Nyquist frequency (about 80 dB
    of alias rejection: espeak-ng's 22.05 kHz speech has energy up to its
    Nyquist frequency, which would otherwise fold into the 16 kHz band).
    """
    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(wav.astype(np.float32))
    if int(orig_rate) == int(new_rate):
        return wav
    return torchaudio.functional.resample(wav.float(), int(orig_rate), int(new_rate), lowpass_filter_width=24,
                                          rolloff=0.945, resampling_method="sinc_interp_kaiser", beta=8.6)


def narrowband(wav, rate, band_rate=8000):
    """``wav`` as if recorded at ``band_rate`` (nothing above its Nyquist frequency), at ``rate`` again: the
    band of telephone and 8 kHz recordings, for training prompts that a real recording may resemble.

    Example:
        >>> import torch
        >>> t = torch.arange(16000) / 16000
        >>> out = narrowband(torch.sin(2 * torch.pi * 6000 * t) + torch.sin(2 * torch.pi * 1000 * t), 16000)
        >>> len(out), round(float(out[2000:14000].std()), 2)  # the 6 kHz tone is gone, the 1 kHz one stays
        (16000, 0.71)
    """
    if int(band_rate) >= int(rate):
        return wav
    return resample(resample(wav, rate, band_rate), band_rate, rate)[: len(wav)]


def save_audio(path, wav, sample_rate):
    """Write a mono waveform (tensor or array) as a 16-bit file (format from the suffix)."""
    soundfile.write(str(path), pcm_samples(wav), int(sample_rate), subtype="PCM_16")


def pcm_samples(wav):
    """A mono waveform (tensor or array) as float32 samples in [-1, 1], ready for a 16-bit file."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().float().numpy()
    return np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)


class ProgressiveWav:
    """A 16-bit WAV file written chunk by chunk that is a valid file after every chunk (its header is
    rewritten at each :meth:`write`), so a player or another process can read it while it grows.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
        >>> with ProgressiveWav(path, 16000) as out:
        ...     out.write(np.zeros(800)); soundfile.info(path).frames
        800
    """

    def __init__(self, path, sample_rate):
        self.path = str(path)
        self.file = soundfile.SoundFile(self.path, "w", samplerate=int(sample_rate), channels=1, subtype="PCM_16",
                                        format="WAV")
        self.samples = 0

    def write(self, wav):
        wav = pcm_samples(wav)
        if wav.size:
            self.file.write(wav)
            self.file.flush()  # libsndfile rewrites the header: the file is complete up to here
            self.samples += wav.size

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

