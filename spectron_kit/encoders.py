"""Speech encoders: prompt audio (features or waveform) -> hidden frames.

Two encoders are registered under the kind ``encoder``:

- ``conformer``: :class:`ConformerEncoder`, a Conformer over log-mel features
  (4x convolutional subsampling, then speechbrain Conformer blocks with
  relative positional attention). Can be saved and reloaded on its own with
  :meth:`ConformerEncoder.save_pretrained` / ``source=<dir>``.
- ``hf``: :class:`HFAudioEncoder`, a Hugging Face audio encoder (wav2vec2,
  HuBERT, WavLM and relatives, or Whisper's encoder) fed with raw 16 kHz
  waveforms.

Both follow the encoder interface of ``docs/COMPONENTS.md``:
``forward(x, lengths) -> (hidden [B, T', D], out_lengths [B])`` with the
attributes ``input_kind``, ``output_size`` and ``frame_rate``.

Example:
    >>> import torch
    >>> enc = ConformerEncoder(n_mels=16, d_model=16, num_layers=1, nhead=2, d_ffn=32,
    ...                        kernel_size=3)
    >>> hidden, lengths = enc(torch.randn(2, 40, 16), torch.tensor([40, 21]))
    >>> tuple(hidden.shape), lengths.tolist(), enc.frame_rate
    ((2, 10, 16), [10, 6], 20.0)
"""
import json
import logging
import math
import os
from pathlib import Path

import torch
from torch import nn

from spectron_kit.hookspecs import hookimpl
from spectron_kit.errors import one_line
from spectron_kit.freezing import Freezable
from spectron_kit.freezing import freeze as freeze_module

logger = logging.getLogger(__name__)

CONFORMER_CONFIG_FILE = "encoder_config.json"
CONFORMER_WEIGHTS_FILE = "encoder.safetensors"

# architecture fields stored in encoder_config.json
_CONFORMER_FIELDS = ("n_mels", "d_model", "num_layers", "nhead", "d_ffn", "kernel_size",
                     "dropout", "hop_seconds", "subsampling_channels")
_CONFORMER_DEFAULTS = {"n_mels": 128, "d_model": 144, "num_layers": 4, "nhead": 4,
                       "d_ffn": 576, "kernel_size": 15, "dropout": 0.1,
                       "hop_seconds": 0.0125, "subsampling_channels": None}


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------
def _check_inputs(x, lengths, ndim, what):
    """Validate a padded batch and its lengths; return lengths as a long tensor."""
    if not torch.is_tensor(x) or x.dim() != ndim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"encoder input must be {what}, got shape {shape}; "
                         f"add or remove the batch/feature axis")
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"lengths must have shape [{x.shape[0]}] (one per batch item), "
                         f"got {tuple(lengths.shape)}")
    if lengths.is_floating_point():
        raise ValueError("lengths must be absolute integer lengths (torch.long), not "
                         "relative floats; multiply by the padded length and round")
    lengths = lengths.long()
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > x.shape[1]):
        raise ValueError(f"lengths must lie in [1, {x.shape[1]}] (the padded length), got "
                         f"{lengths.tolist()}; pass absolute lengths of the unpadded inputs")
    return lengths


