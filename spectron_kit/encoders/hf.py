"""Hugging Face audio encoders on waveforms (registered as ``hf``): the wav2vec 2.0 family (Whisper has its
own encoder, ``spectron_kit.encoders.whisper``)."""
import logging
import math
import os
from pathlib import Path

import torch
from torch import nn

from spectron_kit.errors import source_error
from spectron_kit.encoders.common import _check_inputs, _padding_mask
from spectron_kit.errors import one_line
from spectron_kit.freezing import Freezable
from spectron_kit.freezing import freeze as freeze_module

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Hugging Face audio encoders
# ---------------------------------------------------------------------------
def _load_model_and_extractor(source, config, config_dir):
    """``(model, feature extractor or None)`` from a hub id or folder, a config dict, or a config folder."""
    if source is not None:
        return _load_hf_encoder(str(source))
    hf_config = _config_from_dict(config) if config is not None else _config_from_dir(str(config_dir))
    model = _model_from_config(hf_config)
    return model, (_maybe_feature_extractor(str(config_dir)) if config_dir is not None else None)


class HFAudioEncoder(Freezable, nn.Module):
    """Hugging Face audio encoder of the wav2vec 2.0 family (wav2vec2, HuBERT, WavLM, ...) on waveforms.

    Exactly one of ``source``, ``config`` or ``config_dir`` says what to build.
    Whisper checkpoints are refused with a pointer to the ``whisper`` encoder
    (:class:`~spectron_kit.encoders.whisper.WhisperSpeechEncoder`).

    Arguments:
        source: hub id (must be in the local cache when offline) or local
            directory with a saved model; weights are loaded.
        config: dict with ``model_type`` plus config fields; random weights.
        freeze: no gradients, kept in eval mode.
        layer: hidden layer to output (``-1``: the final output; ``0``: the
            embeddings before the first transformer layer).
        normalize_waveform: zero-mean unit-variance per utterance (over valid
            samples). ``None``: the feature extractor's ``do_normalize`` when
            one exists, else True.
        config_dir: directory from :meth:`bundle_kwargs` (config and feature
            extractor); the architecture is built with random weights.
        spec: the recipe's ``FeatureSpec`` (optional): the encoder reads
            waveforms, so only its ``sample_rate`` must be the model's; a
            different one is refused here, naming both rates.

    Attributes:
        input_kind: ``"waveform"``.
        output_size: hidden size D.
        frame_rate: output frames per second (16000 / prod(conv_stride)).
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
                 normalize_waveform=None, config_dir=None, spec=None):
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
        self.model, self.feature_extractor = _load_model_and_extractor(source, config, config_dir)
        cfg = self.model.config
        self.model_type = cfg.model_type
        fe = self.feature_extractor
        self.sample_rate = int(getattr(fe, "sampling_rate", None) or 16000)
        if spec is not None:
            from spectron_kit.features import as_spec

            rate = as_spec(spec).sample_rate
            if rate != self.sample_rate:
                raise ValueError(f"the feature spec is {rate} Hz but this {cfg.model_type} encoder reads "
                                 f"{self.sample_rate} Hz waveforms; use sample_rate: {self.sample_rate} "
                                 "or an encoder trained at that rate")

        default_norm = self._read_geometry(cfg, fe)
        if normalize_waveform is None:
            normalize_waveform = bool(getattr(fe, "do_normalize", default_norm)) \
                if fe is not None else default_norm
        self.normalize_waveform = bool(normalize_waveform)
        if not -(self.num_layers + 1) <= self.layer <= self.num_layers:
            raise ValueError(f"layer={layer} is out of range for a {self.num_layers}-layer "
                             f"{self.model_type} encoder; use -1 or 0..{self.num_layers}")
        if self.frozen:
            freeze_module(self)

    def _read_geometry(self, cfg, fe):
        """Output size, layer count, frame rate and input handling of the loaded model. Returns the default
        of ``normalize_waveform`` (True: the family's extractors normalise)."""
        self.output_size = int(cfg.hidden_size)
        self.num_layers = int(cfg.num_hidden_layers)
        self.frame_rate = self.sample_rate / math.prod(int(s) for s in cfg.conv_stride)
        if fe is not None and hasattr(fe, "return_attention_mask"):
            self.use_attention_mask = bool(fe.return_attention_mask)
        else:
            self.use_attention_mask = getattr(cfg, "feat_extract_norm", "group") == "layer"
        return True

    # -- forward -------------------------------------------------------------
    def output_lengths(self, lengths):
        """Output frames for sample counts ``lengths`` (long tensor [B])."""
        lengths = torch.as_tensor(lengths, dtype=torch.long)
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
        mask = (~pad).long() if self.use_attention_mask else None
        out = self.model(wav, attention_mask=mask, output_hidden_states=want_hidden)
        hidden = out.hidden_states[self.layer] if want_hidden else out.last_hidden_state
        out_lengths = torch.clamp(out_lengths, max=hidden.shape[1])
        hidden = hidden.masked_fill(_padding_mask(out_lengths, hidden.shape[1]).unsqueeze(-1), 0.0)
        return hidden, out_lengths

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


_WHISPER_HINT = "use the whisper encoder (--encoder_name=whisper), which reads Whisper checkpoints"


def _model_from_config(hf_config):
    """Random-weight encoder for ``hf_config``."""
    if hf_config.model_type == "whisper":
        raise ValueError(f"model_type 'whisper' is not a wav2vec2-style encoder; {_WHISPER_HINT}")
    if not hasattr(hf_config, "conv_stride"):
        raise ValueError(f"model_type {hf_config.model_type!r} is not a supported audio encoder; "
                         f"use a wav2vec2-style model (wav2vec2, hubert, wavlm, ...) or encoder whisper")
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
    except (OSError, ValueError) as err:
        raise source_error("speech encoder", source, "--encoder_source", err) from None
    if hf_config.model_type == "whisper":
        raise ValueError(f"source={source!r} is a Whisper checkpoint; {_WHISPER_HINT}")
    if not hasattr(hf_config, "conv_stride"):
        raise ValueError(f"source={source!r} holds a {hf_config.model_type!r} model, not a "
                         f"supported audio encoder; use a wav2vec2-style model (or encoder whisper)")
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
