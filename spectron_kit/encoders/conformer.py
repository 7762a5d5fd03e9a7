"""The Conformer encoder over log-mel features (registered as ``conformer``)."""
import json
import logging
from pathlib import Path

import torch
from torch import nn

from spectron_kit.encoders.common import _check_inputs, _padding_mask
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


def _conformer_settings(given, spec, source, config_dir):
    """The architecture of a ``ConformerEncoder``: the keyword arguments, or what a ``source`` /
    ``config_dir`` folder stored (which wins), checked against ``n_mels`` and ``spec``. Returns
    ``(config, spec)``."""
    n_mels, hop_seconds = given["n_mels"], given["hop_seconds"]
    if spec is not None:  # the FeatureSpec of the frames it reads gives n_mels and the hop
        from spectron_kit.features import as_spec

        spec = as_spec(spec)
        if n_mels is not None and int(n_mels) != spec.n_mels:
            raise ValueError(f"n_mels={n_mels} but spec has n_mels={spec.n_mels}; give one of them")
        n_mels, hop_seconds = spec.n_mels, spec.hop_seconds
    if source is not None and config_dir is not None:
        raise ValueError(f"give source= (weights) or config_dir= (architecture only), not both "
                         f"(source={source!r}, config_dir={config_dir!r})")
    cfg = dict(given, n_mels=128 if n_mels is None else n_mels, hop_seconds=hop_seconds)
    stored_from = source if source is not None else config_dir
    if stored_from is not None:
        stored = _read_conformer_config(stored_from)
        if n_mels is not None and int(n_mels) != int(stored["n_mels"]):
            raise ValueError(f"n_mels={n_mels} does not match n_mels={stored['n_mels']} "
                             f"stored in {stored_from!r}; use features with "
                             f"{stored['n_mels']} mel bins or drop n_mels")
        cfg = {k: stored.get(k, _CONFORMER_DEFAULTS[k]) for k in _CONFORMER_FIELDS}
        if stored.get("feature_spec"):  # saved by newer versions: the spec it was trained on
            from spectron_kit.features import as_spec

            stored_spec = as_spec(stored["feature_spec"])
            if spec is not None:
                stored_spec.check_matches(spec, f"encoder in {stored_from}", "requested spec")
            spec = stored_spec
    return cfg, spec


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
        spec: the ``FeatureSpec`` of the frames it reads, instead of ``n_mels``
            and ``hop_seconds``; kept as ``self.spec`` (and saved), so the model
            checks every field against its front end's.
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
                 freeze=False, source=None, config_dir=None, spec=None):
        super().__init__()
        cfg, spec = _conformer_settings(dict(n_mels=n_mels, d_model=d_model, num_layers=num_layers, nhead=nhead,
                                             d_ffn=d_ffn, kernel_size=kernel_size, dropout=dropout,
                                             hop_seconds=hop_seconds, subsampling_channels=subsampling_channels),
                                        spec, source, config_dir)
        _validate_conformer_config(cfg)
        self.config = cfg
        self.spec = spec  # None when built from loose n_mels/hop_seconds or a source folder
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
        if self.spec is not None:
            config["feature_spec"] = self.spec.to_dict()
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
        kwargs = {**self.config, "freeze": self.frozen}
        if self.spec is not None:
            kwargs.update(spec=self.spec.to_dict(), n_mels=None, hop_seconds=None)
            kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "subsampling_channels"}
        return kwargs


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
