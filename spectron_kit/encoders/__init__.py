"""Speech encoders: prompt audio (features or waveform) -> hidden frames.

Three encoders are registered under the kind ``encoder``:

- ``conformer``: :class:`ConformerEncoder`, a Conformer over log-mel features
  (4x convolutional subsampling, then speechbrain Conformer blocks with
  relative positional attention). Can be saved and reloaded on its own with
  :meth:`ConformerEncoder.save_pretrained` / ``source=<dir>``.
- ``hf``: :class:`HFAudioEncoder`, a Hugging Face audio encoder (wav2vec2,
  HuBERT, WavLM and relatives) fed with raw 16 kHz waveforms.
- ``whisper``: :class:`WhisperSpeechEncoder`, OpenAI Whisper's encoder on 16 kHz
  waveforms (its own log-mel inside), any input up to 30 s, from an HF
  checkpoint or a CTranslate2 folder (``model.bin``).

All follow the encoder interface of ``docs/COMPONENTS.md``:
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
from spectron_kit.encoders.conformer import (CONFORMER_CONFIG_FILE, CONFORMER_WEIGHTS_FILE, ConformerEncoder,
                                             ConvSubsampling)
from spectron_kit.encoders.hf import HFAudioEncoder
from spectron_kit.encoders.whisper import WhisperSpeechEncoder
from spectron_kit.hookspecs import hookimpl

__all__ = ["ConformerEncoder", "ConvSubsampling", "HFAudioEncoder", "WhisperSpeechEncoder", "CONFORMER_CONFIG_FILE",
           "CONFORMER_WEIGHTS_FILE", "register_encoders"]


@hookimpl
def register_encoders(register):
    """Register the built-in speech encoders."""
    register("conformer", ConformerEncoder,
             description="Conformer over log-mel features (4x conv subsampling, speechbrain "
                         "RelPosMHAXL blocks); source=<dir> loads save_pretrained weights")
    register("hf", HFAudioEncoder,
             description="Hugging Face audio encoder on 16 kHz waveforms (wav2vec2/HuBERT/WavLM) "
                         "from source=<hub id or dir> or config={...}")
    register("whisper", WhisperSpeechEncoder,
             description="Whisper's encoder on 16 kHz waveforms, inputs up to 30 s; source=<HF Whisper id or "
                         "dir, or a CTranslate2 Whisper folder>; stack_frames, layer, pad_to_window")