def _padding_mask(lengths, max_len):
    """Boolean [B, max_len] mask, True on padded positions."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) >= lengths.unsqueeze(1)


# ---------------------------------------------------------------------------
# Conformer
# ---------------------------------------------------------------------------
class ConvSubsampling(nn.Module):
    """Two stride-2 3x3 Conv2d layers: [B, T, F] -> [B, about T/4, d_model].

    Padded frames are zeroed before each convolution, so valid outputs never
    see padding (the zeros equal the convolution's own zero padding).

    Arguments:
        n_mels: input feature bins F.
        d_model: output width.
        dropout: dropout after the output projection.
        channels: conv channels (None = d_model). The second convolution costs
            channels^2 per output cell, most of a small encoder's compute at
            channels = d_model; fewer channels make it much cheaper.

    Example:
        >>> import torch
        >>> sub = ConvSubsampling(n_mels=8, d_model=4)
        >>> y, n = sub(torch.randn(1, 9, 8), torch.tensor([9]))
        >>> tuple(y.shape), n.tolist()
        ((1, 3, 4), [3])
    """

    def __init__(self, n_mels, d_model, dropout=0.0, channels=None):
        super().__init__()
        channels = channels or d_model
        self.conv1 = nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        freq = self.output_length(self.output_length(n_mels))
        self.proj = nn.Linear(channels * freq, d_model)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def output_length(length):
        """Length after one kernel-3, stride-2, padding-1 convolution (int or tensor)."""
        return (length - 1) // 2 + 1

    def forward(self, x, lengths):
        """Subsample features.

        Arguments:
            x: features [B, T, F].
            lengths: valid frames [B] (long).

        Returns:
            (hidden [B, T', d_model], out_lengths [B]).
        """
        h = x.masked_fill(_padding_mask(lengths, x.shape[1]).unsqueeze(-1), 0.0)
        h = torch.relu(self.conv1(h.unsqueeze(1)))  # [B, C, T1, F1]
        len1 = self.output_length(lengths)
        h = h.masked_fill(_padding_mask(len1, h.shape[2])[:, None, :, None], 0.0)
        h = torch.relu(self.conv2(h))  # [B, C, T2, F2]
        len2 = self.output_length(len1)
        b, c, t, f = h.shape
        h = h.permute(0, 2, 1, 3).reshape(b, t, c * f)
        return self.dropout(self.proj(h)), len2


class ConformerEncoder(Freezable, nn.Module):
    """Conformer speech encoder over log-mel features (4x time subsampling).

    Convolutional subsampling (two stride-2 Conv2d) followed by speechbrain
    Conformer blocks with relative positional attention (``RelPosMHAXL``).
    Padded frames never influence valid ones.

    Arguments:
        n_mels: feature bins F of the input (default 128, or the stored value
            when ``source`` is given; an explicit value that differs from the
            stored one is an error).
        d_model: model width D (= ``output_size``).
        num_layers: Conformer blocks.
        nhead: attention heads (must divide ``d_model``).
        d_ffn: feed-forward inner width.
        kernel_size: depthwise convolution kernel (odd).
        dropout: dropout probability.
        hop_seconds: hop of the input features in seconds (sets ``frame_rate``).
        subsampling_channels: channels of the two subsampling convolutions
            (None = d_model; the mini setup uses 32, a 2x cheaper encoder).
        freeze: no gradients, kept in eval mode.
        source: directory written by :meth:`save_pretrained`; its stored
            architecture wins over the keyword arguments and its weights load.
        config_dir: the same kind of directory, for its architecture only: the
            weights start random ("no pre-trained encoder" ablation).

    Attributes:
        input_kind: ``"features"``.
        output_size: ``d_model``.
        frame_rate: output frames per second, ``1 / (hop_seconds * 4)``.

    Example:
        >>> import torch
        >>> enc = ConformerEncoder(n_mels=8, d_model=8, num_layers=1, nhead=2, d_ffn=16,
        ...                        kernel_size=3, freeze=True)
        >>> h, n = enc(torch.randn(1, 13, 8), torch.tensor([13]))
        >>> tuple(h.shape), n.tolist(), h.requires_grad, enc.training
        ((1, 4, 8), [4], False, False)
    """

    input_kind = "features"

    def __init__(self, n_mels=None, d_model=144, num_layers=4, nhead=4, d_ffn=576,
                 kernel_size=15, dropout=0.1, hop_seconds=0.0125, subsampling_channels=None,
                 freeze=False, source=None, config_dir=None):
        super().__init__()
        if source is not None and config_dir is not None:
            raise ValueError(f"give source= (weights) or config_dir= (architecture only), not both "
                             f"(source={source!r}, config_dir={config_dir!r})")
        cfg = dict(n_mels=128 if n_mels is None else n_mels, d_model=d_model,
                   num_layers=num_layers, nhead=nhead, d_ffn=d_ffn, kernel_size=kernel_size,
                   dropout=dropout, hop_seconds=hop_seconds, subsampling_channels=subsampling_channels)
        stored_from = source if source is not None else config_dir
        if stored_from is not None:
            stored = _read_conformer_config(stored_from)
            if n_mels is not None and int(n_mels) != int(stored["n_mels"]):
                raise ValueError(f"n_mels={n_mels} does not match n_mels={stored['n_mels']} "
                                 f"stored in {stored_from!r}; use features with "
                                 f"{stored['n_mels']} mel bins or drop n_mels")
            cfg = {k: stored.get(k, _CONFORMER_DEFAULTS[k]) for k in _CONFORMER_FIELDS}
        _validate_conformer_config(cfg)
        self.config = cfg
        self.n_mels = int(cfg["n_mels"])
        self.output_size = int(cfg["d_model"])
        self.frame_rate = 1.0 / (float(cfg["hop_seconds"]) * 4)
        self.frozen = bool(freeze)

        from speechbrain.lobes.models.transformer.Conformer import (
            ConformerEncoder as SBConformerEncoder,
        )
        from speechbrain.nnet.attention import RelPosEncXL

        self.subsampling = ConvSubsampling(self.n_mels, self.output_size, cfg["dropout"],
                                           cfg["subsampling_channels"])
        self.pos_enc = RelPosEncXL(self.output_size)
        self.conformer = SBConformerEncoder(
            num_layers=int(cfg["num_layers"]), d_model=self.output_size,
            d_ffn=int(cfg["d_ffn"]), nhead=int(cfg["nhead"]),
            kernel_size=int(cfg["kernel_size"]), dropout=float(cfg["dropout"]),
            attention_type="RelPosMHAXL")
        # speechbrain masks the conv module's *output* but not the depthwise
        # conv's input: zero padded steps there so they cannot leak into valid ones
        self._conv_pad_mask = None
        for layer in self.conformer.layers:
            layer.convolution_module.conv.register_forward_pre_hook(self._mask_conv_input)

        if source is not None:
            from safetensors.torch import load_model

            load_model(self, str(Path(source) / CONFORMER_WEIGHTS_FILE), strict=True)
        if self.frozen:
            freeze_module(self)

    def _mask_conv_input(self, module, args):
        mask = self._conv_pad_mask
        if mask is None or mask.shape[-1] != args[0].shape[-1]:
            return None
        return (args[0].masked_fill(mask.unsqueeze(1), 0.0),) + tuple(args[1:])

    def output_lengths(self, lengths):
        """Output frames for input frame counts (int or long tensor).

        Example:
            >>> ConformerEncoder.output_lengths(None, 300)
            75
        """
        return ConvSubsampling.output_length(ConvSubsampling.output_length(lengths))

    def forward(self, x, lengths=None):
        """Encode log-mel features.

        Arguments:
            x: features [B, T, n_mels].
            lengths: valid frames [B] (long); None means all frames valid.

        Returns:
            (hidden [B, T', d_model] with padded positions zeroed, out_lengths [B]).
        """
        lengths = _check_inputs(x, lengths, 3, "log-mel features [B, T, F]")
        if x.shape[-1] != self.n_mels:
            raise ValueError(f"expected {self.n_mels} mel bins, got {x.shape[-1]} "
                             f"(input shape {tuple(x.shape)}); match the frontend's n_mels")
        if self.frozen:
            with torch.no_grad():
                return self._encode(x, lengths)
        return self._encode(x, lengths)

    def _encode(self, x, lengths):
        hidden, out_lengths = self.subsampling(x, lengths)
        pad_mask = _padding_mask(out_lengths, hidden.shape[1])
        pos = self.pos_enc(hidden)
        self._conv_pad_mask = pad_mask
        try:
            hidden, _ = self.conformer(hidden, src_key_padding_mask=pad_mask, pos_embs=pos)
        finally:
            self._conv_pad_mask = None
        return hidden.masked_fill(pad_mask.unsqueeze(-1), 0.0), out_lengths

    # -- persistence ---------------------------------------------------------
    def save_pretrained(self, directory):
        """Write ``encoder_config.json`` and ``encoder.safetensors`` to ``directory``.

        Arguments:
            directory: folder to create or reuse.

        Returns:
            The directory as a ``Path``.
        """
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"encoder": "conformer", **self.config}
        (directory / CONFORMER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_model(self, str(directory / CONFORMER_WEIGHTS_FILE))
        return directory

    @classmethod
    def from_pretrained(cls, directory, freeze=False):
        """Load an encoder saved with :meth:`save_pretrained`.

        Arguments:
            directory: folder holding ``encoder_config.json`` and ``encoder.safetensors``.
            freeze: freeze the loaded encoder.

        Returns:
            A ``ConformerEncoder`` with the stored architecture and weights.
        """
        return cls(source=directory, freeze=freeze)

    def bundle_kwargs(self, directory):
        """Keyword arguments that rebuild this architecture without ``source``.

        Arguments:
            directory: bundle folder (nothing needs writing there).

        Returns:
            dict of build kwargs (weights come from the bundle's state dict).
        """
        return {**self.config, "freeze": self.frozen}


def _read_conformer_config(source):
    path = Path(source) / CONFORMER_CONFIG_FILE
    weights = Path(source) / CONFORMER_WEIGHTS_FILE
    if not path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"encoder source {str(source)!r} lacks {CONFORMER_CONFIG_FILE} or "
                                f"{CONFORMER_WEIGHTS_FILE}; write it with "
                                f"ConformerEncoder.save_pretrained(dir)")
    config = json.loads(path.read_text())
    kind = config.get("encoder", "conformer")
    if kind != "conformer":
        raise ValueError(f"{path} describes a {kind!r} encoder, not 'conformer'; "
                         f"build it with name={kind!r}")
    return config


def _validate_conformer_config(cfg):
    for key in ("n_mels", "d_model", "num_layers", "nhead", "d_ffn", "kernel_size", "subsampling_channels"):
        value = cfg[key]
        if value is None and key == "subsampling_channels":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}={value!r} must be a positive integer"
                             + (" or null (= d_model)" if key == "subsampling_channels" else ""))
    if cfg["d_model"] % cfg["nhead"]:
        raise ValueError(f"d_model={cfg['d_model']} is not divisible by nhead={cfg['nhead']}; "
                         f"pick nhead dividing d_model")
    if cfg["kernel_size"] % 2 == 0:
        raise ValueError(f"kernel_size={cfg['kernel_size']} must be odd (e.g. "
                         f"{cfg['kernel_size'] + 1})")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise ValueError(f"dropout={cfg['dropout']!r} must be in [0, 1)")
    if not float(cfg["hop_seconds"]) > 0:
        raise ValueError(f"hop_seconds={cfg['hop_seconds']!r} must be positive "
                         f"(0.0125 for a 12.5 ms hop)")


# ---------------------------------------------------------------------------
# Hugging Face audio encoders
# ---------------------------------------------------------------------------
class HFAudioEncoder(Freezable, nn.Module):
    """Hugging Face audio encoder (wav2vec2 / HuBERT / WavLM family or Whisper) on waveforms.

    Exactly one of ``source``, ``config`` or ``config_dir`` says what to build.
    Whisper's log-mel is computed inside (same recipe as transformers'
    ``WhisperFeatureExtractor``), each item zero-padded to the model's fixed
    window (30 s for released checkpoints); outputs are cut to valid frames.

    Arguments:
        source: hub id (must be in the local cache when offline) or local
            directory with a saved model; weights are loaded.
        config: dict with ``model_type`` plus config fields; random weights.
        freeze: no gradients, kept in eval mode.
        layer: hidden layer to output (``-1``: the final output; ``0``: the
            embeddings before the first transformer layer).
        normalize_waveform: zero-mean unit-variance per utterance (over valid
            samples). ``None``: the feature extractor's ``do_normalize`` when
            one exists, else True for the wav2vec2 family and False for Whisper.
        config_dir: directory from :meth:`bundle_kwargs` (config and feature
            extractor); the architecture is built with random weights.

    Attributes:
        input_kind: ``"waveform"``.
        output_size: hidden size D.
        frame_rate: output frames per second (16000 / prod(conv_stride); 50 for Whisper).
        sample_rate: expected input sample rate (16000).

    Example:
        >>> import torch
        >>> enc = HFAudioEncoder(config={"model_type": "wav2vec2", "hidden_size": 16,
        ...     "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
        ...     "conv_dim": [8, 8], "conv_kernel": [10, 3], "conv_stride": [5, 2],
        ...     "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2})
        >>> h, n = enc(torch.randn(2, 400), torch.tensor([400, 200]))
        >>> tuple(h.shape), n.tolist(), enc.frame_rate
        ((2, 39, 16), [39, 19], 1600.0)
    """

    input_kind = "waveform"

    def __init__(self, source=None, config=None, freeze=False, layer=-1,
                 normalize_waveform=None, config_dir=None):
        super().__init__()
        given = [n for n, v in (("source", source), ("config", config),
                                ("config_dir", config_dir)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"HFAudioEncoder needs exactly one of source, config or config_dir, "
                             f"got {given or 'none'}; e.g. source='facebook/wav2vec2-base' or "
                             f"config={{'model_type': 'wav2vec2', ...}}")
        try:
            import transformers  # noqa: F401
        except ImportError as err:  # pragma: no cover - transformers is a core dependency
            raise ImportError("HFAudioEncoder needs transformers: pip install transformers") from err

        self.frozen = bool(freeze)
        self.layer = int(layer)
        self.feature_extractor = None
        if source is not None:
            self.model, self.feature_extractor = _load_hf_encoder(str(source))
        else:
            hf_config = (_config_from_dict(config) if config is not None
                         else _config_from_dir(str(config_dir)))
            self.model = _model_from_config(hf_config)
            if config_dir is not None:
                self.feature_extractor = _maybe_feature_extractor(str(config_dir))
        cfg = self.model.config
        self.model_type = cfg.model_type
        self.is_whisper = self.model_type == "whisper"
        if self.is_whisper and self.feature_extractor is None:
            from transformers import WhisperFeatureExtractor

            self.feature_extractor = WhisperFeatureExtractor(feature_size=cfg.num_mel_bins)
        fe = self.feature_extractor
        self.sample_rate = int(getattr(fe, "sampling_rate", None) or 16000)

        if self.is_whisper:
            self.output_size = int(cfg.d_model)
            self.num_layers = int(cfg.encoder_layers)
            self.hop_length = int(fe.hop_length)
            self.n_fft = int(fe.n_fft)
            # conv1 stride 1, conv2 stride 2
            self.n_frames = int(cfg.max_source_positions) * 2
            self.n_samples = self.n_frames * self.hop_length
            self.frame_rate = self.sample_rate / (self.hop_length * 2)
            self.register_buffer("mel_filters",
                                 torch.as_tensor(fe.mel_filters, dtype=torch.float32),
                                 persistent=False)
            self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
            self.use_attention_mask = False
            default_norm = False
        else:
            self.output_size = int(cfg.hidden_size)
            self.num_layers = int(cfg.num_hidden_layers)
            self.frame_rate = self.sample_rate / math.prod(int(s) for s in cfg.conv_stride)
            if fe is not None and hasattr(fe, "return_attention_mask"):
                self.use_attention_mask = bool(fe.return_attention_mask)
            else:
                self.use_attention_mask = getattr(cfg, "feat_extract_norm", "group") == "layer"
            default_norm = True
        if normalize_waveform is None:
            normalize_waveform = bool(getattr(fe, "do_normalize", default_norm)) \
                if fe is not None else default_norm
        self.normalize_waveform = bool(normalize_waveform)
        if not -(self.num_layers + 1) <= self.layer <= self.num_layers:
            raise ValueError(f"layer={layer} is out of range for a {self.num_layers}-layer "
                             f"{self.model_type} encoder; use -1 or 0..{self.num_layers}")
        if self.frozen:
            freeze_module(self)

    # -- forward -------------------------------------------------------------
    def output_lengths(self, lengths):
        """Output frames for sample counts ``lengths`` (long tensor [B])."""
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        if self.is_whisper:
            mel = (lengths + self.hop_length - 1) // self.hop_length
            return torch.clamp((mel - 1) // 2 + 1, max=self.n_frames // 2)
        add_adapter = None if self._uses_final_output() else False
        out = self.model._get_feat_extract_output_lengths(lengths, add_adapter=add_adapter)
        return torch.as_tensor(out).long()

    def _uses_final_output(self):
        return self.layer in (-1, self.num_layers)

    def forward(self, wav, lengths=None):
        """Encode waveforms.

        Arguments:
            wav: float waveforms [B, S] at ``sample_rate``, right-padded.
            lengths: valid samples [B] (long); None means all samples valid.

        Returns:
            (hidden [B, T', output_size], out_lengths [B]); padded positions zeroed.
        """
        lengths = _check_inputs(wav, lengths, 2, "waveforms [B, S]")
        if self.frozen:
            with torch.no_grad():
                return self._encode(wav, lengths)
        return self._encode(wav, lengths)

    def _encode(self, wav, lengths):
        pad = _padding_mask(lengths, wav.shape[1])
        wav = wav.float().masked_fill(pad, 0.0)
        if self.normalize_waveform:
            n = lengths.unsqueeze(1).to(wav.dtype)
            mean = wav.sum(1, keepdim=True) / n
            var = ((wav - mean).masked_fill(pad, 0.0) ** 2).sum(1, keepdim=True) / n
            wav = ((wav - mean) / torch.sqrt(var + 1e-7)).masked_fill(pad, 0.0)
        out_lengths = self.output_lengths(lengths).to(wav.device)
        want_hidden = not self._uses_final_output()
        if self.is_whisper:
            if wav.shape[1] > self.n_samples:
                raise ValueError(f"Whisper encoder takes at most {self.n_samples} samples "
                                 f"({self.n_samples / self.sample_rate:g} s), got {wav.shape[1]}; "
                                 f"cut the prompt shorter")
            feats = self.log_mel(wav)
            out = self.model(feats, output_hidden_states=want_hidden)
        else:
            mask = (~pad).long() if self.use_attention_mask else None
            out = self.model(wav, attention_mask=mask, output_hidden_states=want_hidden)
        hidden = out.hidden_states[self.layer] if want_hidden else out.last_hidden_state
        t = int(out_lengths.max()) if self.is_whisper else hidden.shape[1]
        hidden = hidden[:, :t]
        out_lengths = torch.clamp(out_lengths, max=hidden.shape[1])
        hidden = hidden.masked_fill(_padding_mask(out_lengths, hidden.shape[1]).unsqueeze(-1), 0.0)
        return hidden, out_lengths

    def log_mel(self, wav):
        """Whisper log-mel of zero-padded waveforms [B, S] -> [B, n_mels, n_frames].

        Each item is padded with zeros to the model's window, then: power STFT
        (Hann, centred), mel filter bank, log10 floored at 1e-10, clipped to
        8 below the item's maximum, scaled as ``(x + 4) / 4``.
        """
        wav = nn.functional.pad(wav, (0, self.n_samples - wav.shape[1]))
        spec = torch.stft(wav, self.n_fft, self.hop_length, window=self.window,
                          return_complex=True)
        power = spec[..., :-1].abs() ** 2  # [B, n_freq, n_frames]
        mel = torch.matmul(self.mel_filters.T, power)
        log_spec = torch.clamp(mel, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0

    # -- persistence ---------------------------------------------------------
    def save_pretrained(self, directory):
        """Save the wrapped HF model (and feature extractor) so ``source=directory`` reloads it.

        Returns:
            The directory as a ``Path``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory))
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(str(directory))
        return directory

    def bundle_kwargs(self, directory):
        """Save the HF config (and feature extractor) and return kwargs rebuilding this architecture.

        Arguments:
            directory: folder to write into (created if needed).

        Returns:
            ``{"config_dir": directory, "freeze": ..., "layer": ..., "normalize_waveform": ...}``.
        """
        os.makedirs(directory, exist_ok=True)
        self.model.config.save_pretrained(str(directory))
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(str(directory))
        return {"config_dir": str(directory), "freeze": self.frozen, "layer": self.layer,
                "normalize_waveform": self.normalize_waveform}


def _config_from_dict(config):
    from transformers import AutoConfig

    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"config must be a dict with a 'model_type' key, got {config!r}; "
                         f"e.g. {{'model_type': 'wav2vec2', 'hidden_size': 32}}")
    fields = dict(config)
    model_type = fields.pop("model_type")
    try:
        return AutoConfig.for_model(model_type, **fields)
    except ValueError as err:
        raise ValueError(f"unknown HF model_type {model_type!r}: {err}") from None


def _config_from_dir(config_dir):
    from transformers import AutoConfig

    if Path(config_dir).exists() and not (Path(config_dir) / "config.json").is_file():
        raise FileNotFoundError(f"config_dir {config_dir!r} has no config.json; "
                                f"write it with HFAudioEncoder.bundle_kwargs(dir)")
    try:  # a folder, or a hub id: only its config is read (the "no pre-trained encoder" ablation)
        return AutoConfig.from_pretrained(str(config_dir))
    except OSError as err:
        raise FileNotFoundError(f"config_dir {config_dir!r} is neither a folder with config.json nor a hub id "
                                f"whose config could be fetched ({one_line(err)})") from None


def _model_from_config(hf_config):
    """Random-weight encoder for ``hf_config`` (only the encoder for Whisper)."""
    if hf_config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(hf_config)
    if not hasattr(hf_config, "conv_stride"):
        raise ValueError(f"model_type {hf_config.model_type!r} is not a supported audio encoder; "
                         f"use whisper or a wav2vec2-style model (wav2vec2, hubert, wavlm, ...)")
    from transformers import AutoModel

    model = AutoModel.from_config(hf_config)
    if not hasattr(model, "_get_feat_extract_output_lengths"):
        raise ValueError(f"{type(model).__name__} has no _get_feat_extract_output_lengths; "
                         f"model_type {hf_config.model_type!r} is not a supported audio encoder")
    return model


def _maybe_feature_extractor(path):
    if not (Path(path) / "preprocessor_config.json").is_file() and os.path.isdir(path):
        return None
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(path)
    except (OSError, ValueError) as err:
        logger.info("no feature extractor loaded from %s: %s", path, err)
        return None


def _load_hf_encoder(source):
    """(model, feature_extractor or None) with weights from ``source``."""
    from transformers import AutoConfig, AutoModel

    try:
        hf_config = AutoConfig.from_pretrained(source)
    except OSError as err:
        raise OSError(f"cannot load an HF audio encoder from source={source!r}: {err}. Pass a "
                      f"local directory or a hub id already in the local cache") from None
    if hf_config.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperModel

        if "WhisperEncoder" in (hf_config.architectures or []):
            model, info = WhisperEncoder.from_pretrained(source, output_loading_info=True)
        else:  # full encoder-decoder checkpoint: keep the encoder only
            full, info = WhisperModel.from_pretrained(source, output_loading_info=True)
            info = {"missing_keys": [k for k in info["missing_keys"] if k.startswith("encoder.")]}
            model = full.get_encoder()
            del full
    else:
        if not hasattr(hf_config, "conv_stride"):
            raise ValueError(f"source={source!r} holds a {hf_config.model_type!r} model, not a "
                             f"supported audio encoder; use whisper or a wav2vec2-style model")
        model, info = AutoModel.from_pretrained(source, output_loading_info=True)
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise ValueError(f"{type(model).__name__} from {source!r} has no "
                             f"_get_feat_extract_output_lengths; not a supported audio encoder")
    missing = list(info.get("missing_keys", []))
    if missing:
        total = len(model.state_dict())
        if len(missing) > total // 2:
            raise ValueError(f"source={source!r} does not hold weights for "
                             f"{type(model).__name__} ({len(missing)} of {total} tensors missing, "
                             f"e.g. {missing[0]!r})")
        logger.warning("%s: %d tensors missing from %s were randomly initialised: %s",
                       type(model).__name__, len(missing), source, ", ".join(missing[:5]))
    return model, _maybe_feature_extractor(source)


@hookimpl
def register_encoders(register):
    """Register the built-in speech encoders."""
    register("conformer", ConformerEncoder,
             description="Conformer over log-mel features (4x conv subsampling, speechbrain "
                         "RelPosMHAXL blocks); source=<dir> loads save_pretrained weights")
    register("hf", HFAudioEncoder,
             description="Hugging Face audio encoder on 16 kHz waveforms (wav2vec2/HuBERT/WavLM "
                         "or Whisper encoder) from source=<hub id or dir> or config={...}")
