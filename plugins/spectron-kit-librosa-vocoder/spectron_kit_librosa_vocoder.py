"""Example third-party plugin: a vocoder backed by librosa's mel inversion.

Install with ``pip install -e plugins/spectron-kit-librosa-vocoder``; then
``spectron-kit plugins`` lists ``vocoder / librosa_griffin_lim`` and a recipe
selects it with ``vocoder_name: librosa_griffin_lim``.
"""
import numpy as np
import torch

from spectron_kit import hookimpl
from spectron_kit.features import as_spec


class LibrosaGriffinLimVocoder(torch.nn.Module):
    """Log-mel -> waveform with ``librosa.feature.inverse.mel_to_audio`` (NNLS mel inversion).

    Arguments:
        spec: the FeatureSpec (or dict) of the features; must match the frontend's.
        n_iter: Griffin-Lim iterations.
    """

    def __init__(self, spec=None, n_iter=32, **fields):
        super().__init__()
        import librosa  # imported only when this vocoder is selected

        self._librosa = librosa
        spec = as_spec(spec, **fields)
        self.spec, self.sample_rate, self.n_iter = spec, spec.sample_rate, n_iter

    @torch.no_grad()
    def forward(self, feats, lengths=None):
        spec = self.spec
        if lengths is None:
            lengths = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long)
        mean = np.asarray(spec.mean or np.zeros(spec.n_mels), dtype=np.float32)
        std = np.asarray(spec.std or np.ones(spec.n_mels), dtype=np.float32)
        waves = []
        for item, n in zip(feats.detach().cpu().float().numpy(), lengths.tolist()):
            mel = np.exp(item[:n] * std + mean).T
            wav = self._librosa.feature.inverse.mel_to_audio(
                mel, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
                win_length=spec.win_length, power=spec.power, n_iter=self.n_iter,
                htk=spec.mel_scale == "htk", norm=spec.norm, fmin=spec.f_min, fmax=spec.f_max)
            waves.append(torch.from_numpy(wav[: spec.num_samples(int(n))].astype(np.float32)))
        out_lens = torch.tensor([len(w) for w in waves])
        return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), out_lens


@hookimpl
def register_vocoders(register):
    register("librosa_griffin_lim", LibrosaGriffinLimVocoder,
             description="librosa NNLS mel inversion + Griffin-Lim (example plugin)")
