"""A small Vocos-style neural vocoder for spectron-kit (an example third-party plugin).

Vocos (Siuzdak, 2023) predicts the STFT of the waveform, magnitude and phase,
frame by frame, from the mel frames with a stack of ConvNeXt blocks, and
gets the samples by one inverse STFT: no upsampling layers, so it is cheap on
a CPU. This one is trained with spectral losses only (multi-resolution STFT +
log-mel, no adversarial loss: ``spectron_kit_vocos.train``).

It implements spectron-kit's vocoder contract (docs/PLUGINS.md):

- ``vocoder.spec``: the :class:`spectron_kit.features.FeatureSpec` of the frames
  it inverts (the model refuses a vocoder whose spec differs from its frontend's);
- ``vocoder(feats [B, T, n_mels], lengths [B]) -> (wav [B, S], sample_lengths [B])``
  with ``sample_lengths = spec.num_samples(lengths)``;
- ``vocoder.sample_rate``;
- ``vocoder.stream()`` (optional, the streaming contract): here exact, since each
  STFT frame reads a bounded number of mel frames and the inverse STFT is an
  overlap-add (no cross-fade needed).

Build it by name once the package is installed::

    spectron_kit.build("vocoder", "vocos", source="results/vocos")   # a trained one
    python recipes/LibriLight/evaluate.py ... --vocoder_name=vocos   # (with vocoder_source)
"""
import json
from pathlib import Path

import torch
from torch import nn

from spectron_kit.features import as_spec
from spectron_kit.hookspecs import hookimpl

