"""The character CTC speech recogniser: a front end, an encoder and a linear CTC head.

Pre-training (``spectron_kit.pretrain``) makes one for the mini setup and keeps
its encoder as the Spectron encoder; evaluation (``spectron_kit.evaluation.ctc``)
uses it as a transcriber. Both import it from here, so neither layer imports
the other.
"""
import json
from pathlib import Path

import torch
from torch import nn

from spectron_kit.registry import build

CTC_CONFIG = "ctc_config.json"
CTC_WEIGHTS = "ctc_model.safetensors"
CHARS = " abcdefghijklmnopqrstuvwxyz'"


def text_to_labels(text):
    """Characters -> CTC label ids (blank = 0); other characters are dropped."""
    return [CHARS.index(c) + 1 for c in text.lower() if c in CHARS]


def labels_to_text(ids):
    """Greedy CTC output ids -> text (collapse repeats, drop blanks)."""
    out, previous = [], 0
    for i in ids:
        if i != previous and i != 0:
            out.append(CHARS[i - 1])
        previous = i
    return " ".join("".join(out).split())


class CTCSpeechRecognizer(nn.Module):
    """Frontend + encoder + linear CTC head over characters.

    Arguments:
        frontend, encoder: modules (encoder reads features).
    """

    def __init__(self, frontend, encoder):
        super().__init__()
        self.frontend, self.encoder = frontend, encoder
        self.head = nn.Linear(encoder.output_size, len(CHARS) + 1)

    def forward(self, wav, lengths):
        feats, feat_lens = self.frontend(wav, lengths)
        hidden, out_lens = self.encoder(feats, feat_lens)
        return self.head(hidden).log_softmax(-1), out_lens

    @torch.no_grad()
    def transcribe_batch(self, wav, lengths):
        logp, out_lens = self(wav, lengths)
        return self._greedy(logp, out_lens)

    @torch.no_grad()
    def transcribe_features(self, frames):
        """Greedy transcripts of log-mel frames given directly (``[T_i, F]`` each, the front end's units).

        Reads spectrograms a model wrote without a vocoder in between, so it
        judges frames in seconds (the frames must follow this recogniser's
        ``frontend.spec``).
        """
        n_mels = self.frontend.spec.n_mels
        if any(f.shape[-1] != n_mels for f in frames):
            raise ValueError(f"the CTC recogniser reads {n_mels}-bin frames; got "
                             f"{sorted({int(f.shape[-1]) for f in frames})} bins")
        lengths = torch.tensor([len(f) for f in frames])
        if len(frames) == 0:
            return []
        padded = nn.utils.rnn.pad_sequence([torch.as_tensor(f).float() for f in frames], batch_first=True)
        device = self.head.weight.device
        hidden, out_lens = self.encoder(padded.to(device), lengths.to(device))
        return self._greedy(self.head(hidden).log_softmax(-1), out_lens)

    @staticmethod
    def _greedy(logp, out_lens):
        best = logp.argmax(-1)
        return [labels_to_text(best[i, : int(out_lens[i])].tolist()) for i in range(len(best))]

    def save_pretrained(self, directory, extra=None):
        """Write encoder (loadable as ``encoder_source``) + head + config."""
        from safetensors.torch import save_model

        directory = Path(directory)
        self.encoder.save_pretrained(directory / "encoder")
        config = {"feature_spec": self.frontend.spec.to_dict(), "chars": CHARS, **(extra or {})}
        (directory / CTC_CONFIG).write_text(json.dumps(config, indent=2))
        save_model(self, str(directory / CTC_WEIGHTS))

    @classmethod
    def from_pretrained(cls, directory):
        from safetensors.torch import load_model

        directory = Path(directory)
        config_path = directory / CTC_CONFIG
        if not config_path.is_file():
            raise FileNotFoundError(f"{directory} has no {CTC_CONFIG}; pass the folder written by the "
                                    "encoder pre-training step (pretrain_ctc_encoder)")
        config = json.loads(config_path.read_text())
        model = cls(build("frontend", "log_mel", spec=config["feature_spec"]),
                    build("encoder", "conformer", source=str(directory / "encoder")))
        load_model(model, str(directory / CTC_WEIGHTS))
        return model.eval()