CONFIG_FILE = "vocos_config.json"
WEIGHTS_FILE = "vocos.safetensors"
ARCH_DEFAULTS = {"dim": 192, "hidden": 576, "num_layers": 6, "kernel_size": 7}


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP, with a learned residual scale."""

    def __init__(self, dim, hidden, kernel_size=7, layer_scale=0.1):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x):  # [B, C, T]
        y = self.norm(self.depthwise(x).transpose(1, 2))
        y = self.down(nn.functional.gelu(self.up(y)))
        return x + (self.scale * y).transpose(1, 2)


class VocosVocoder(nn.Module):
    """Normalised log-mel frames -> waveform through a predicted STFT and one inverse STFT.

    Arguments:
        spec: FeatureSpec (or dict) of the frames; its ``n_fft``/``hop_length``/
            ``win_length`` are also the inverse STFT's. Fields may be keywords.
        source: folder written by :meth:`save_pretrained` (a trained vocoder):
            its stored spec and architecture win and its weights load.
        dim, hidden, num_layers, kernel_size: the ConvNeXt stack.
    """

    def __init__(self, spec=None, source=None, dim=None, hidden=None, num_layers=None, kernel_size=None,
                 **fields):
        super().__init__()
        arch = {k: v for k, v in (("dim", dim), ("hidden", hidden), ("num_layers", num_layers),
                                  ("kernel_size", kernel_size)) if v is not None}
        if source is not None:
            stored = read_config(source)
            given = as_spec(spec, **fields) if (spec is not None or fields) else None
            spec = as_spec(stored["spec"])
            if given is not None:
                spec.check_matches(given, f"vocoder trained in {source}", "requested spec")
            arch = {k: stored[k] for k in ARCH_DEFAULTS}
        else:
            spec = as_spec(spec, **fields)
        self.spec = spec
        self.sample_rate = spec.sample_rate
        self.arch = {**ARCH_DEFAULTS, **arch}
        dim, hidden = int(self.arch["dim"]), int(self.arch["hidden"])
        k = int(self.arch["kernel_size"])
        self.embed = nn.Conv1d(spec.n_mels, dim, k, padding=k // 2)
        self.norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, hidden, k, layer_scale=1.0 / int(self.arch["num_layers"]))
                                    for _ in range(int(self.arch["num_layers"])))
        self.final_norm = nn.LayerNorm(dim)
        self.n_freq = spec.n_fft // 2 + 1
        self.head = nn.Linear(dim, 2 * self.n_freq)  # log-magnitude and phase of every STFT bin
        self.register_buffer("window", torch.hann_window(spec.win_length), persistent=False)
        if source is not None:
            from safetensors.torch import load_model

            load_model(self, str(Path(source) / WEIGHTS_FILE), strict=True)

    def stft(self, feats):
        """The predicted complex STFT ``[B, n_freq, T]`` of frames ``[B, T, n_mels]``."""
        x = self.embed(feats.transpose(1, 2))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        log_mag, phase = self.head(self.final_norm(x.transpose(1, 2))).chunk(2, dim=-1)
        magnitude = torch.exp(log_mag.clamp(max=8.0))  # bounded: an untrained head cannot overflow
        return torch.polar(magnitude, phase).transpose(1, 2)

    def forward(self, feats, lengths=None):
        if feats.dim() == 2:
            feats = feats.unsqueeze(0)
        if feats.shape[-1] != self.spec.n_mels:
            raise ValueError(f"features have {feats.shape[-1]} bins but the vocoder expects n_mels={self.spec.n_mels}")
        batch, frames = feats.shape[0], feats.shape[1]
        if lengths is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=feats.device)
        lengths = lengths.to(feats.device).long()
        # padded frames must not leak into valid samples: zero them first
        valid = torch.arange(frames, device=feats.device)[None, :] < lengths[:, None]
        feats = feats.float() * valid[..., None]
        spec = self.spec
        total = spec.num_samples(frames)
        if total == 0:
            return feats.new_zeros(batch, 0), spec.num_samples(lengths)
        wav = torch.istft(self.stft(feats), n_fft=spec.n_fft, hop_length=spec.hop_length,
                          win_length=spec.win_length, window=self.window, center=True, length=total)
        sample_lengths = spec.num_samples(lengths)
        keep = torch.arange(total, device=wav.device)[None, :] < sample_lengths[:, None]
        return wav * keep, sample_lengths

    def stream(self):
        """The streaming contract (``spectron_kit.vocoder_stream``), exact: a predicted STFT frame depends on
        ``(1 + num_layers) * (kernel_size // 2)`` mel frames on each side and an output sample on the STFT frames
        within half a window, so chunks vocoded with that much context and lookahead give the very samples
        of the whole utterance and need no cross-fade."""
        from spectron_kit.vocoder_stream import ChunkedVocoderStream

        reach = (1 + int(self.arch["num_layers"])) * (int(self.arch["kernel_size"]) // 2)
        window = -(-self.spec.n_fft // (2 * self.spec.hop_length)) + 1
        return ChunkedVocoderStream(self, self.spec.hop_length, context_frames=reach + window,
                                    lookahead_frames=reach + window, crossfade_frames=0)

    # -- saving ---------------------------------------------------------------
    def save_pretrained(self, directory):
        """Write ``vocos_config.json`` (spec + architecture) and ``vocos.safetensors``."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"vocoder": "vocos", "spec": self.spec.to_dict(), **self.arch}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_model(self, str(directory / WEIGHTS_FILE))
        return directory

    def bundle_kwargs(self, directory):
        """A Spectron bundle rebuilds the architecture; the weights travel in the bundle's state dict."""
        return {"spec": self.spec.to_dict(), **self.arch}


def read_config(source):
    path = Path(source) / CONFIG_FILE
    if not path.is_file() or not (Path(source) / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"vocoder source {str(source)!r} lacks {CONFIG_FILE} or {WEIGHTS_FILE}; train one "
                                "with `python -m spectron_kit_vocos.train --data <LibriSpeech-layout folder> "
                                "--out <folder>`")
    return json.loads(path.read_text())


@hookimpl
def register_vocoders(register):
    register("vocos", VocosVocoder,
             description="Vocos-style neural vocoder (ConvNeXt + iSTFT head); source=<folder> from "
                         "spectron_kit_vocos.train")
